"""The event journal: every published event, in a local SQLite file, before it goes out.

    journal = Journal.open(path, retention_s=86_400, retention_bytes=64 << 20)
    journal.node, journal.last_seq       # who we are, where the sequence continues after a restart
    journal.append(rows)                 # one transaction per batch (the publisher's writer thread)
    page = journal.read(since=120, limit=500, prefixes=["alert."])   # replay, any thread
    journal.close()

Durability: WAL mode. With ``synchronous=NORMAL`` a commit reaches the operating system but is not
fsynced, so it survives the process being killed (SIGKILL, OOM) but not a power cut; ``FULL`` fsyncs
every commit (docs/benchmarks.md, "Journal", measures both).

The sequence never goes back: ``last_seq`` is the largest of the rows' ``seq`` and of
``meta.pruned_through``, the highest ``seq`` retention ever deleted (written in the same
transaction), so an emptied journal still continues where it was.

Retention, checked after commits (at most once a second for age): rows whose ``wall_time`` is older
than ``retention_s`` go, then the oldest rows until the events' JSON bytes are within 90 % of
``retention_bytes`` (the margin keeps deletion from running at every commit). Freed pages are reused,
so the file stops growing near that size.

One service per journal: ``open`` takes an exclusive ``flock`` on ``<path>.lock`` for the journal's
lifetime. The node id is made once (host name + random suffix) and kept in the ``meta`` table.

Restarts: each ``open`` starts a new ``epoch`` (Unix milliseconds, always above the previous one,
kept in ``meta``), and ``meta.closed_through`` is a ``seq`` at which no stream was open (every
stream with events up to it had its ``end``): written after a clean shutdown and after the next
start closed the streams a crash left open (``streamdet.service.restart``), so that start-up only
reads the events after it (``stream_events``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from streamdet.errors import JournalError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    wall_time REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_KEEP_AFTER_SIZE_PRUNE = 0.9
_AGE_PRUNE_INTERVAL_S = 1.0

JournalRow = tuple[int, float, str, bytes]
"""``(seq, wall_time, topic, payload)``: one event as stored (payload: the event's JSON)."""


def default_journal_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "streamdet" / "events.sqlite"


def make_node_id() -> str:
    """The host name's first label (characters outside ``[A-Za-z0-9._-]`` dropped) + 6 random hex
    digits: readable in logs, and distinct for two services on one host."""
    host = re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname().split(".")[0])[:40] or "node"
    return f"{host}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class JournalPage:
    """A replay answer: ``events`` (their JSON objects, ``topic`` added) with ``seq > since``."""

    node: str
    events: list[dict[str, Any]]
    first_seq: int
    """The oldest ``seq`` still kept (``last_seq + 1`` when the journal is empty): anything between the
    asked ``since`` and it was deleted by retention."""
    last_seq: int
    """The newest committed ``seq`` when the page was read."""
    through: int
    """Every event with ``since < seq <= through`` matching the prefixes is in ``events``: the ``since``
    of the next page (it equals ``last_seq`` once ``more`` is false)."""
    more: bool


class Journal:
    def __init__(self, path: Path, connection: sqlite3.Connection, lock_fd: int, node: str, last_seq: int,
                 retention_s: float, retention_bytes: int, epoch: int = 0) -> None:
        self.path = path
        self.node = node
        self.epoch = epoch
        """This opening's epoch (Unix milliseconds, larger than every earlier opening's)."""
        self.last_seq = last_seq
        """The newest committed ``seq`` (or deleted, see the module docstring)."""
        self.retention_s = retention_s
        self.retention_bytes = retention_bytes
        self._db = connection
        self._lock_fd = lock_fd
        self._bytes = int(connection.execute("SELECT COALESCE(SUM(length(payload)), 0) FROM events").fetchone()[0])
        self._last_age_prune = 0.0
        self.pruned = 0
        """Events deleted by retention since the journal was opened."""

    @classmethod
    def open(cls, path: Path, *, retention_s: float, retention_bytes: int,
             synchronous: Literal["normal", "full"] = "normal", node_id: str | None = None) -> Journal:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot open the event journal {path}: {exc}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise JournalError(f"the event journal {path} is in use by another service; give each service "
                               "its own events.journal_path") from None
        try:
            # check_same_thread off: opened here, written from the publisher's one writer thread.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            # Keep the WAL file small once checkpointed (it is otherwise left at its largest size).
            db.execute(f"PRAGMA journal_size_limit={4 << 20}")
            db.executescript(_SCHEMA)
            node = node_id or _meta(db, "node_id") or make_node_id()
            if _meta(db, "node_id") != node:  # made now, or set in the settings: the one in force
                db.execute("INSERT OR REPLACE INTO meta VALUES ('node_id', ?)", (node,))
            newest = db.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
            last_seq = max(newest, int(_meta(db, "pruned_through") or 0))
            # A new epoch per start, growing even if the clock went back.
            epoch = max(int(time.time() * 1000), int(_meta(db, "epoch") or 0) + 1)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (str(epoch),))
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise JournalError(f"cannot open the event journal {path}: {exc}") from exc
        log.info("event journal %s: node %s, epoch %d, continuing after seq %d", path, node, epoch, last_seq)
        return cls(path, db, lock_fd, node, last_seq, retention_s, retention_bytes, epoch)

    # --- restarts (before and after the publisher's writer runs, never during) ---------------------

    @property
    def closed_through(self) -> int:
        """A ``seq`` up to which every stream had its ``end`` (0: unknown, read from the start)."""
        return int(_meta(self._db, "closed_through") or 0)

    def mark_closed_through(self, seq: int) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('closed_through', ?)", (str(seq),))
        except sqlite3.Error as exc:  # the next start reads more of the journal: slower, still right
            log.error("journal: cannot record that every stream is closed through seq %d: %s", seq, exc)

    def stream_events(self, since: int) -> Iterator[tuple[int, str, str]]:
        """``(seq, topic, event)`` of the stream topics' events after ``since`` (score, alert, source),
        oldest first."""
        yield from self._db.execute(
            "SELECT seq, topic, json_extract(payload, '$.event') FROM events WHERE seq > ? AND "
            "(topic GLOB 'score.*' OR topic GLOB 'alert.*' OR topic GLOB 'source.*') ORDER BY seq", (since,))

    def event(self, seq: int) -> dict[str, Any]:
        """The JSON of the event ``seq`` (it must be kept)."""
        return json.loads(self._db.execute("SELECT payload FROM events WHERE seq = ?", (seq,)).fetchone()[0])

    # --- writing (one thread at a time) -----------------------------------------------------------

    def append(self, rows: Sequence[JournalRow]) -> None:
        """Store ``rows`` (increasing ``seq``, above ``last_seq``) in one transaction, then apply retention."""
        if not rows:
            return
        with self._transaction():
            self._db.executemany("INSERT INTO events (seq, wall_time, topic, payload) VALUES (?, ?, ?, ?)", rows)
        self.last_seq = rows[-1][0]
        self._bytes += sum(len(row[3]) for row in rows)
        now = time.monotonic()
        if now - self._last_age_prune >= _AGE_PRUNE_INTERVAL_S:
            self._last_age_prune = now
            self.prune_age(time.time())
        if self._bytes > self.retention_bytes:
            self.prune_size()

    def prune_age(self, now: float) -> int:
        """Delete the events older than ``retention_s`` (oldest first, stopping at the first newer one)."""
        first_kept = self._db.execute("SELECT seq FROM events WHERE wall_time >= ? ORDER BY seq LIMIT 1",
                                      (now - self.retention_s,)).fetchone()
        return self._delete_through(first_kept[0] - 1 if first_kept else self.last_seq)

    def prune_size(self) -> int:
        """Delete the oldest events until their bytes are within 90 % of ``retention_bytes``."""
        excess = self._bytes - int(self.retention_bytes * _KEEP_AFTER_SIZE_PRUNE)
        freed, through = 0, 0
        for seq, size in self._db.execute("SELECT seq, length(payload) FROM events ORDER BY seq"):
            if freed >= excess:
                break
            freed, through = freed + size, seq
        return self._delete_through(through)

    def _delete_through(self, seq: int) -> int:
        if seq <= 0:
            return 0
        with self._transaction():
            size, count = self._db.execute("SELECT COALESCE(SUM(length(payload)), 0), COUNT(*) FROM events "
                                           "WHERE seq <= ?", (seq,)).fetchone()
            if count == 0:
                return 0
            self._db.execute("DELETE FROM events WHERE seq <= ?", (seq,))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('pruned_through', ?)", (str(seq),))
        self._bytes -= int(size)
        self.pruned += int(count)
        return int(count)

    @contextlib.contextmanager
    def _transaction(self):  # type: ignore[no-untyped-def]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def stored_bytes(self) -> int:
        """The events' JSON bytes now kept (what ``retention_bytes`` bounds)."""
        return self._bytes

    def close(self) -> None:
        """Close the database and release the lock (safe to call twice)."""
        if self._lock_fd < 0:
            return
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        os.close(self._lock_fd)
        self._lock_fd = -1

    # --- reading (any thread; a connection of its own) --------------------------------------------

    def read(self, *, since: int | None = None, since_time: float | None = None, limit: int = 1000,
             prefixes: Sequence[str] = ()) -> JournalPage:
        """Events after ``since`` (a seq), or from ``since_time`` (Unix seconds) on, oldest first."""
        return read_journal(self.path, since=since, since_time=since_time, limit=limit, prefixes=prefixes)


def read_journal(path: Path, *, since: int | None = None, since_time: float | None = None, limit: int = 1000,
                 prefixes: Sequence[str] = ()) -> JournalPage:
    """``Journal.read`` on a read-only connection of its own (WAL: readers never wait for the writer)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the event journal {path}: {exc}") from exc
    try:
        db.execute("BEGIN")  # one snapshot for the bounds and the rows
        node = _meta(db, "node_id") or ""
        oldest, newest = db.execute("SELECT MIN(seq), MAX(seq) FROM events").fetchone()
        last_seq = max(newest or 0, int(_meta(db, "pruned_through") or 0))
        first_seq = oldest if oldest is not None else last_seq + 1
        if since is None:
            row = None if since_time is None else db.execute(
                "SELECT seq FROM events WHERE wall_time >= ? ORDER BY seq LIMIT 1", (since_time,)).fetchone()
            since = row[0] - 1 if row else last_seq
        where, args = "seq > ?", [since]
        if prefixes:
            where += " AND (" + " OR ".join("substr(topic, 1, ?) = ?" for _ in prefixes) + ")"
            for prefix in prefixes:
                args += [len(prefix), prefix]
        rows = db.execute(f"SELECT seq, topic, payload FROM events WHERE {where} ORDER BY seq LIMIT ?",
                          (*args, limit)).fetchall()
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the event journal {path}: {exc}") from exc
    finally:
        db.close()
    events = [{**json.loads(payload), "topic": topic} for _, topic, payload in rows]
    more = len(rows) == limit
    through = rows[-1][0] if more else max(last_seq, since)
    return JournalPage(node=node, events=events, first_seq=first_seq, last_seq=last_seq, through=through,
                       more=more)


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None
