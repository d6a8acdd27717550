"""The publisher with a journal: stamping, journal before publication, heartbeats' last seq, sinks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from streamdet.service.events import EndEvent, WindowEvent, decode_event
from streamdet.service.journal import Journal, read_journal
from streamdet.service.publisher import EventPublisher
from streamdet.service.sinks import EventSink


def score(stream_id: str, window: int = 0, event: str = "score") -> WindowEvent:
    return WindowEvent(event=event, stream_id=stream_id, window=window, start=0.0, end=4.0375, wall_time=1e9,
                       p_spoof=0.9, p_bonafide=0.1, spoof_threshold=0.5, threshold=0.5, spoof=True, alert=True,
                       final=False, model_id="m", latency_ms=1.0)


def end(stream_id: str, alert: bool) -> EndEvent:
    return EndEvent(stream_id, "end", 4.0, 1, 0, alert, 1e9, "m")


def open_journal(path: Path) -> Journal:
    return Journal.open(path, retention_s=1e12, retention_bytes=1 << 30)


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.started = self.closed = False
        self.journaled_when_delivered: list[bool] = []
        self.journal_path: Path | None = None

    def deliver(self, events: list) -> None:
        self.batches.append(list(events))
        if self.journal_path is not None:
            stored = {e["seq"] for e in read_journal(self.journal_path, since=0).events}
            self.journaled_when_delivered.append(all(e.seq in stored for e in events))

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True


def test_old_events_without_the_new_fields_still_decode() -> None:
    old = {k: v for k, v in json.loads(json.dumps(score("a").__dict__)).items()
           if k not in ("node", "seq", "stream_seq", "event_id")}
    event = decode_event(json.dumps(old))
    assert (event.node, event.seq, event.stream_seq, event.event_id) == ("", 0, 0, "")


async def test_events_are_stamped_journaled_then_published_in_order(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    publisher = EventPublisher(journal=open_journal(path))
    sink = RecordingSink()
    sink.journal_path = path
    assert isinstance(sink, EventSink)
    publisher.add_sink(sink)
    await publisher.start()
    listener = publisher.listen()
    sent = [score("a", 0), score("b", 0), score("a", 1, "raised"), end("a", True), replace(end("a", True), event="ended"),
            end("b", False), score("a", 0)]
    for event in sent:
        publisher.publish(event)
    received = [await listener.get(5) for _ in sent]
    node = publisher.node
    assert [e.seq for e in received] == list(range(1, 8))
    assert [e.event_id for e in received] == [f"{node}-{i}" for i in range(1, 8)]
    # per stream: a 1, 2, 3 (end), 4 (ended), then the id starts again at 1; b 1, 2 (end)
    assert [e.stream_seq for e in received] == [1, 1, 2, 3, 4, 2, 1]
    assert {e.epoch for e in received} == {publisher.epoch}
    assert [replace(e, node="", seq=0, stream_seq=0, event_id="", epoch=0) for e in received] == sent
    stored = read_journal(path, since=0).events
    assert [decode_event(json.dumps(e)) for e in stored] == received
    assert [e.seq for batch in sink.batches for e in batch] == list(range(1, 8))
    assert all(sink.journaled_when_delivered)  # a sink never sees an event before its commit
    await publisher.drain()
    publisher.close()
    assert sink.started and sink.closed


async def test_seq_continues_after_reopening_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    first = EventPublisher(journal=open_journal(path))
    for i in range(3):
        first.publish(score("a", i))
    await first.drain()
    first.close()
    second = EventPublisher(journal=open_journal(path))
    assert (second.node, second.last_sent_seq) == (first.node, 3)
    listener = second.listen()
    second.publish(score("a", 0))
    assert (await listener.get(5)).seq == 4
    await second.drain()
    second.close()


async def test_heartbeats_carry_the_last_seq_sent(tmp_path: Path) -> None:
    import zmq

    from streamdet.service.events import decode_heartbeat

    context = zmq.Context()
    pub, sub = context.socket(zmq.PUB), context.socket(zmq.SUB)
    pub.bind("tcp://127.0.0.1:*")
    sub.subscribe("hb.")
    sub.rcvtimeo = 10_000
    sub.connect(pub.last_endpoint.decode())
    publisher = EventPublisher(pub, journal=open_journal(tmp_path / "events.sqlite"))
    for i in range(4):
        publisher.publish(score("a", i))
    await publisher.flush()
    task = asyncio.create_task(publisher.run_heartbeats(0.05, "m", lambda: 0))
    try:
        heartbeat = decode_heartbeat((await asyncio.to_thread(sub.recv_multipart))[1])
    finally:
        task.cancel()
    assert (heartbeat.node, heartbeat.last_seq) == (publisher.node, 4)
    publisher.close()
    sub.close()
    context.term()


async def test_without_a_journal_events_go_out_at_once_with_a_fresh_node(tmp_path: Path) -> None:
    publisher = EventPublisher(node="edge-1")
    listener = publisher.listen()
    publisher.publish(score("a"))
    event = listener._queue.get_nowait()
    assert (event.node, event.seq, event.event_id) == ("edge-1", 1, "edge-1-1")
    assert EventPublisher().node != EventPublisher().node  # made up per process: ids stay unique


async def test_a_failing_journal_still_lets_events_out_and_says_so(tmp_path: Path, monkeypatch) -> None:
    import sqlite3

    journal = open_journal(tmp_path / "events.sqlite")

    def disk_full(rows) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(journal, "append", disk_full)
    commits: list[tuple[int, bool]] = []
    publisher = EventPublisher(journal=journal, on_commit=lambda n, s, stored: commits.append((n, stored)))
    listener = publisher.listen()
    publisher.publish(score("a"))
    event = await listener.get(5)
    assert event.seq == 1 and publisher.journal_failures == 1 and commits == [(1, False)]
    await publisher.drain()
    publisher.close()


async def test_a_service_hands_committed_batches_to_its_sinks(kit, push) -> None:
    from streamdet.service.server import Service
    from streamdet.service.settings import load_settings

    sink = RecordingSink()
    service = Service(load_settings(None, kit.loopback_overrides()), kit.FakeScorer())
    service.add_sink(sink)
    await service.start()
    try:
        assert sink.started
        async with service.listen() as listener:
            await kit.send_all(push(service.ingest_endpoint), kit.frames_of("a", kit.tone(5.0)))
            events = await kit.collect_until_end(listener, "a")
        await service.publisher.flush()
    finally:
        await service.stop()
    delivered = [e for batch in sink.batches for e in batch]
    assert delivered[:len(events)] == events and sink.closed
