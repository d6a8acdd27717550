"""The media-stream WebSocket ingest's own cost: N Twilio Media Streams calls (μ-law 8 kHz, 20 ms
messages, real time) against an in-process service whose scorer is a constant, so the model costs
nothing and what is measured is the WebSocket path (aiohttp, JSON, base64, G.711, edge, windows,
batcher, events) and the driver that shares this process.

    python benchmarks/load_ws_ingest.py --streams 50 --duration 20 [--zmq] [--profile]

``--zmq`` sends the same streams over ZeroMQ instead, for comparison; ``--profile`` runs cProfile
(CPU time) over the step and prints the functions with the most own time (it slows the process
down: read its latencies as meaningless, its proportions as the profile). Prints the step's JSON
(``streamdet.bench.load.run_step``) and the process's CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import time

from streamdet.bench.load import StepConfig, run_step
from streamdet.bench.server import Endpoints
from streamdet.scoring.constant import ConstantScorer
from streamdet.service.server import Service
from streamdet.service.settings import load_settings

LOOPBACK = "tcp://127.0.0.1:*"


async def main(args: argparse.Namespace) -> None:
    settings = load_settings(None, {"ingest": {"endpoint": LOOPBACK}, "alerts": {"endpoint": LOOPBACK},
                                    "http": {"port": 0}, "ingests": {"media_ws": {"enabled": True}}})
    service = Service(settings, ConstantScorer())
    await service.start()
    endpoints = Endpoints(service.ingest_endpoint, service.events_endpoint, f"http://127.0.0.1:{service.http_port}")
    config = StepConfig(streams=args.streams, ws_streams=0 if args.zmq else args.streams,
                        duration_s=args.duration, settle_s=30, id_prefix=f"ingest-{int(time.time())}")
    profile = cProfile.Profile(time.process_time)
    cpu, wall = time.process_time(), time.monotonic()
    if args.profile:
        profile.enable()
    try:
        step = await run_step(endpoints, config)
    finally:
        profile.disable()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        await service.stop()
    keys = ("streams", "ws_streams", "windows_expected", "windows_scored", "drops", "latency_ms",
            "service_latency_ms", "pacing_lag_ms", "ws_errors", "loadavg_before", "loadavg_after")
    print(json.dumps({**{k: step[k] for k in keys}, "process_cpu_percent": round(100 * cpu / wall, 1)}, indent=1))
    if args.profile:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(20)
        print(text.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--zmq", action="store_true", help="send over ZeroMQ instead (comparison)")
    parser.add_argument("--profile", action="store_true", help="cProfile (CPU time) over the step")
    asyncio.run(main(parser.parse_args()))
