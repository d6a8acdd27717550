"""The Subscriber's sequence bookkeeping against a bare PUB socket (no journal behind it)."""

from __future__ import annotations

from dataclasses import replace

import zmq

from streamdet.client import Subscriber
from streamdet.service.events import Heartbeat, WindowEvent, encode_event


def event(seq: int, node: str = "n1") -> WindowEvent:
    return WindowEvent(event="score", stream_id="a", window=seq, start=0.0, end=4.0375, wall_time=0.0, p_spoof=0.9,
                       p_bonafide=0.1, spoof_threshold=0.5, threshold=0.5, spoof=True, alert=False, final=False,
                       model_id="m", latency_ms=1.0, node=node, seq=seq, stream_seq=seq, event_id=f"{node}-{seq}")


def heartbeat(last_seq: int, node: str = "n1") -> list[bytes]:
    return encode_event(Heartbeat(wall_time=0.0, interval_s=2.0, model_id="m", active_streams=0, node=node,
                                  last_seq=last_seq))


async def test_jumps_without_replay_are_reported_and_repeats_dropped() -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    try:
        async with Subscriber(pub.last_endpoint.decode()) as sub:
            await sub.wait_connected()
            for seq in (4, 5, 5, 9, 10):  # 5 twice; 6-8 never sent
                pub.send_multipart(encode_event(event(seq)))
            pub.send_multipart(heartbeat(12))  # 11 and 12 were sent and lost
            pub.send_multipart(heartbeat(1))  # the node restarted without its journal: seq starts again
            pub.send_multipart(encode_event(event(2)))
            got = [(await sub.recv(timeout=5)).seq for _ in range(5)]
        assert got == [4, 5, 9, 10, 2] and sub.duplicates == 1
        assert [(m.first_seq, m.last_seq) for m in sub.missed] == [(6, 8), (11, 12)]
        assert all(m.node == "n1" and m.reason == "no replay address given" for m in sub.missed)
    finally:
        pub.close(linger=0)
        context.term()


async def test_events_of_an_older_service_pass_unchecked() -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    try:
        async with Subscriber(pub.last_endpoint.decode()) as sub:
            await sub.wait_connected()
            old = replace(event(0), node="", event_id="")
            pub.send_multipart(encode_event(old))
            pub.send_multipart(encode_event(old))
            assert [await sub.recv(timeout=5) for _ in range(2)] == [old, old]
        assert not sub.missed
    finally:
        pub.close(linger=0)
        context.term()
