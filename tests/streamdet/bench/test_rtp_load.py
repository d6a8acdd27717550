"""``streamdet bench --transport rtp``: calls sending μ-law RTP to ports opened with ``POST /rtp``;
every window accounted for and matched to the packet that completed it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from streamdet.bench.load import StepConfig
from streamdet.bench.rtp_load import run_rtp_step, ulaw_payloads
from streamdet.bench.server import Endpoints
from streamdet.cli import main
from streamdet.scoring.constant import ConstantScorer
from streamdet.service.server import Service
from streamdet.service.settings import load_settings

LOOPBACK = "tcp://127.0.0.1:*"


def test_payloads_are_20_ms_of_8_khz_ulaw() -> None:
    payloads = ulaw_payloads(np.zeros(16_000, np.float32))
    assert len(payloads) == 50 and {len(p) for p in payloads} == {160}


async def test_an_rtp_step_accounts_for_every_window_and_packet() -> None:
    settings = load_settings(None, {"ingest": {"endpoint": LOOPBACK}, "alerts": {"endpoint": LOOPBACK},
                                    "http": {"port": 0}, "window": {"hop_samples": 8_000},
                                    "ingests": {"rtp": {"enabled": True}}})
    service = Service(settings, ConstantScorer(0.9))
    await service.start()
    try:
        endpoints = Endpoints(service.ingest_endpoint, service.events_endpoint, f"http://127.0.0.1:{service.http_port}")
        step = await run_rtp_step(endpoints, StepConfig(streams=3, duration_s=5.0, hop_s=0.5, settle_s=20),
                                  server_pid=os.getpid())
    finally:
        await service.stop()
    assert step["transport"] == "rtp" and step["streams_ended"] == 3 and step["settled"]
    assert step["windows_expected"] == step["windows_scored"] == 9  # 2 full windows + the tail, per stream
    assert step["drops"]["total"] == 0 and step["unmatched_scores"] == 0
    assert step["latency_ms"]["count"] == 9
    assert step["rtp_packets"] == {"accepted": 3 * 250}
    assert service.ingests["rtp"].sessions == {}  # closed after the step


def test_the_cli_starts_a_server_with_the_rtp_ingest(mel_cm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rtp.json"
    main(["bench", "--engine", str(mel_cm_dir), "--streams", "2", "--transport", "rtp", "--duration", "5",
          "--threads", "1", "--settle-s", "60", "--out", str(out)])
    report = json.loads(out.read_text())
    step = report["steps"][0]
    assert report["config"]["transport"] == "rtp" and step["transport"] == "rtp"
    assert step["windows_scored"] == step["windows_expected"] == 4 and step["drops"]["total"] == 0
    assert "STREAMDET_INGESTS__RTP__ENABLED" not in os.environ  # only the server's start saw it
