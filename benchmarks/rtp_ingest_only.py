"""The RTP ingest's own cost under ``streamdet bench --transport rtp`` load: the same step against a
service in this process whose scorer is free (a constant), so that whatever limits it is the ingest
path (UDP receive, jitter buffer, μ-law decode, edge, windows, events), not the model.

    python benchmarks/rtp_ingest_only.py --streams 50 --duration 30 --out runs/bench/rtp/ingest-only.json

The load driver shares this process (and its event loop) with the service: a pessimistic setup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from streamdet.bench.load import StepConfig
from streamdet.bench.rtp_load import run_rtp_step
from streamdet.bench.server import Endpoints
from streamdet.scoring.constant import ConstantScorer
from streamdet.service.server import Service
from streamdet.service.settings import load_settings

LOOPBACK = "tcp://127.0.0.1:*"


async def main(args: argparse.Namespace) -> dict:
    settings = load_settings(None, {"ingest": {"endpoint": LOOPBACK}, "alerts": {"endpoint": LOOPBACK},
                                    "http": {"port": 0}, "ingests": {"rtp": {"enabled": True}}})
    service = Service(settings, ConstantScorer(0.9))
    await service.start()
    try:
        endpoints = Endpoints(service.ingest_endpoint, service.events_endpoint, f"http://127.0.0.1:{service.http_port}")
        return await run_rtp_step(endpoints, StepConfig(streams=args.streams, duration_s=args.duration),
                                  server_pid=os.getpid())
    finally:
        await service.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    step = asyncio.run(main(args))
    text = json.dumps(step, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    keys = ("windows_expected", "windows_scored", "drops", "latency_ms", "server", "rtp_packets", "loadavg_before")
    print(json.dumps({k: step[k] for k in keys}, indent=1))
