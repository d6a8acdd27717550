"""Hostile ZeroMQ input: headers of the wrong types, absurd nesting and samples that could poison the
scores are refused (or clipped) with a counted reason, never an ``internal_error``; a score that is
not a probability is dropped with its reason, and no event carries a ``NaN`` literal."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from streamdet.errors import ProtocolError
from streamdet.service.batcher import Batcher, WindowJob
from streamdet.service.events import WindowEvent, encode_event
from streamdet.service.frames import MAX_HEADER_BYTES, parse_frame
from streamdet.stream.windower import Window

LIMIT = 1 << 20


def header(**fields) -> bytes:
    base = {"v": 1, "seq": 0, "sample_rate": 16000, "channels": 1, "format": "s16le"}
    base.update(fields)
    return json.dumps(base).encode()


# Each of these ended as `internal_error` with a traceback before the header was type-checked.
WRONG_TYPES = {
    "channels 1.0": ([b"a", header(channels=1.0), b"\0\0"], "bad_channels"),
    "channels true": ([b"a", header(channels=True), b"\0\0"], "bad_channels"),
    "format as a list": ([b"a", header(format=["s16le"]), b""], "bad_format"),
    "format as an object": ([b"a", header(format={"s16le": 1}), b""], "bad_format"),
    "seq 1.5": ([b"a", header(seq=1.5), b""], "bad_header"),
    "end as a string": ([b"a", header(end="yes"), b""], "bad_header"),
    "1,000-deep nested header": ([b"a", b'{"v":1,"x":' + b"[" * 1000 + b"]" * 1000 + b"}", b""], "bad_json"),
    "600-deep nested objects": ([b"a", b"{\"a\":" * 600 + b"1" + b"}" * 600, b""], "bad_json"),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_wrong_header_types_are_protocol_errors_not_internal_errors(case: str) -> None:
    parts, reason = WRONG_TYPES[case]
    assert len(parts[1]) <= MAX_HEADER_BYTES
    with pytest.raises(ProtocolError) as excinfo:
        parse_frame(parts, LIMIT)
    assert excinfo.value.reason == reason


def test_f32le_samples_at_1e38_are_clipped_and_counted() -> None:
    """1e38 used to pass into the features, and the scores became NaN: now clipped to [-1, 1]."""
    samples = np.array([0.5, 1e38, -1e38, 1.0, -1.5], "<f4")
    frame = parse_frame([b"a", header(format="f32le"), samples.tobytes()], LIMIT)
    np.testing.assert_array_equal(frame.samples[:, 0], [0.5, 1.0, -1.0, 1.0, -1.0])
    assert frame.clipped == 3


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_f32le_samples_are_rejected(value: float) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        parse_frame([b"a", header(format="f32le"), np.array([0.0, value], "<f4").tobytes()], LIMIT)
    assert excinfo.value.reason == "bad_samples"


async def test_clipped_samples_are_counted_in_metrics_and_the_stream_is_scored(kit, start_service, push) -> None:
    service = await start_service(kit.FakeScorer(0.1))
    listener = service.listen()
    loud = kit.tone(5.0) * np.float32(1e38)
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("loud", loud, fmt="f32le"))
    events = await kit.collect_until_end(listener, "loud")
    assert events[-1].windows == 2 and events[-1].dropped == 0
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_ingest_clipped_samples_total", adapter="zmq") > 0
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="internal_error") == 0


def _job(index: int) -> WindowJob:
    return WindowJob("s", Window(index, index, index + 1, np.zeros(64600, np.float32)), arrival=0.0)


async def test_a_scorer_returning_nan_drops_the_window_with_a_reason(kit) -> None:
    """A NaN score is never published: the window is dropped as `non_finite_score`."""
    results: list[float] = []
    drops: list[str] = []
    scores = iter([math.nan, 0.3, 2.0])
    scorer = kit.FakeScorer(lambda window: next(scores))
    batcher = Batcher(scorer, lambda job, p: results.append(p), lambda job, reason: drops.append(reason),
                      max_batch=3, max_wait_s=0.0)
    for i in range(3):
        batcher.submit(_job(i))
    batcher.start()
    for _ in range(500):
        if len(results) + len(drops) == 3:
            break
        await asyncio.sleep(0.01)
    await batcher.close()
    assert results == [pytest.approx(0.3)]
    assert drops == ["non_finite_score", "score_out_of_range"]


def test_events_are_strict_json() -> None:
    """A NaN that slipped through would be refused at encoding, never sent as a `NaN` literal."""
    event = WindowEvent(event="score", stream_id="s", window=0, start=0.0, end=4.0, wall_time=0.0,
                        p_spoof=math.nan, p_bonafide=math.nan, spoof_threshold=0.5, threshold=0.5,
                        spoof=False, alert=False, final=False, model_id="m", latency_ms=1.0)
    with pytest.raises(ValueError):
        encode_event(event)
