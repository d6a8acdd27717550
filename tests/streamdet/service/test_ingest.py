"""ZeroMQ ingest over loopback: each kind of bad input is rejected, counted in /metrics and never
disturbs a valid stream sent around it. The scorer is conftest's fake (these are protocol tests);
the end-to-end tests with the real CM are in test_end_to_end.py."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from streamdet.service.frames import encode_frame

GOOD = "good"
CLIP_SECONDS = 5.0  # two windows: [0, 4.0375) and the tail [0.9625, 5.0)


def header(**fields) -> bytes:
    base = {"v": 1, "seq": 0, "sample_rate": 16000, "channels": 1, "format": "s16le"}
    base.update(fields)
    return json.dumps(base).encode()


def bad_messages(case: str, good: list[list[bytes]]) -> list[list[bytes]]:
    """The bad message(s) for a case; ``good`` are the valid stream's messages."""
    other = b"other"
    return {
        "malformed": [[other, header()]],
        "bad_stream_id": [[b"no spaces allowed", header(), b""]],
        "bad_json": [[other, b"{oops", b""]],
        "bad_version": [[other, header(v=9), b""]],
        "bad_header": [[other, header(seq="one"), b""]],
        "bad_format": [[other, header(format="ulaw"), b""]],
        "bad_sample_rate": [[other, header(sample_rate=4000), b""]],
        "bad_channels": [[other, header(channels=3), b""]],
        "bad_payload_size": [[other, header(), b"\0" * 3]],
        "bad_samples": [[other, header(format="f32le"), np.array([np.inf], "<f4").tobytes()]],
        "oversize": [[other, header(), b"\0" * 40_000]],
        "seq_repeated": [good[3]],
        "seq_out_of_order": [good[1]],
        "format_change": [encode_frame(GOOD, 100, np.zeros(80, np.float32), 8000)],
        "stream_ended": [encode_frame("old", 0, np.zeros(160, np.float32), 16000, end=True),
                         encode_frame("old", 1, np.zeros(160, np.float32), 16000)],
        "max_streams": [encode_frame("intruder", 0, np.zeros(160, np.float32), 16000)],
    }[case]


CASES = ["malformed", "bad_stream_id", "bad_json", "bad_version", "bad_header", "bad_format", "bad_sample_rate",
         "bad_channels", "bad_payload_size", "bad_samples", "oversize", "seq_repeated", "seq_out_of_order",
         "format_change", "stream_ended", "max_streams"]


@pytest.mark.parametrize("case", CASES)
async def test_bad_input_is_rejected_counted_and_harmless(case: str, kit, start_service, push) -> None:
    limits = {"max_frame_bytes": 20_000, "max_streams": 1 if case == "max_streams" else 16}
    service = await start_service(kit.FakeScorer(0.1), limits=limits)
    listener = service.listen()
    good = kit.frames_of(GOOD, kit.tone(CLIP_SECONDS))
    bad = bad_messages(case, good)
    if case == "stream_ended":  # "old" must have ended before the good stream takes the only slots
        await kit.send_all(sock := push(service.ingest_endpoint), bad)
        await kit.collect_until_end(listener, "old")
    else:
        sock = push(service.ingest_endpoint)
    messages = good[:4] + ([] if case == "stream_ended" else bad) + good[4:]
    await kit.send_all(sock, messages)

    events = await kit.collect_until_end(listener, GOOD)
    end = events[-1]
    assert (end.duration, end.windows, end.dropped) == (CLIP_SECONDS, 2, 0)
    assert [e.event for e in events] == ["score", "score", "raised", "end"]

    _, metrics = await kit.http_get(service, "/metrics")
    rejects = {line.split('"')[1]: float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("streamdet_ingest_rejects_total{")}
    assert rejects == {case: 1.0}


async def test_idle_stream_is_ended_and_scored(kit, start_service, push) -> None:
    service = await start_service(kit.FakeScorer(0.9), limits={"idle_timeout_s": 0.3})
    listener = service.listen()
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("quiet", kit.tone(1.0), end=False))
    events = await kit.collect_until_end(listener, "quiet")
    assert [(e.event, getattr(e, "final", None)) for e in events] == [("score", True), ("end", None)]
    assert events[0].start == 0.0 and events[0].end == 1.0  # one padded window spanning the audio
    assert events[-1].reason == "idle_timeout"
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="idle_timeout") == 1
    assert kit.metric_value(metrics, "streamdet_streams_ended_total", reason="idle_timeout") == 1


async def test_keepalive_frames_keep_a_stream_open(kit, start_service, push) -> None:
    service = await start_service(kit.FakeScorer(0.9), limits={"idle_timeout_s": 0.4})
    listener = service.listen()
    sock = push(service.ingest_endpoint)
    for seq in range(6):
        await sock.send_multipart(encode_frame("alive", seq, np.zeros((0, 1), np.float32), 16000))
        await asyncio.sleep(0.15)
    assert service.active_streams == 1
    await sock.send_multipart(encode_frame("alive", 6, np.zeros((0, 1), np.float32), 16000, end=True))
    events = await kit.collect_until_end(listener, "alive")
    assert events[-1].reason == "end" and events[-1].windows == 0


async def test_an_ended_stream_id_can_start_again_from_seq_0(kit, start_service, push) -> None:
    service = await start_service(kit.FakeScorer(0.9))
    listener = service.listen()
    sock = push(service.ingest_endpoint)
    for _ in range(2):
        await kit.send_all(sock, kit.frames_of("again", kit.tone(1.0)))  # 1 s: the shortest scored
        assert (await kit.collect_until_end(listener, "again"))[-1].windows == 1


async def test_health_ready_and_metrics(kit, start_service, push) -> None:
    service = await start_service(kit.FakeScorer(0.1))
    assert (await kit.http_get(service, "/healthz"))[0] == 200
    status, body = await kit.http_get(service, "/readyz")
    assert status == 200 and json.loads(body)["model_id"] == "fake@0"
    listener = service.listen()
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("m", kit.tone(6.0)))
    await kit.collect_until_end(listener, "m")
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_windows_scored_total") == 3  # 0 s, 1 s, tail
    assert kit.metric_value(metrics, "streamdet_ingest_frames_total", adapter="zmq") == 30
    assert kit.metric_value(metrics, "streamdet_streams_started_total") == 1
    assert kit.metric_value(metrics, "streamdet_latency_seconds_count") == 3
    assert kit.metric_value(metrics, "streamdet_batch_size_count") >= 1
    assert kit.metric_value(metrics, "streamdet_alerts_total", event="raised") == 1
    assert kit.metric_value(metrics, "streamdet_active_streams") == 0
    assert kit.metric_value(metrics, "streamdet_ready") == 1


async def test_stop_scores_in_flight_streams(kit, start_service, push) -> None:
    service = await start_service(kit.FakeScorer(0.9))
    listener = service.listen()
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("open", kit.tone(4.5), end=False))
    while (session := service.registry.get("open")) is None or session.duration < 4.5:
        await asyncio.sleep(0.01)
    await service.stop()
    events = [e async for e in listener]
    assert [(e.event, getattr(e, "final", None)) for e in events] == [("score", False), ("score", True),
                                                                       ("end", None)]
    assert events[-1].reason == "shutdown" and events[-1].duration == 4.5
    assert not service.ready


async def test_a_failing_frame_does_not_stop_ingest(kit, start_service, push, monkeypatch) -> None:
    service = await start_service(kit.FakeScorer(0.9))
    real_push = service.registry.push

    def push_or_fail(stream_id, *args, **kwargs):
        if stream_id == "boom":
            raise RuntimeError("simulated bug")
        return real_push(stream_id, *args, **kwargs)

    monkeypatch.setattr(service.registry, "push", push_or_fail)
    listener = service.listen()
    sock = push(service.ingest_endpoint)
    await kit.send_all(sock, kit.frames_of("boom", kit.tone(0.2)) + kit.frames_of("fine", kit.tone(1.0)))
    assert (await kit.collect_until_end(listener, "fine"))[-1].windows == 1
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="internal_error") == 1
