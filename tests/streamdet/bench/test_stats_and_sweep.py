"""Pure parts of the benchmark: statistics, the SLO, stream counts, machine info."""

from __future__ import annotations

import pytest

from streamdet.bench.machine import machine_info, wait_for_quiet
from streamdet.bench.stats import latency_summary, time_calls
from streamdet.bench.sweep import SLO, parse_counts, sweep


def test_latency_summary_reports_milliseconds():
    summary = latency_summary([0.1] * 98 + [0.2, 1.0])
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(100.0)
    assert summary["max_ms"] == pytest.approx(1000.0)
    assert summary["p50_ms"] <= summary["p90_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def test_latency_summary_of_nothing_has_the_same_fields():
    assert latency_summary([]) == {"count": 0, "p50_ms": None, "p90_ms": None, "p95_ms": None, "p99_ms": None,
                                   "max_ms": None, "mean_ms": None}


def test_time_calls_stops_at_the_budget_but_keeps_two():
    calls = []
    times = time_calls(lambda: calls.append(1), repeats=50, budget_s=0.0)
    assert len(times) == len(calls) == 2


def test_parse_counts():
    assert parse_counts("4,8, 16") == [4, 8, 16]
    for bad in ("", "8,4", "0,1", "4,4"):
        with pytest.raises(ValueError):
            parse_counts(bad)


def _step(streams: int, p99: float | None, drops: int = 0, settled: bool = True, lag: float = 1.0) -> dict:
    return {"streams": streams, "streams_ended": streams if settled else 0, "settled": settled,
            "latency_ms": {"p50_ms": p99, "p90_ms": p99, "p95_ms": p99, "p99_ms": p99, "max_ms": p99},
            "drops": {"total": drops}, "pacing_lag_ms": {"p99_ms": lag}, "windows_per_s": 1.0,
            "server": {"cpu_percent": 10.0}, "client_cpu_percent": 1.0,
            "loadavg_before": [0.5, 0.4, 0.3], "loadavg_after": [0.6, 0.4, 0.3]}


def test_slo_failures_name_every_reason():
    slo = SLO(p99_ms=500, max_drops=0)
    assert slo.failures(_step(4, 120.0)) == []
    reasons = slo.failures(_step(4, 800.0, drops=3, settled=False, lag=400.0))
    assert len(reasons) == 4
    assert any("p99" in r for r in reasons) and any("dropped" in r for r in reasons)
    assert any("did not end" in r for r in reasons) and any("behind real time" in r for r in reasons)
    assert slo.failures(_step(4, None)) == ["no window was scored"]


async def test_sweep_stops_at_the_first_failure_and_reports_the_last_success():
    p99 = {4: 100.0, 8: 300.0, 16: 900.0, 24: 200.0}
    ran = []

    async def run(n: int) -> dict:
        ran.append(n)
        return _step(n, p99[n])

    result = await sweep([4, 8, 16, 24], run, SLO(), say=lambda line: None)
    assert ran == [4, 8, 16]
    assert result["max_streams_meeting_slo"] == 8
    assert result["first_failing_streams"] == 16
    assert [s["slo_met"] for s in result["steps"]] == [True, True, False]

    ran.clear()
    result = await sweep([4, 8, 16, 24], run, SLO(), keep_going=True, say=lambda line: None)
    assert ran == [4, 8, 16, 24]
    assert result["max_streams_meeting_slo"] == 8  # a success after a failure does not count


def test_machine_info_names_the_cpu_and_the_command():
    info = machine_info()
    assert info["cpus"] >= 1 and info["cpu_model"]
    assert {"torch", "torch_default_threads", "time_utc", "command", "onnxruntime"} <= set(info)


def test_wait_for_quiet_gives_up_after_its_timeout():
    said = []
    load = wait_for_quiet(max_load=-1.0, timeout_s=0.0, poll_s=0.0, say=said.append)
    assert len(load) == 3 and said and "anyway" in said[-1]
