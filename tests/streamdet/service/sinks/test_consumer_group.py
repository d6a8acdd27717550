"""Reading the Redis streams through a consumer group (``RedisSubscriber``, ``streamdet subscribe
--redis``): a consumer that crashed gets its unacknowledged alerts again, then new ones; a consumer
waiting while Redis restarts carries on."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamdet.client.redis_subscriber import RedisSubscriber
from streamdet.service.events import EndEvent
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.settings import EventsSettings
from streamdet.service.sinks.redis_streams import RedisStreamSink

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[4]


def alert(n: int) -> EndEvent:
    """An ``ended`` event (topic alert.), numbered."""
    return EndEvent(stream_id=f"call-{n}", reason="end", duration=1.0, windows=1, dropped=0, alert=True,
                    wall_time=time.time(), model_id="m", event="ended", node="n", seq=n, stream_seq=1,
                    event_id=f"n-{n}")


async def appended(redis_server, sink: RedisStreamSink, events: list[EndEvent], total: int) -> None:
    sink.deliver(events)
    redis = Redis.from_url(redis_server.url)
    while await redis.xlen("streamdet:alerts") < total:
        await asyncio.sleep(0.05)
    await redis.aclose()


async def test_a_crashed_consumer_gets_its_unacknowledged_alerts_again(redis_server, tmp_path) -> None:
    sink = RedisStreamSink(EventsSettings(redis_url=redis_server.url, outbox_path=tmp_path / "outbox.sqlite3",
                                          redis_backoff_max_s=0.5), ServiceMetrics(), "n")
    await sink.start()
    try:
        # The group reads from the oldest entry: created by the first consumer before anything is appended.
        first = RedisSubscriber(redis_server.url, group="cases", consumer="worker", start="0")
        with pytest.raises(TimeoutError):
            await first.recv(timeout=0.2)
        await appended(redis_server, sink, [alert(n) for n in range(1, 6)], 5)
        received = [await first.recv(timeout=30) for _ in range(5)]
        assert [e.event_id for e in received] == [f"n-{n}" for n in range(1, 6)]
        for entry in received[:2]:
            await first.ack(entry)
        await first.close()  # crashed: 3, 4 and 5 were received but never acknowledged

        # The same consumer, started again as a command: its pending entries first, acknowledged once printed.
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamdet", "subscribe", "--redis", redis_server.url, "--group", "cases",
            "--consumer", "worker", "--count", "3", "--timeout", "30", env=env, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        assert [json.loads(line)["event_id"] for line in out.decode().splitlines()] == ["n-3", "n-4", "n-5"]
        redis = Redis.from_url(redis_server.url)
        assert (await redis.xpending("streamdet:alerts", "cases"))["pending"] == 0
        await redis.aclose()

        # Again, with nothing pending: new entries only; and Redis restarting under a waiting consumer.
        async with RedisSubscriber(redis_server.url, group="cases", consumer="worker",
                                   backoff_max_s=0.5) as again:
            waiting = asyncio.create_task(again.recv(timeout=60))
            await asyncio.sleep(0.3)
            redis_server.stop()
            await asyncio.sleep(1.0)
            redis_server.start()
            sixth = alert(6)
            await appended(redis_server, sink, [sixth], 6)
            entry = await waiting
            assert entry.event_id == "n-6" and entry.event == sixth
            await again.ack(entry)
            with pytest.raises(TimeoutError):
                await again.recv(timeout=0.5)
    finally:
        await sink.close()


async def test_without_a_group_reads_from_the_start_or_from_now(redis_server, tmp_path) -> None:
    sink = RedisStreamSink(EventsSettings(redis_url=redis_server.url, outbox_path=tmp_path / "outbox.sqlite3"),
                           ServiceMetrics(), "n")
    await sink.start()
    try:
        await appended(redis_server, sink, [alert(1), alert(2)], 2)
        async with RedisSubscriber(redis_server.url, start="0") as everything, \
                RedisSubscriber(redis_server.url) as from_now:
            with pytest.raises(TimeoutError):
                await from_now.recv(timeout=0.3)
            await appended(redis_server, sink, [alert(3)], 3)
            assert [(await everything.recv(timeout=30)).event_id for _ in range(3)] == ["n-1", "n-2", "n-3"]
            assert (await from_now.recv(timeout=30)).event_id == "n-3"
    finally:
        await sink.close()


async def test_entries_a_consumer_abandoned_are_taken_over(redis_server, tmp_path) -> None:
    sink = RedisStreamSink(EventsSettings(redis_url=redis_server.url, outbox_path=tmp_path / "outbox.sqlite3"),
                           ServiceMetrics(), "n")
    await sink.start()
    try:
        gone = RedisSubscriber(redis_server.url, group="cases", consumer="old-container", start="0")
        with pytest.raises(TimeoutError):
            await gone.recv(timeout=0.2)  # creates the group
        await appended(redis_server, sink, [alert(1), alert(2)], 2)
        assert [(await gone.recv(timeout=30)).event_id for _ in range(2)] == ["n-1", "n-2"]
        await gone.close()  # never acknowledged, never back under that name

        async with RedisSubscriber(redis_server.url, group="cases", consumer="new-container",
                                   claim_idle_s=0.3) as taker:
            taken = [await taker.recv(timeout=30) for _ in range(2)]
            assert [e.event_id for e in taken] == ["n-1", "n-2"]
            for entry in taken:
                await taker.ack(entry)
        redis = Redis.from_url(redis_server.url)
        assert (await redis.xpending("streamdet:alerts", "cases"))["pending"] == 0
        await redis.aclose()
    finally:
        await sink.close()
