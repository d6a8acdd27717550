"""The publisher's in-process listeners (the ZeroMQ side is covered by the end-to-end tests)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from streamdet.service.events import (
    HEARTBEAT_TOPIC,
    EndEvent,
    Heartbeat,
    WindowEvent,
    decode_event,
    decode_heartbeat,
    encode_event,
)
from streamdet.service.publisher import EventPublisher


def score(stream_id: str, window: int = 0, event: str = "score") -> WindowEvent:
    return WindowEvent(event=event, stream_id=stream_id, window=window, start=0.0, end=4.0375, wall_time=0.0,
                       p_spoof=0.9, p_bonafide=0.1, spoof_threshold=0.5, threshold=0.5, spoof=True, alert=False,
                       final=False, model_id="m",
                       latency_ms=1.0)


def test_event_json_roundtrip() -> None:
    event = score("a", event="raised")
    topic, payload = encode_event(event)
    assert topic == b"alert.a" and decode_event(payload) == event
    end = EndEvent("a", "end", 4.0, 1, 0, True, 0.0, "m")
    assert encode_event(end)[0] == b"score.a" and decode_event(encode_event(end)[1]) == end
    ended = replace(end, event="ended")  # the end of a stream whose alert is raised, for alert consumers
    assert encode_event(ended)[0] == b"alert.a" and decode_event(encode_event(ended)[1]) == ended


def test_heartbeats_go_to_the_socket_only() -> None:
    import zmq

    context = zmq.Context()
    pub, sub = context.socket(zmq.PUB), context.socket(zmq.SUB)
    try:
        pub.bind("tcp://127.0.0.1:*")
        sub.subscribe(HEARTBEAT_TOPIC)
        sub.connect(pub.last_endpoint.decode())
        publisher = EventPublisher(pub)
        listener = publisher.listen()
        heartbeat = Heartbeat(wall_time=1.0, interval_s=2.0, model_id="m", active_streams=3)
        sub.rcvtimeo = 50
        while True:  # until the subscription has reached the PUB socket
            publisher.send_heartbeat(heartbeat)
            try:
                topic, payload = sub.recv_multipart()
                break
            except zmq.Again:
                continue
        assert topic == b"hb." and decode_heartbeat(payload) == heartbeat
        assert listener._queue.empty()  # in-process listeners live beside the service: they need none
    finally:
        pub.close(linger=0)
        sub.close(linger=0)
        context.term()


async def test_listeners_filter_by_prefix() -> None:
    publisher = EventPublisher()
    alerts, everything = publisher.listen("alert."), publisher.listen()
    publisher.publish(score("a"))
    publisher.publish(score("a", event="raised"))
    assert (await alerts.get(1)).event == "raised"
    assert [(await everything.get(1)).event for _ in range(2)] == ["score", "raised"]
    with pytest.raises(asyncio.TimeoutError):
        await alerts.get(0.05)


async def test_slow_listener_loses_its_oldest_events() -> None:
    publisher = EventPublisher(listener_queue=3)
    listener = publisher.listen()
    for i in range(5):
        publisher.publish(score("a", i))
    assert listener.dropped == 2
    assert [(await listener.get(1)).window for _ in range(3)] == [2, 3, 4]


async def test_iteration_ends_when_closed() -> None:
    publisher = EventPublisher()
    async with publisher.listen() as listener:
        publisher.publish(score("a"))
        publisher.close()
        assert [e.window async for e in listener] == [0]
    publisher.publish(score("b"))  # no listener left, nothing breaks
