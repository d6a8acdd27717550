"""The event journal: order, continuity across reopen, one owner, replay pages, retention bounds."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from streamdet.errors import JournalError
from streamdet.service.journal import Journal, read_journal

DAY = 86_400.0
RECENT = time.time() - 1000.0


def rows(first: int, count: int, wall_time: float = RECENT, topic: str = "score.a", size: int = 100) -> list:
    payload = lambda seq: json.dumps({"event": "score", "seq": seq, "pad": "x" * size}).encode()  # noqa: E731
    return [(seq, wall_time + seq, topic, payload(seq)) for seq in range(first, first + count)]


def open_journal(path: Path, **kwargs) -> Journal:
    return Journal.open(path, **{"retention_s": 1000 * DAY, "retention_bytes": 1 << 30, **kwargs})


def test_seq_and_node_continue_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j" / "events.sqlite"
    journal = open_journal(path)
    node = journal.node
    assert journal.last_seq == 0 and node
    journal.append(rows(1, 5))
    journal.close()
    again = open_journal(path)
    assert (again.node, again.last_seq) == (node, 5)
    again.close()


def test_a_configured_node_id_wins_and_is_the_one_replays_name(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    open_journal(path).close()
    journal = open_journal(path, node_id="edge-7")
    assert journal.node == "edge-7" and read_journal(path).node == "edge-7"
    journal.close()


def test_one_service_per_journal(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    journal = open_journal(path)
    with pytest.raises(JournalError, match="in use by another service"):
        open_journal(path)
    journal.close()
    open_journal(path).close()  # released on close


def test_read_pages_in_order_with_prefixes(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "events.sqlite")
    journal.append(rows(1, 10, topic="score.a") + rows(11, 2, topic="alert.a") + rows(13, 3, topic="score.b"))
    page = journal.read(since=0, limit=4)
    assert [e["seq"] for e in page.events] == [1, 2, 3, 4] and page.more and page.through == 4
    page = journal.read(since=12, limit=100)
    assert [e["seq"] for e in page.events] == [13, 14, 15] and not page.more and page.through == 15
    assert page.events[0]["topic"] == "score.b"
    alerts = journal.read(since=0, prefixes=["alert."])
    assert [e["seq"] for e in alerts.events] == [11, 12] and alerts.through == alerts.last_seq == 15
    both = journal.read(since=0, prefixes=["alert.", "score.b"])
    assert [e["seq"] for e in both.events] == [11, 12, 13, 14, 15]
    by_time = journal.read(since_time=RECENT + 14)
    assert [e["seq"] for e in by_time.events] == [14, 15]
    journal.close()


def test_age_retention_deletes_old_events_and_seq_still_continues(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    journal = open_journal(path, retention_s=100.0)
    journal._last_age_prune = float("inf")  # no pruning inside append: the test prunes at chosen times
    journal.append(rows(1, 50, wall_time=1000.0))  # wall_time 1001..1050
    assert journal.prune_age(now=1125.5) == 25  # keeps wall_time >= 1025.5: seq 26..50
    page = journal.read(since=0)
    assert page.first_seq == 26 and [e["seq"] for e in page.events] == list(range(26, 51))
    assert journal.prune_age(now=1e6) == 25  # everything
    assert journal.read(since=0).first_seq == 51
    journal.close()
    again = open_journal(path)
    assert again.last_seq == 50  # an emptied journal does not reuse sequence numbers
    again.close()


def test_size_retention_bounds_the_events_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    bound = 200_000
    journal = open_journal(path, retention_bytes=bound)
    seq = 1
    for _ in range(200):  # 200 batches of 20 events of ~130 bytes: 2.6 MB through a 200 kB journal
        journal.append(rows(seq, 20))
        seq += 20
        assert journal.stored_bytes <= bound
    stored = sqlite3.connect(path).execute("SELECT SUM(length(payload)), MIN(seq), MAX(seq) FROM events").fetchone()
    assert stored[0] == journal.stored_bytes and stored[0] > 0.8 * bound  # only the oldest went
    assert stored[2] == seq - 1 and journal.read(since=0).first_seq == stored[1]
    journal.close()
    # The database file stays near the bound (freed pages are reused); the WAL is checkpointed on close.
    assert path.stat().st_size < 2 * bound + 64 * 1024


def test_appending_applies_age_retention_by_the_clock(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "events.sqlite", retention_s=60.0)
    journal.append(rows(1, 3, wall_time=time.time() - 3600.0))  # an hour old: gone at once
    journal.append(rows(4, 2, wall_time=time.time()))
    assert [e["seq"] for e in journal.read(since=0).events] == [4, 5] and journal.pruned == 3
    journal.close()
