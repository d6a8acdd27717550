"""What the load client of ``streamdet bench`` costs in CPU per frame (issue 16), without a service.

    nice -n 19 python benchmarks/bench_client_cpu.py --streams 40 --duration 10

The client shares its machine with the service it measures, so every CPU millisecond it spends is
taken from the service. This runs ``streamdet.bench.load.run_step`` (pacing, sending, following the
events) against a stand-in process that only drains the ingest socket (a PULL socket) and publishes a
cheap ``score`` event every 50th frame and an ``end`` event at each stream's last frame, so the client
does all of its real work and the service none. The stand-in's CPU is not counted.

Prints, as JSON: the client's CPU (``time.process_time``, all its threads, ZeroMQ's I/O thread
included; ``main_thread``: the Python side alone, the rest is ZeroMQ's I/O threads) per frame sent, over the step (``run_step``'s own clock: what the service would lose) and
over the whole call (planning and pre-encoding before the clock too), with the load average (the
machine is shared: CPU time per frame depends little on it, the pacing lag does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from streamdet.audio import SAMPLE_RATE
from streamdet.bench.load import StepConfig, run_step
from streamdet.bench.server import Endpoints

STAND_IN = r"""
import json, sys, zmq
from streamdet.service.events import EndEvent, WindowEvent, encode_event
context = zmq.Context()
pull, pub = context.socket(zmq.PULL), context.socket(zmq.PUB)
pull.bind("tcp://127.0.0.1:*"); pub.bind("tcp://127.0.0.1:*")
print(pull.last_endpoint.decode(), pub.last_endpoint.decode(), flush=True)
samples = {}
while True:
    stream, header, payload = pull.recv_multipart()
    header, sid = json.loads(header), stream.decode()
    samples[sid] = samples.get(sid, 0) + len(payload) // 2
    if header["seq"] % 50 == 49:
        end = samples[sid] / 16000
        pub.send_multipart(encode_event(WindowEvent("score", sid, header["seq"] // 50, end - 4.0, end, 0.0, 0.1,
                                                    0.9, 0.5, 0.5, False, False, False, "stand-in", 1.0)))
    if header.get("end"):
        pub.send_multipart(encode_event(EndEvent(sid, "end", samples[sid] / 16000, 1, 0, False, 0.0, "stand-in")))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    parser.add_argument("--tick-ms", type=float, default=None, help="the pacing tick (default: the driver's)")
    args = parser.parse_args()
    stand_in = subprocess.Popen([sys.executable, "-c", STAND_IN], stdout=subprocess.PIPE, text=True)
    try:
        ingest, events = stand_in.stdout.readline().split()  # type: ignore[union-attr]
        config = StepConfig(streams=args.streams, duration_s=args.duration, chunk_ms=args.chunk_ms, settle_s=10.0,
                            id_prefix=f"cpu-{os.getpid()}")
        if args.tick_ms is not None and hasattr(config, "pacing_tick_ms"):  # absent before issue 16
            config.pacing_tick_ms = args.tick_ms
        load_before = os.getloadavg()
        cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.monotonic()
        step = asyncio.run(run_step(Endpoints(ingest, events, None), config))
        cpu_total, wall_total = time.process_time() - cpu0, time.monotonic() - wall0
        main_thread = time.thread_time() - thread0
    finally:
        stand_in.kill()
        stand_in.wait()
    frames = args.streams * -(-round(args.duration * SAMPLE_RATE) // config.chunk_samples)
    step_cpu = step["client_cpu_percent"] * step["wall_s"] / 100
    print(json.dumps({
        "streams": args.streams, "duration_s": args.duration, "frames": frames,
        "pacing_tick_ms": getattr(config, "pacing_tick_ms", 0.0),
        "scores_received": step["windows_scored"], "streams_ended": step["streams_ended"],
        "client_cpu_us_per_frame_in_step": round(1e6 * step_cpu / frames, 1),
        "client_cpu_us_per_frame_total": round(1e6 * cpu_total / frames, 1),
        "main_thread_cpu_us_per_frame_total": round(1e6 * main_thread / frames, 1),
        "client_cpu_percent_in_step": step["client_cpu_percent"],
        "step_wall_s": step["wall_s"], "total_wall_s": round(wall_total, 2),
        "pacing_lag_ms": {k: step["pacing_lag_ms"][k] for k in ("p50_ms", "p99_ms")},
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }, indent=1))


if __name__ == "__main__":
    main()
