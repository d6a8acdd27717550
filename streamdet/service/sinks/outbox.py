"""The sinks' persistent outbox: events waiting for Redis or a webhook, in one SQLite file (WAL).

Every sink owns its rows (column ``sink``: ``<node>/<sink name>``, so nodes sharing a file keep
apart); rows are added in publication order and their ids only
grow (``AUTOINCREMENT``: never reused, even after deletes), which the Redis sink uses to make its
appends idempotent. A row is ``pending`` until delivered; the Redis sink then deletes it, a webhook
marks it ``delivered`` (the newest ``KEEP_DELIVERED`` are kept for inspection). A webhook row that
failed ``max_attempts`` times moves to the ``dead_letters`` table.

The methods are blocking (SQLite): sinks call them in a thread (``asyncio.to_thread``), one at a
time per ``Outbox``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

KEEP_DELIVERED = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_sink ON outbox (sink, state, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    died REAL NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: str
    topic: str
    kind: str
    """The event's kind (``score``, ``raised``, ...)."""
    body: str
    """The event's JSON."""
    attempts: int


class Outbox:
    """One sink's view of the outbox file."""

    def __init__(self, path: Path, sink: str, max_rows: int = 1_000_000) -> None:
        self.path = Path(path)
        self.sink = sink
        self.max_rows = max_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('outbox_id', ?)", (uuid.uuid4().hex,))
            self.outbox_id: str = self._db.execute("SELECT value FROM meta WHERE key='outbox_id'").fetchone()[0]
            """A name for this file, unique: row ids are only comparable within one file."""

    def add(self, rows: list[tuple[str, str, str, str]], through_seq: int = 0) -> int:
        """Append ``(event_id, topic, kind, body)`` rows, pending, and move the mark of the journal
        ``seq`` this sink has taken up to ``through_seq`` in the same transaction; returns how many old
        rows were dropped to stay within ``max_rows``."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO outbox (sink, event_id, topic, kind, body, created, updated) VALUES (?,?,?,?,?,?,?)",
                [(self.sink, *row, now, now) for row in rows])
            if through_seq > 0:
                self._db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                    (self._mark_key, str(through_seq)))
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox WHERE sink=? AND state='pending'",
                                        (self.sink,)).fetchone()
            excess = max(0, count - self.max_rows)
            if excess:
                self._db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sink=? AND "
                                 "state='pending' ORDER BY id LIMIT ?)", (self.sink, excess))
        return excess

    @property
    def _mark_key(self) -> str:
        return f"taken_through:{self.sink}"

    def taken_through(self) -> int | None:
        """The last journal ``seq`` this sink took (stored or filtered out); None for a new sink."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (self._mark_key,)).fetchone()
        return None if row is None else int(row[0])

    def pending(self, limit: int, due_by: float | None = None) -> list[OutboxRow]:
        """The oldest pending rows (only those due by ``due_by``, when given), in order."""
        query = "SELECT id, event_id, topic, kind, body, attempts FROM outbox WHERE sink=? AND state='pending'"
        params: tuple = (self.sink,)
        if due_by is not None:
            query += " AND next_attempt <= ?"
            params += (due_by,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
        return [OutboxRow(*row) for row in rows]

    def next_due(self) -> float | None:
        """When the earliest pending row is due (unix time), or None without pending rows."""
        with self._lock:
            (due,) = self._db.execute("SELECT MIN(next_attempt) FROM outbox WHERE sink=? AND state='pending'",
                                      (self.sink,)).fetchone()
        return due

    def remove(self, ids: list[int]) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])

    def mark_delivered(self, row_id: int) -> None:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE outbox SET state='delivered', attempts=attempts+1, updated=? WHERE id=?",
                             (now, row_id))
            self._db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sink=? AND "
                             "state='delivered' ORDER BY id DESC LIMIT -1 OFFSET ?)", (self.sink, KEEP_DELIVERED))

    def retry_later(self, row_id: int, next_attempt: float, error: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE outbox SET attempts=attempts+1, next_attempt=?, last_error=?, updated=? "
                             "WHERE id=?", (next_attempt, error, time.time(), row_id))

    def bury(self, row_id: int, error: str) -> None:
        """Move a row to the dead letters (its last attempt failed with ``error``)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO dead_letters SELECT id, sink, event_id, topic, kind, body, attempts+1, ?, created, ? "
                "FROM outbox WHERE id=?", (error, now, row_id))
            self._db.execute("DELETE FROM outbox WHERE id=?", (row_id,))

    def counts(self) -> dict[str, int]:
        """Rows now, by state: ``pending``, ``delivered`` (kept ones) and ``dead``."""
        with self._lock:
            counts = dict(self._db.execute("SELECT state, COUNT(*) FROM outbox WHERE sink=? GROUP BY state",
                                           (self.sink,)).fetchall())
            (dead,) = self._db.execute("SELECT COUNT(*) FROM dead_letters WHERE sink=?", (self.sink,)).fetchone()
        return {"pending": counts.get("pending", 0), "delivered": counts.get("delivered", 0), "dead": dead}

    def dead_letters(self) -> list[dict]:
        """The dead letters of this sink, oldest first (for operators and tests)."""
        with self._lock:
            cursor = self._db.execute("SELECT * FROM dead_letters WHERE sink=? ORDER BY id", (self.sink,))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()
