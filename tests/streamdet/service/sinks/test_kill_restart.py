"""SIGKILL in the middle of an alert burst, as deployed: a real ``streamdet serve`` node with its journal
and a Redis sink, killed while it scores a burst of streams, then restarted on the same journal and
outbox. Every event the journal holds reaches Redis once, and sequence numbers carry on."""

from __future__ import annotations

import asyncio
import signal

import numpy as np
import pytest

from streamdet.client import Sender
from streamdet.client.redis_subscriber import RedisSubscriber
from streamdet.service.journal import read_journal
from tests.streamdet.service.sinks.test_scale_out import start_node

pytestmark = pytest.mark.timeout(300)


def journaled(path) -> list[dict]:
    events, since = [], 0
    while True:
        page = read_journal(path, since=since, limit=1000)
        events += page.events
        if not page.more:
            return events
        since = page.through


async def read_group(url: str, stream: str) -> list:
    """Everything on ``stream`` through a consumer group, until 5 s pass without a new entry."""
    entries = []
    async with RedisSubscriber(url, stream=stream, group="ops", consumer="checker", start="0") as subscriber:
        while True:
            try:
                entry = await subscriber.recv(timeout=5)
            except TimeoutError:
                return entries
            await subscriber.ack(entry)
            entries.append(entry.event)


async def test_sigkill_mid_burst_loses_no_journaled_event_and_sends_none_twice(random_cm_dir, redis_server,
                                                                                tmp_path) -> None:
    journal = tmp_path / "node-1-journal.sqlite"
    proc, ingest = await asyncio.wait_for(start_node("node-1", random_cm_dir, redis_server.url, tmp_path), 180)
    drain = asyncio.create_task(proc.stderr.read())
    audio = np.random.default_rng(0).normal(0, 0.1, (16_000 * 8, 1)).astype(np.float32)  # 5 windows a stream
    async with Sender(ingest) as sender:
        for k in range(12):
            await sender.send_array(f"burst-{k}", audio, 16_000)
    while len(journaled(journal)) < 10:  # killed once the burst is being scored and alerted
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    await drain
    before = journaled(journal)
    assert before and any(e["event"] == "raised" for e in before)

    proc, ingest = await asyncio.wait_for(start_node("node-1", random_cm_dir, redis_server.url, tmp_path), 180)
    drain = asyncio.create_task(proc.stderr.read())
    try:
        async with Sender(ingest) as sender:
            await sender.send_array("after-restart", audio, 16_000)
        while not any(e["event"] == "end" and e["stream_id"] == "after-restart" for e in journaled(journal)):
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        await drain
    assert proc.returncode == 0
    everything = journaled(journal)

    # Sequence numbers carry on across the kill: one node, no seq used twice, none skipped.
    assert {e["node"] for e in everything} == {"node-1"}
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert min(e["seq"] for e in everything if e["stream_id"] == "after-restart") > max(e["seq"] for e in before)

    # Every journaled event reached Redis, and a consumer-group reader got each event id once.
    received = await read_group(redis_server.url, "alerts") + await read_group(redis_server.url, "scores")
    ids = [e.event_id for e in received]
    assert len(ids) == len(set(ids))
    assert set(ids) == {e["event_id"] for e in everything}
