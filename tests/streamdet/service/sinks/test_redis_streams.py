"""The Redis Streams sink with a real redis-server: events reach Redis in order, none is lost while
Redis is away (kept in the outbox, appended once it is back), none is appended twice."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from streamdet.client.redis_subscriber import RedisSubscriber
from streamdet.service.events import EndEvent, WindowEvent
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.settings import EventsSettings
from streamdet.service.sinks.redis_streams import RedisStreamSink

pytestmark = pytest.mark.timeout(120)

ALERTS = {"k": 1, "n": 1, "m": 1}  # the fake scorer's p_spoof 0.9: every stream raises at once


def events_settings(redis_url: str, tmp_path: Path, **extra) -> dict:
    return {"redis_url": redis_url, "outbox_path": str(tmp_path / "outbox.sqlite3"), "node_id": "node-a",
            "redis_backoff_s": 0.1, "redis_backoff_max_s": 0.5, **extra}


async def published(listener, stream_ids: set[str], timeout: float = 60) -> list:
    """Events from an in-process listener until every stream in ``stream_ids`` has sent ``ended``."""
    events, waiting = [], set(stream_ids)
    while waiting:
        event = await listener.get(timeout)
        events.append(event)
        if event.event == "ended":
            waiting.discard(event.stream_id)
    return events


async def send_streams(kit, push, service, stream_ids: list[str]) -> None:
    socket = push(service.ingest_endpoint)
    for stream_id in stream_ids:
        await kit.send_all(socket, kit.frames_of(stream_id, kit.tone(2.5)))


async def read_all(url: str, stream: str, event_ids: set[str], timeout: float = 60) -> list:
    """Every entry of a stream (from the oldest) until all ``event_ids`` are among them."""
    entries = []
    async with RedisSubscriber(url, stream=stream, start="0") as subscriber:
        while not event_ids <= {e.event_id for e in entries}:
            entries.append(await subscriber.recv(timeout=timeout))
    return entries


def sink_count(service, state: str, kit) -> float:
    return kit.metric_value(service.metrics.render().decode(), "streamdet_sink_events_total", sink="redis",
                            state=state)


async def test_no_event_is_lost_while_redis_is_away(start_service, kit, push, redis_server, tmp_path,
                                                     outage_s) -> None:
    service = await start_service(kit.FakeScorer(0.1), alerts=ALERTS,
                                  events=events_settings(redis_server.url, tmp_path))
    listener = service.listen("")
    await send_streams(kit, push, service, ["before"])
    events = await published(listener, {"before"})

    redis_server.stop()
    started = time.monotonic()
    await send_streams(kit, push, service, ["during-1", "during-2"])
    events += await published(listener, {"during-1", "during-2"})
    while sink_count(service, "retried", kit) == 0:  # the sink has met the outage
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - started)))
    assert service.metrics.sink_outbox.labels("redis", "pending")._value.get() > 0
    redis_server.start()

    for stream in ("alerts", "scores"):
        want = [e for e in events if (e.event in ("raised", "cleared", "ended")) == (stream == "alerts")]
        got = await read_all(redis_server.url, stream, {e.event_id for e in want})
        # Every event once, in publication order (one node: the whole key keeps its order).
        assert [e.event_id for e in got] == [e.event_id for e in want]
        assert [e.event for e in got] == want
    assert {e.stream_id for e in events if e.event == "raised"} == {"before", "during-1", "during-2"}
    assert {e.node for e in events} == {"node-a"}


def _event(seq: int) -> WindowEvent | EndEvent:
    return EndEvent(stream_id=f"s{seq}", reason="end", duration=1.0, windows=1, dropped=0, alert=False,
                    wall_time=time.time(), model_id="m", node="n", seq=seq, stream_seq=1, event_id=f"n-{seq}")


async def test_a_batch_sent_again_after_a_lost_reply_is_appended_once(redis_server, tmp_path) -> None:
    settings = EventsSettings(**events_settings(redis_server.url, tmp_path))
    sink = RedisStreamSink(settings, ServiceMetrics(), "n")
    await sink.start()
    script, lost = sink._script, []

    async def lose_the_first_reply(**call):
        added = await script(**call)
        if not lost:  # Redis appended, but its answer never came: the sink must send the batch again
            lost.append(added)
            raise RedisConnectionError("reply lost")
        return added

    sink._script = lose_the_first_reply
    sink.deliver([_event(i) for i in range(1, 4)])
    try:
        redis = Redis.from_url(redis_server.url)
        while not lost or sink.outbox.counts()["pending"]:
            await asyncio.sleep(0.05)
        sink.deliver([_event(4)])
        while await redis.xlen("streamdet:scores") < 4 or sink.outbox.counts()["pending"]:
            await asyncio.sleep(0.05)
        entries = await redis.xrange("streamdet:scores")
        await redis.aclose()
    finally:
        await sink.close()
    assert [json.loads(fields[b"event"])["event_id"] for _id, fields in entries] == ["n-1", "n-2", "n-3", "n-4"]


@pytest.mark.parametrize("scores", [True, False])
async def test_alerts_only_leaves_scores_out(start_service, kit, push, redis_server, tmp_path, scores) -> None:
    service = await start_service(kit.FakeScorer(0.1), alerts=ALERTS,
                                  events=events_settings(redis_server.url, tmp_path, redis_scores=scores))
    listener = service.listen("")
    await send_streams(kit, push, service, ["one"])
    events = await published(listener, {"one"})
    alerts = [e for e in events if e.event in ("raised", "ended")]
    got = await read_all(redis_server.url, "alerts", {e.event_id for e in alerts})
    assert [e.event_id for e in got] == [e.event_id for e in alerts]
    redis = Redis.from_url(redis_server.url)
    while sink_count(service, "delivered", kit) < (len(events) if scores else len(alerts)):
        await asyncio.sleep(0.05)
    assert await redis.xlen("streamdet:scores") == (len(events) - len(alerts) if scores else 0)
    await redis.aclose()
