"""The service efficiency: streams held against the scorer's model-only rate at the service's settings."""

from __future__ import annotations

import pytest

from streamdet.bench.efficiency import efficiency_line, reference_of, service_efficiency, service_scoring
from streamdet.commands import serve


def test_efficiency_is_the_windows_the_held_streams_need_over_the_model_only_rate():
    # 40 streams at a 1-s hop need 40 windows/s; the model alone scores 100: 40 %.
    assert service_efficiency(40, 1.0, 100.0) == pytest.approx(0.40)
    # A 0.5-s hop doubles each stream's windows.
    assert service_efficiency(40, 0.5, 100.0) == pytest.approx(0.80)
    assert service_efficiency(None, 1.0, 100.0) is None
    assert service_efficiency(40, 1.0, None) is None
    with pytest.raises(ValueError):
        service_efficiency(40, 0.0, 100.0)


def test_efficiency_line_shows_the_arithmetic():
    model = {"windows_per_s": 110.0, "label": "torch", "threads": 1, "workers": 2, "batch_size": 2}
    line = efficiency_line(44, 1.0, model)
    assert "44 streams" in line and "110.0 windows/s" in line and "workers 2" in line and line.endswith("40 %")
    assert "n/a" in efficiency_line(None, 1.0, model)
    assert "n/a" in efficiency_line(44, 1.0, None)


def test_service_scoring_reads_the_serve_flags_and_resolves_the_cpu_batch(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMDET_SCORING__MAX_BATCH", raising=False)
    scoring = service_scoring(["--engine", str(tmp_path), "--device", "cpu", "--threads=1", "--workers=2"])
    assert (scoring.threads, scoring.workers, scoring.max_batch, scoring.device) == (1, 2, 2, "cpu")
    monkeypatch.setattr(serve.os, "cpu_count", lambda: 4)
    scoring = service_scoring(["--engine", str(tmp_path), "--device", "cpu", "--max-batch=4", "--lanes=2"])
    assert (scoring.threads, scoring.lanes, scoring.batches_in_flight, scoring.max_batch) == (2, 2, 3, 4)


def test_serve_defaults_on_cpu_are_a_batch_of_two_and_a_single_threaded_lane_per_core(tmp_path, monkeypatch):
    for name in ("STREAMDET_SCORING__MAX_BATCH", "STREAMDET_SCORING__WORKERS", "STREAMDET_SCORING__THREADS",
                 "STREAMDET_SCORING__LANES", "STREAMDET_SCORING__BATCHES_IN_FLIGHT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(serve.os, "cpu_count", lambda: 2)
    scoring = service_scoring(["--engine", str(tmp_path), "--device", "cpu"])
    # A batch ready for whichever lane finishes first: one more in flight than there are lanes.
    assert (scoring.max_batch, scoring.lanes, scoring.workers, scoring.threads, scoring.batches_in_flight) == (
        2, 2, 1, 1, 3)
    monkeypatch.setattr(serve.os, "cpu_count", lambda: 1)
    assert service_scoring(["--engine", str(tmp_path), "--device", "cpu"]).lanes == 1
    # Asked for, the cores are shared out among lanes and workers: 8 cores, 2 lanes x 2 workers = 2 threads each.
    monkeypatch.setattr(serve.os, "cpu_count", lambda: 8)
    scoring = service_scoring(["--engine", str(tmp_path), "--device", "cpu", "--lanes=2", "--workers=2"])
    assert (scoring.threads, scoring.batches_in_flight) == (2, 3)
    assert service_scoring(["--engine", str(tmp_path), "--device", "cpu", "--batches-in-flight=5"]).batches_in_flight == 5
    # On a GPU two lanes (one batch's VAD on the CPU while the other's is on the GPU), batches of 32,
    # and the intra-op threads left to the backend.
    scoring = service_scoring(["--engine", str(tmp_path), "--device", "cuda"])
    assert (scoring.lanes, scoring.batches_in_flight, scoring.max_batch, scoring.threads) == (2, 3, 32, 0)


def test_the_reference_is_the_faster_of_the_measurements_before_and_after_the_sweep():
    before = {"windows_per_s": 34.4, "label": "torch", "threads": 2, "workers": 1, "batch_size": 2}
    after = {**before, "windows_per_s": 96.0}
    reference = reference_of(before, after)
    assert reference["windows_per_s"] == 96.0 and reference["before"] == before and reference["after"] == after
    assert reference_of(after, before)["windows_per_s"] == 96.0
    line = efficiency_line(48, 1.0, reference)
    assert "34.4 before the sweep, 96.0 after" in line and line.endswith("50 %")
