"""The publisher's in-process listeners (the ZeroMQ side is covered by the end-to-end tests)."""

from __future__ import annotations

import asyncio

import pytest

from streamdet.service.events import EndEvent, WindowEvent, decode_event, encode_event
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
