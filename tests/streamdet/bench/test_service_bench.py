"""``streamdet bench`` against the service: the CI-sized sweep (a real ``streamdet serve`` subprocess
with a random-weight Mel-LCNN) and the driver's accounting against in-process services."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest

from streamdet.bench.load import StepConfig, run_step
from streamdet.bench.server import Endpoints, ServerProcess
from streamdet.bench.sweep import SLO
from streamdet.cli import main
from streamdet.commands.serve import default_lanes
from streamdet.manifest import InputContract
from streamdet.scoring.base import Scorer
from streamdet.service.server import Service
from streamdet.service.settings import load_settings

LOOPBACK = "tcp://127.0.0.1:*"
STEP_FIELDS = {"streams", "duration_s", "hop_s", "windows_expected", "windows_scored", "windows_per_s", "drops",
               "streams_ended", "settled", "latency_ms", "service_latency_ms", "pacing_lag_ms", "server",
               "client_cpu_percent", "metrics", "slo_met", "slo_failures", "loadavg_before"}
LATENCY_FIELDS = {"count", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}


def test_ci_sweep_writes_json_and_plot(mel_cm_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "sweep.json"
    status = main(["bench", "--engine", str(mel_cm_dir), "--sweep", "--streams", "1,2", "--duration", "5",
                   "--threads", "1", "--settle-s", "60", "--out", str(out)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["kind"] == "service_sweep" and report["version"] == 1
    assert report["slo"] == {"p99_ms": 500.0, "max_drops": 0, "max_pacing_lag_ms": 100.0}
    assert report["config"]["counts"] == [1, 2] and report["config"]["hop_s"] == 1.0
    assert report["server"]["started"] and report["server"]["exit_status"] == 0
    assert "--threads=1" in report["server"]["serve_args"]
    assert Path(report["plot"]).is_file() and Path(report["plot"]).read_bytes()[:4] == b"\x89PNG"
    assert "largest stream count meeting the SLO" in printed
    steps = report["steps"]
    assert 1 <= len(steps) <= 2 and steps[0]["streams"] == 1
    for step in steps:
        assert STEP_FIELDS <= set(step)
        assert LATENCY_FIELDS <= set(step["latency_ms"])
        # 5 s at a 1-s hop: one full window and the tail, per stream; every one scored and matched.
        assert step["windows_expected"] == 2 * step["streams"] == step["windows_scored"]
        assert step["drops"] == {"reported": 0, "end_events": 0, "metrics": 0, "missing_windows": 0, "total": 0}
        assert step["metrics"]["windows_scored"] == step["windows_scored"]
        assert step["metrics"]["frames"] == 250 * step["streams"]
        assert step["latency_ms"]["count"] == step["windows_scored"] and step["latency_ms"]["p50_ms"] > 0
        assert step["server"]["cpu_percent"] is not None and step["server"]["rss_mb"] > 0
        assert step["unmatched_scores"] == 0
    # The verdict follows the SLO; on a loaded CI machine the service may legitimately miss it.
    met = [s["streams"] for s in steps if s["slo_met"]]
    assert report["max_streams_meeting_slo"] == (max(met) if met and steps[0]["slo_met"] else None)
    assert status == (0 if report["max_streams_meeting_slo"] is not None else 1)
    # The scorer alone at the service's settings (threads 1, serve's CPU default of a lane per core,
    # one worker, CPU batch 2), timed before and after the sweep.
    reference = report["model_only_reference"]
    assert (reference["threads"], reference["workers"], reference["lanes"], reference["batch_size"]) == (
        1, 1, default_lanes("cpu"), 2)
    assert reference["windows_per_s"] == max(reference["before"]["windows_per_s"], reference["after"]["windows_per_s"]) > 0
    best = report["max_streams_meeting_slo"]
    assert report["service_efficiency"] == (None if best is None else pytest.approx(best / reference["windows_per_s"]))
    assert "service efficiency:" in printed


def test_some_streams_over_whip(mel_cm_dir: Path, tmp_path: Path):
    pytest.importorskip("aiortc")
    out = tmp_path / "whip.json"
    main(["bench", "--engine", str(mel_cm_dir), "--streams", "2", "--whip-streams", "1", "--duration", "5",
          "--threads", "1", "--settle-s", "60", "--out", str(out)])
    report = json.loads(out.read_text())
    assert "--whip-ice-addresses=127.0.0.1" in report["server"]["serve_args"]
    step = report["steps"][0]
    assert step["whip_streams"] == 1 and step["whip_errors"] == [] and step["streams_ended"] == 2
    # The ZeroMQ stream gets its 2 windows; the WHIP one what the service counted (Opus adds a tail).
    assert step["windows_scored"] == step["windows_expected"] >= 4
    assert step["latency_ms"]["count"] == step["windows_scored"] and step["drops"]["total"] == 0
    by_transport = step["latency_ms_by_transport"]
    assert by_transport["zmq"]["count"] == 2 and by_transport["whip"]["count"] == step["windows_scored"] - 2


def test_whip_streams_cannot_outnumber_the_streams(mel_cm_dir: Path, capsys):
    assert main(["bench", "--engine", str(mel_cm_dir), "--streams", "2", "--whip-streams", "3"]) == 2
    assert "--whip-streams" in capsys.readouterr().err


def test_whip_publishers_alone_on_the_shipped_cm(tmp_path: Path):
    pytest.importorskip("aiortc")
    from streamdet.pretrained import default_cm_dir

    out = tmp_path / "whip-only.json"
    main(["bench", "--streams", "1", "--whip-streams", "1", "--duration", "6", "--threads", "1",
          "--settle-s", "60", "--out", str(out)])
    report = json.loads(out.read_text())
    # No --engine: the CM `streamdet serve` scores with by default.
    assert report["config"]["engine"] == str(default_cm_dir()) and report["config"]["whip_codec"] == "opus"
    assert Path(report["plot"]).read_bytes()[:4] == b"\x89PNG"
    step = report["steps"][0]
    assert step["whip_streams"] == 1 and step["whip_errors"] == [] and step["end_reasons"] == ["end"]
    assert step["windows_scored"] == step["windows_expected"] >= 3 and step["drops"]["total"] == 0
    assert step["media_sent_s"] == 6.0 and step["media_received_s"] > 5.0
    assert step["metrics"]["whip_rejects"] == 0 and step["metrics"]["frames"] > 0
    assert step["latency_ms"]["count"] == step["windows_scored"] == step["latency_ms_by_transport"]["whip"]["count"]
    latency = step["latency_ms"]
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert len(step["loadavg_before"]) == len(step["loadavg_after"]) == 3
    assert step["pacing_lag_ms"]["count"] == 0  # nothing went over ZeroMQ


def test_service_bench_takes_one_target(mel_cm_dir: Path, capsys):
    assert main(["bench", "--engine", str(mel_cm_dir), "--connect", "127.0.0.1", "--streams", "2"]) == 2
    assert "--engine" in capsys.readouterr().err
    assert main(["bench", "--engine", str(mel_cm_dir), "--streams", "1", "--whip-streams", "1",
                 "--whip-codec", "G711"]) == 2
    assert "--whip-codec" in capsys.readouterr().err
    assert main(["bench", "--connect", "127.0.0.1", "--streams", "2,4"]) == 2
    assert "--sweep" in capsys.readouterr().err


class ConstantScorer(Scorer):
    """A model-free scorer taking ``delay_s`` per batch (without blocking the event loop)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.contract = InputContract()
        self.model_id = "constant@0"
        self.delay_s = delay_s

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        return np.full(len(self.check_windows(windows)), 0.9, dtype=np.float32)

    async def score(self, windows: np.ndarray) -> np.ndarray:
        await asyncio.sleep(self.delay_s)
        return self.score_batch(windows)


async def _service(scorer: Scorer, **scoring) -> Service:
    settings = load_settings(None, {"ingest": {"endpoint": LOOPBACK}, "alerts": {"endpoint": LOOPBACK},
                                    "http": {"port": 0}, "window": {"hop_samples": 8_000}, "scoring": scoring})
    service = Service(settings, scorer)
    await service.start()
    return service


def _endpoints(service: Service) -> Endpoints:
    return Endpoints(service.ingest_endpoint, service.events_endpoint, f"http://127.0.0.1:{service.http_port}")


async def test_a_healthy_service_meets_the_slo_with_every_window_accounted():
    service = await _service(ConstantScorer())
    try:
        step = await run_step(_endpoints(service), StepConfig(streams=3, duration_s=5.0, hop_s=0.5, settle_s=20),
                              server_pid=os.getpid())
    finally:
        await service.stop()
    # 80,000 samples at a 8,000-sample hop: 2 full windows + the tail = 3 per stream.
    assert step["windows_expected"] == step["windows_scored"] == 9
    assert step["drops"]["total"] == 0 and step["settled"] and step["streams_ended"] == 3
    assert step["metrics"]["windows_scored"] == 9
    assert SLO(p99_ms=5_000).failures(step) == []


async def test_an_overloaded_service_shows_drops_and_fails_the_slo():
    # One window per batch, 0.4 s each, at most one waiting per stream: 12 windows/s offered, 2.5 scored.
    service = await _service(ConstantScorer(delay_s=0.4), max_batch=1, max_pending_per_stream=1, max_wait_ms=0)
    try:
        step = await run_step(_endpoints(service), StepConfig(streams=4, duration_s=6.0, hop_s=0.5, settle_s=30),
                              server_pid=os.getpid())
    finally:
        await service.stop()
    drops = step["drops"]
    assert drops["metrics"] > 0 and drops["reported"] == drops["end_events"] == drops["metrics"]
    assert step["metrics"]["windows_dropped_by_reason"] == {"overload": drops["metrics"]}
    assert step["windows_scored"] + drops["total"] == step["windows_expected"]
    assert any("dropped" in reason for reason in SLO().failures(step))


async def test_two_bench_servers_run_side_by_side_each_with_a_private_journal(mel_cm_dir: Path, monkeypatch):
    # The default journal admits one service; a benchmark must neither take the user's nor collide.
    monkeypatch.delenv("STREAMDET_EVENTS__JOURNAL_PATH", raising=False)
    servers = [ServerProcess(mel_cm_dir), ServerProcess(mel_cm_dir)]
    try:
        for server in servers:
            await server.start(timeout_s=120)
        dirs = [Path(s._state_dir) for s in servers if s._state_dir is not None]
        assert len(dirs) == 2 and all((d / "events.sqlite").is_file() for d in dirs)
    finally:
        codes = [await server.stop() for server in servers]
    assert codes == [0, 0]
    assert not any(d.exists() for d in dirs)
