"""Frames encoded ahead (``streamdet.bench.encoded``) are the very bytes ``encode_frame`` gives."""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.audio import SAMPLE_RATE
from streamdet.bench import load
from streamdet.bench.encoded import EncodedStream, HeaderPrefixes, PayloadBlocks, stamp
from streamdet.bench.load import StepConfig, encode_streams, plan_streams
from streamdet.bench.soak import SoakLoad
from streamdet.service.frames import encode_frame, encode_payload, parse_frame


def _send_times(count: int) -> list[float]:
    """Wall-clock times with long and short reprs, as time.time() gives them."""
    return [1_764_675_000.0 + 0.123456789 * k + (0.5 if k % 3 else 0.0) for k in range(count)]


@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
@pytest.mark.parametrize("block_frames", [1, 7, 10_000])
def test_a_step_plans_frames_are_what_encode_frame_gives(fmt: str, block_frames: int):
    # 2.51 s at 20 ms: 125 whole frames and a short last one; blocks of 7 cross frame boundaries.
    config = StepConfig(streams=3, duration_s=2.51, fmt=fmt, seed=3)
    plans = plan_streams(config)
    streams = encode_streams(plans, config, block_frames=block_frames)
    chunk = config.chunk_samples
    for i, plan in enumerate(plans):
        stream = streams[i]
        assert stream.frames == -(-len(plan.audio) // chunk) == 126
        for k, ts in enumerate(_send_times(stream.frames)):
            begin, end = k * chunk, min((k + 1) * chunk, len(plan.audio))
            expected = encode_frame(plan.stream_id, k, plan.audio[begin:end], SAMPLE_RATE, fmt,
                                    end=end == len(plan.audio), ts=ts)
            assert stream.message(k, ts) == expected, (plan.stream_id, k)


def test_samples_past_full_scale_are_clipped_as_encode_frame_clips_them():
    audio = np.array([1.5, -2.0, 0.99999, -1.0, 1.0, 0.5 / 32768, -0.5 / 32768, 0.0, 3e-5], dtype=np.float32)
    stream = EncodedStream("loud", audio, 4, HeaderPrefixes(SAMPLE_RATE), block_frames=2)
    for k in range(3):
        assert stream.message(k, 12.5) == encode_frame("loud", k, audio[4 * k:4 * k + 4], SAMPLE_RATE,
                                                       end=k == 2, ts=12.5)


def test_an_empty_stream_is_one_bare_end_frame():
    stream = EncodedStream("empty", np.zeros(0, np.float32), 320, HeaderPrefixes(SAMPLE_RATE))
    assert stream.frames == 1
    message = stream.message(0, 7.25)
    assert message == encode_frame("empty", 0, np.zeros(0, np.float32), SAMPLE_RATE, end=True, ts=7.25)
    frame = parse_frame(message, 1 << 20)
    assert frame.end and frame.ts == 7.25 and len(frame.samples) == 0


def test_the_service_reads_back_the_send_time_and_the_samples():
    audio = np.linspace(-0.5, 0.5, 960, dtype=np.float32)
    stream = EncodedStream("s-1", audio, 320, HeaderPrefixes(SAMPLE_RATE, fmt="f32le"))
    frame = parse_frame(stream.message(2, 1_764_675_000.987654), 1 << 20)
    assert (frame.seq, frame.end, frame.ts) == (2, True, 1_764_675_000.987654)
    np.testing.assert_array_equal(frame.samples[:, 0], audio[640:])


def test_only_the_current_block_of_payloads_is_held():
    audio = np.arange(10 * 320, dtype=np.float32) / 10_000
    payloads = PayloadBlocks(audio, 320, block_frames=3)
    for k in range(10):
        assert payloads[k] == encode_payload(audio[320 * k:320 * (k + 1)], "s16le")
        assert len(payloads._block) <= 3
    with pytest.raises(IndexError):
        payloads[10]


def test_looped_payloads_wrap_around_the_audio():
    audio = np.arange(1_000, dtype=np.float32) / 2_000  # not a whole number of frames
    payloads = PayloadBlocks(audio, 320, block_frames=4, wrap=True)
    for k in range(12):
        expected = encode_payload(audio.take(np.arange(320 * k, 320 * (k + 1)), mode="wrap"), "s16le")
        assert payloads[k] == expected


def test_a_soaks_frames_are_what_encode_frame_gives_across_segments():
    clips = [np.linspace(-0.3, 0.3, SAMPLE_RATE, dtype=np.float32), np.full(SAMPLE_RATE // 2, -0.1, np.float32)]
    # Two loads alike: one asked for samples (encoded here), the other for ready messages.
    plain = SoakLoad(2, segment_s=1.0, chunk=320, hop=SAMPLE_RATE, clips=clips, prefix="t")
    ahead = SoakLoad(2, segment_s=1.0, chunk=320, hop=SAMPLE_RATE, clips=clips, prefix="t")
    for k, ts in enumerate(_send_times(180)):  # 3.6 s: four segments, each stream's seq restarting
        for i in (0, 1):
            segment, seq, samples, end = plain.frame(i, k, k == 179)
            sent_segment, message = ahead.message(i, k, k == 179, ts)
            assert sent_segment.stream_id == segment.stream_id
            assert message == encode_frame(segment.stream_id, seq, samples, SAMPLE_RATE, "s16le", end=end, ts=ts)


def test_a_header_ends_with_the_send_time_as_json_writes_it():
    prefix = HeaderPrefixes(SAMPLE_RATE)(41, True)
    for ts in (0.1, 1e-7, 1_764_675_000.0, 1_764_675_000.1234567):
        assert stamp(prefix, ts) == encode_frame("x", 41, np.zeros(1, np.float32), SAMPLE_RATE, end=True, ts=ts)[1]


def test_a_step_is_encoded_whole_ahead_unless_that_passes_the_memory_bound(monkeypatch: pytest.MonkeyPatch):
    config = StepConfig(streams=3, duration_s=10.0)  # 500 frames each
    streams = encode_streams(plan_streams(config), config)
    assert {s.payloads.block_frames for s in streams.values()} == {500}
    assert all(len(s.payloads._block) == 500 for s in streams.values())  # before the clock starts
    frame_bytes = 320 * 2 + load.FRAME_OVERHEAD_BYTES
    monkeypatch.setattr(load, "AHEAD_BYTES", 3 * 120 * frame_bytes)  # 120 frames a stream
    streams = encode_streams(plan_streams(config), config)
    assert {s.payloads.block_frames for s in streams.values()} == {120}
    monkeypatch.setattr(load, "AHEAD_BYTES", 1)  # never less than a second's frames
    assert {s.payloads.block_frames for s in encode_streams(plan_streams(config), config).values()} == {50}
