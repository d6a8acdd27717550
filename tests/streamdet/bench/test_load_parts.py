"""The load driver's bookkeeping: expected windows, latency matching, /metrics deltas, endpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES
from streamdet.bench.load import StepConfig, StreamPlan, Tracker, expected_windows, plan_streams, stream_audio
from streamdet.bench.server import Endpoints, metrics_delta, parse_ready
from streamdet.service.events import EndEvent, WindowEvent, encode_event
from streamdet.stream.policy import StreamPolicy
from streamdet.stream.windower import Windower


@pytest.mark.parametrize("total", [1, 1000, WINDOW_SAMPLES - 1, WINDOW_SAMPLES, WINDOW_SAMPLES + 1,
                                   WINDOW_SAMPLES + 16_000, WINDOW_SAMPLES + 16_001, 5 * SAMPLE_RATE,
                                   30 * SAMPLE_RATE, 30 * SAMPLE_RATE + 7])
@pytest.mark.parametrize("hop", [8_000, 16_000, 24_000])
def test_expected_windows_match_the_services_windower(total: int, hop: int):
    windower = Windower(hop, min_tail=StreamPolicy().min_tail)  # the service's: no window under 1 s
    emitted = len(windower.push(np.zeros(total, dtype=np.float32)))
    emitted += windower.finish() is not None
    assert expected_windows(total, hop) == emitted


def _score(stream_id: str, end_s: float, latency_ms: float = 5.0) -> WindowEvent:
    return WindowEvent(event="score", stream_id=stream_id, window=0, start=end_s - WINDOW_SAMPLES / SAMPLE_RATE,
                       end=end_s, wall_time=0.0, p_spoof=0.5, p_bonafide=0.5, spoof_threshold=0.5, threshold=0.5,
                       spoof=True, alert=False,
                       final=False, model_id="m", latency_ms=latency_ms)


def test_tracker_measures_from_the_frame_holding_the_windows_last_sample():
    chunk = 320
    plan = StreamPlan("s-000", np.zeros(70_000, dtype=np.float32), 0.0)
    tracker = Tracker([plan], chunk)
    record = tracker.records["s-000"]
    record.sent = [100.0 + i for i in range(-(-70_000 // chunk))]  # frame i sent at 100 + i
    tracker.on_event(_score("s-000", WINDOW_SAMPLES / SAMPLE_RATE), received=400.0)
    # Sample 64,599 is in frame 64,599 // 320 = 201, sent at 301.
    assert tracker.latencies == [pytest.approx(99.0)]
    assert tracker.service_latencies == [pytest.approx(0.005)]
    tracker.on_event(_score("someone-else", 4.0), received=400.0)
    assert tracker.foreign == 1 and record.scores == 1
    tracker.on_event(EndEvent(stream_id="s-000", reason="end", duration=4.4, windows=2, dropped=1, alert=False,
                              wall_time=0.0, model_id="m"), received=401.0)
    assert tracker.ended == 1 and record.end == {"windows": 2, "dropped": 1, "reason": "end", "duration": 4.4}


@pytest.mark.parametrize(("codec", "frame"), [("opus", 201), ("PCMU", 202)])
def test_whip_windows_are_matched_behind_the_codecs_look_ahead(codec: str, frame: int):
    plan = StreamPlan("w-000", np.zeros(70_000, dtype=np.float32), 0.0, transport="whip")
    tracker = Tracker([plan], chunk=1_000, whip_codec=codec)  # WHIP frames are 20 ms whatever --chunk-ms
    record = tracker.records["w-000"]
    record.sent = [100.0 + i for i in range(-(-70_000 // 320))]
    # A window ending 50 samples into frame 202: Opus's 104-sample look-ahead puts its last input
    # sample in frame 201; PCMU has none.
    tracker.on_event(_score("w-000", (202 * 320 + 50) / SAMPLE_RATE), received=400.0)
    assert tracker.latencies == [pytest.approx(400.0 - (100.0 + frame))]
    assert tracker.by_transport == {"whip": tracker.latencies}


def test_tracker_counts_a_score_for_a_frame_not_sent_yet_as_unmatched():
    plan = StreamPlan("s-000", np.zeros(70_000, dtype=np.float32), 0.0)
    tracker = Tracker([plan], 320)
    tracker.on_event(_score("s-000", WINDOW_SAMPLES / SAMPLE_RATE), received=1.0)
    assert tracker.unmatched == 1 and tracker.latencies == []


def test_plans_spread_starts_over_one_hop_and_differ_per_stream():
    plans = plan_streams(StepConfig(streams=6, duration_s=2.0, hop_s=1.0))
    assert len({p.stream_id for p in plans}) == 6
    assert all(0.0 <= p.start_offset_s < 1.0 for p in plans)
    assert all(len(p.audio) == 2 * SAMPLE_RATE and p.audio.dtype == np.float32 for p in plans)
    assert not np.array_equal(plans[0].audio, plans[1].audio)


def test_stream_audio_loops_clips():
    clips = [np.ones(3, dtype=np.float32), np.full(2, 2.0, dtype=np.float32)]
    np.testing.assert_array_equal(stream_audio(1, 6, clips), [2, 2, 1, 1, 1, 2])


def test_parse_ready_and_default_endpoints():
    ready = parse_ready("ready: ingest tcp://127.0.0.1:5001, events tcp://127.0.0.1:5002, http http://127.0.0.1:8001")
    assert ready == Endpoints("tcp://127.0.0.1:5001", "tcp://127.0.0.1:5002", "http://127.0.0.1:8001")
    assert parse_ready("ready: ingest tcp://a:1, events tcp://a:2, http off").http is None
    assert Endpoints.for_host("box") == Endpoints("tcp://box:5555", "tcp://box:5556", "http://box:8080")
    assert Endpoints.for_host("box", events="tcp://box:7", http="").http is None


def test_metrics_delta_counts_what_a_step_added():
    before = {"streamdet_windows_scored_total": 10.0, 'streamdet_windows_dropped_total{reason="overload"}': 1.0,
              "streamdet_batch_size_count": 5.0, "streamdet_batch_size_sum": 5.0,
              "streamdet_batch_seconds_count": 5.0, "streamdet_batch_seconds_sum": 0.1}
    after = {"streamdet_windows_scored_total": 30.0, 'streamdet_windows_dropped_total{reason="overload"}': 4.0,
             'streamdet_windows_dropped_total{reason="error"}': 1.0,
             'streamdet_ingest_rejects_total{reason="bad_json"}': 2.0,
             'streamdet_whip_rejects_total{reason="bad_sdp"}': 3.0, "streamdet_whip_concealed_seconds_total": 0.04,
             "streamdet_batch_size_count": 15.0, "streamdet_batch_size_sum": 25.0,
             "streamdet_batch_seconds_count": 15.0, "streamdet_batch_seconds_sum": 0.3}
    delta = metrics_delta(before, after)
    assert delta["windows_scored"] == 20 and delta["windows_dropped"] == 4
    assert delta["windows_dropped_by_reason"] == {"overload": 3, "error": 1}
    assert delta["rejects"] == 2 and delta["batches"] == 10
    assert delta["whip_rejects"] == 3 and delta["whip_concealed_s"] == pytest.approx(0.04)
    assert delta["mean_batch_size"] == pytest.approx(2.0) and delta["mean_batch_ms"] == pytest.approx(20.0)
    assert metrics_delta(before, {}) == {}


def test_tracker_reads_the_events_json_as_it_reads_event_objects():
    plan = StreamPlan("s-000", np.zeros(70_000, dtype=np.float32), 0.0)
    by_object, by_json = Tracker([plan], 320), Tracker([plan], 320)
    for tracker in (by_object, by_json):
        tracker.records["s-000"].sent = [100.0 + i for i in range(219)]
    events = [_score("s-000", WINDOW_SAMPLES / SAMPLE_RATE), _score("other", 4.0),
              EndEvent(stream_id="s-000", reason="end", duration=4.4, windows=2, dropped=1, alert=False,
                       wall_time=0.0, model_id="m")]
    for event in events:
        by_object.on_event(event, received=400.0)
        by_json.on_message(json.loads(encode_event(event)[1]), received=400.0)
    assert by_json.latencies == by_object.latencies == [pytest.approx(99.0)]
    assert by_json.service_latencies == by_object.service_latencies
    assert (by_json.foreign, by_json.ended) == (by_object.foreign, by_object.ended) == (1, 1)
    assert by_json.records["s-000"].end == by_object.records["s-000"].end
