"""The ZeroMQ ingest's drain: frames already queued are handled in one go, bounded, and counted
exactly (the accepted ones once per drain, not once per frame)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import zmq
import zmq.asyncio

from streamdet.service.frames import encode_frame
from streamdet.service.ingest import IngestContext, RejectReporter
from streamdet.service.ingest.zmq_pull import ZmqIngest
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.registry import StreamRegistry
from streamdet.service.settings import IngestSettings
from streamdet.stream.policy import StreamPolicy

CHUNK = np.zeros(320, np.float32)


def messages() -> list[tuple[list[bytes], str | None]]:
    """Frames in sending order, each with the reason it must be refused (None: accepted)."""
    good = [encode_frame("a", seq, CHUNK, 16_000) for seq in range(6)]
    return [
        (good[0], None), (good[1], None), ([b"a", b"{not json", b""], "bad_json"), (good[2], None),
        (good[2], "seq_repeated"), ([b"a", b"x"], "malformed"), (good[3], None), (good[4], None),
        (encode_frame("b", 0, CHUNK, 16_000, token="first"), None),
        (encode_frame("b", 1, CHUNK, 16_000, token="other"), "not_owner"),  # another token: another owner
        (encode_frame("b", 2, CHUNK, 16_000, token="first"), None),
        (good[5], None),
    ]


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_drain_is_bounded_and_counts_every_frame_it_handled() -> None:
    metrics = ServiceMetrics()
    registry = StreamRegistry(StreamPolicy(min_speech=0.0), lambda job: None, None, metrics,  # type: ignore[arg-type]
                              model_id="test")
    ingest = ZmqIngest(IngestSettings(endpoint="tcp://127.0.0.1:*"), 1 << 20)
    await ingest.start(IngestContext(registry, RejectReporter(metrics), metrics, zmq.asyncio.Context()))
    # A socket of our own, drained by hand: the ingest's task never sees these frames.
    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    try:
        pull.bind("inproc://drain")
        push.connect("inproc://drain")
        sent = messages()
        for parts, _ in sent:
            push.send_multipart(parts)
        assert pull.poll(5_000)
        ingest.DRAIN_MAX = 5
        assert ingest.drain(pull) == 5
        first = [reason for _, reason in sent[:5]]
        assert value(metrics, "streamdet_ingest_frames_total", adapter="zmq") == first.count(None)
        drained = [ingest.drain(pull) for _ in range(4)]
        assert drained == [5, 2, 0, 0]
        reasons = [reason for _, reason in sent]
        assert value(metrics, "streamdet_ingest_frames_total", adapter="zmq") == reasons.count(None)
        for reason in {r for r in reasons if r is not None}:
            assert value(metrics, "streamdet_ingest_rejects_total", reason=reason) == reasons.count(reason), reason
        assert registry.get("a").last_seq == json.loads(sent[-1][0][1])["seq"]
        assert registry.get("b").last_seq == 2
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        context.term()
        await ingest.stop()


async def test_frames_arriving_one_by_one_are_gathered_into_few_wake_ups() -> None:
    # 100 frames a millisecond apart: woken per frame, the ingest would drain about 100 times; it
    # sleeps COALESCE_S after emptying its queue, so the frames of each few ms come in one drain.
    metrics = ServiceMetrics()
    registry = StreamRegistry(StreamPolicy(min_speech=0.0), lambda job: None, None, metrics,  # type: ignore[arg-type]
                              model_id="test")
    ingest = ZmqIngest(IngestSettings(endpoint="tcp://127.0.0.1:*"), 1 << 20)
    drains: list[int] = []
    drain = ingest.drain
    ingest.drain = lambda sock: drains.append(drain(sock)) or drains[-1]  # type: ignore[method-assign]
    context = zmq.asyncio.Context()
    await ingest.start(IngestContext(registry, RejectReporter(metrics), metrics, context))
    push = context.socket(zmq.PUSH)
    try:
        push.connect(ingest.endpoint)
        for seq in range(100):
            await push.send_multipart(encode_frame("a", seq, CHUNK, 16_000))
            await asyncio.sleep(0.001)
        deadline = asyncio.get_running_loop().time() + 10
        while sum(drains) < 100 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert sum(drains) == 100 and registry.get("a").last_seq == 99
        assert len([n for n in drains if n]) <= 50, drains
    finally:
        push.close(linger=0)
        await ingest.stop()
        context.term()
