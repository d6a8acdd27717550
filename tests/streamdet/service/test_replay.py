"""Replay from the journal, in process: ``GET /events/journal`` and the Subscriber that uses it
(``--since``, gaps filled from the journal, gaps it cannot fill reported)."""

from __future__ import annotations

import json

from streamdet.client import MissedEvents, Since, Subscriber
from streamdet.service.events import Event

EVERY_WINDOW_RAISES = {"spoof_threshold": 0.0, "k": 1, "n": 1}


async def run_stream(kit, service, push, stream_id: str, seconds: float = 6.0) -> list[Event]:
    """Send one stream (all windows spoof), return its events as an in-process listener saw them."""
    async with service.listen() as listener:
        await kit.send_all(push(service.ingest_endpoint), kit.frames_of(stream_id, kit.tone(seconds)))
        events = await kit.collect_until_end(listener, stream_id)
        if events[-1].alert:  # raised at the end: the ``ended`` follows
            events.append(await listener.get(10))
        return events


def http(service) -> str:
    return f"http://127.0.0.1:{service.http_port}"


async def test_journal_endpoint_pages_and_refusals(kit, start_service, push) -> None:
    service = await start_service(alerts=EVERY_WINDOW_RAISES)
    events = await run_stream(kit, service, push, "a")
    await service.publisher.flush()
    status, body = await kit.http_get(service, "/events/journal?since=0&limit=2")
    page = json.loads(body)
    assert status == 200 and page["node"] == service.publisher.node and page["more"]
    assert [e["event_id"] for e in page["events"]] == [e.event_id for e in events[:2]]
    assert page["through"] == events[1].seq and page["first_seq"] == 1
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_journal_batch_events_sum") == len(events)
    assert kit.metric_value(metrics, "streamdet_journal_failures_total") == 0
    status, body = await kit.http_get(service, f"/events/journal?since={events[0].seq}&prefix=alert.")
    assert [e["event"] for e in json.loads(body)["events"]] == ["raised", "ended"]
    for query in ("", "?since=-1", "?since=x", "?since=0&limit=0", "?since=0&since_time=1"):
        status, body = await kit.http_get(service, "/events/journal" + query)
        assert status == 400 and json.loads(body)["title"] == "bad_query", query
    off = await start_service(events={"journal": False})
    status, body = await kit.http_get(off, "/events/journal?since=0")
    assert status == 404 and json.loads(body)["title"] == "no_journal"


async def test_since_replays_then_follows_live_without_gap_or_duplicate(kit, start_service, push) -> None:
    service = await start_service(alerts=EVERY_WINDOW_RAISES)
    before = await run_stream(kit, service, push, "before")
    async with Subscriber(service.events_endpoint, replay=http(service), since=Since(seq=0)) as subscriber:
        replayed = [await subscriber.recv(timeout=10) for _ in before]
        assert replayed == before  # the same events, stamps included
        after = await run_stream(kit, service, push, "after")
        live = [await subscriber.recv(timeout=10) for _ in after]
    assert live == after and subscriber.duplicates == 0 and not subscriber.missed


async def test_a_gap_in_the_live_events_is_filled_from_the_journal(kit, start_service, push) -> None:
    service = await start_service(alerts=EVERY_WINDOW_RAISES)
    async with Subscriber(service.events_endpoint, replay=http(service)) as subscriber:
        await subscriber.wait_connected()
        first = await run_stream(kit, service, push, "one")
        got = [await subscriber.recv(timeout=10) for _ in first]
        # Events that never reach the subscriber (as when its queue overflows): sent nowhere.
        socket, service.publisher._socket = service.publisher._socket, None
        lost = await run_stream(kit, service, push, "lost")
        service.publisher._socket = socket
        last = await run_stream(kit, service, push, "last")
        got += [await subscriber.recv(timeout=10) for _ in lost + last]
    assert got == first + lost + last
    assert subscriber.replayed == len(lost) and not subscriber.missed


async def test_a_gap_the_journal_no_longer_holds_is_reported(kit, start_service, push) -> None:
    service = await start_service(alerts=EVERY_WINDOW_RAISES, events={"retention_bytes": 4096})
    events = []
    for i in range(4):  # each stream's events are about 3 kB of JSON: the first ones are deleted
        events += await run_stream(kit, service, push, f"s{i}")
    await service.publisher.flush()
    reported: list[MissedEvents] = []
    async with Subscriber(service.events_endpoint, replay=http(service), since=Since(seq=0),
                          on_missed=reported.append) as subscriber:
        first = await subscriber.recv(timeout=10)
    assert len(reported) == 1 and reported == subscriber.missed
    assert reported[0].first_seq == 1 and reported[0].last_seq == first.seq - 1 > 0
    assert first == next(e for e in events if e.seq == first.seq)


async def test_a_heartbeat_ahead_of_the_last_event_seen_brings_the_missed_ones(kit, start_service, push) -> None:
    service = await start_service(alerts={**EVERY_WINDOW_RAISES, "heartbeat_s": 0.2})
    async with Subscriber(service.events_endpoint, topics=["alert."], replay=http(service)) as subscriber:
        await subscriber.wait_connected()
        first = await run_stream(kit, service, push, "one")
        got = [await subscriber.recv(timeout=10) for e in first if e.topic.startswith("alert.")]
        socket, service.publisher._socket = service.publisher._socket, None
        lost = [e for e in await run_stream(kit, service, push, "lost") if e.topic.startswith("alert.")]
        service.publisher._socket = socket
        # Nothing more is published: only the heartbeats say that events were sent.
        got += [await subscriber.recv(timeout=10) for _ in lost]
    assert [e.event for e in got] == ["raised", "ended"] * 2
    assert [e.stream_id for e in got] == ["one", "one", "lost", "lost"] and subscriber.replayed == 2
