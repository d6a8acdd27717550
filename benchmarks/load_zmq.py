"""Load test of ``streamdet serve`` over ZeroMQ: N concurrent real-time streams, measured end to end.

    python benchmarks/load_zmq.py --engine engines/codec_mellcnn --streams 16 --duration 60

Starts the service as a subprocess (``python -m streamdet serve``, all sockets on loopback), sends
``--streams`` 16 kHz streams at real-time pace in 20 ms frames (their starts spread over the first
second, as independent calls would be), and follows every ``score`` event. End-to-end latency of a
window = time its score event is received − time the frame holding the window's last sample was
sent, both on this process's monotonic clock. Prints one JSON summary: window counts, drops (from
the ``end`` events and /metrics), latency percentiles, the service's CPU use and the machine load.
Audio: ``--audio FILE...`` (mono 16 kHz clips, looped), else a synthetic signal.
Pass ``--endpoint/--events/--http`` instead of ``--engine`` to load a service that is already running.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import re
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamdet.audio import SAMPLE_RATE  # noqa: E402
from streamdet.bench.load import load_clips, stream_audio  # noqa: E402
from streamdet.client import Sender, Subscriber  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", type=Path, help="CM directory: start a service with it")
    p.add_argument("--endpoint", help="ingest endpoint of a running service (instead of --engine)")
    p.add_argument("--events", help="event endpoint of a running service")
    p.add_argument("--http", help="HTTP base URL of a running service, for /metrics")
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of audio per stream")
    p.add_argument("--chunk-ms", type=float, default=20.0)
    p.add_argument("--audio", type=Path, nargs="*", default=[], help="16 kHz clips to loop (default: synthetic)")
    p.add_argument("--serve-arg", action="append", default=[], help="extra argument for serve (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON summary here")
    return p.parse_args()



async def start_service(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "serve", "--engine", str(args.engine), "--ingest", "tcp://127.0.0.1:*",
        "--events", "tcp://127.0.0.1:*", "--http-port", "0", "--log-format", "json", *args.serve_arg,
        env=env, stderr=asyncio.subprocess.PIPE)
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 300)
        if not line:
            raise SystemExit("the service exited before it was ready")
        try:
            message = json.loads(line)["message"]
        except (json.JSONDecodeError, KeyError):
            continue
        if message.startswith("ready:"):
            parts = dict(p.strip().split(" ", 1) for p in message[len("ready:"):].split(","))
            return proc, parts


def metrics(http: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{http}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if match:
            out[match.group(1)] = float(match.group(2))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Tracker:
    """Send times of every frame, and the latency of every score event matched to them."""

    def __init__(self) -> None:
        self.frame_ends: dict[str, list[int]] = {}
        self.frame_times: dict[str, list[float]] = {}
        self.latencies: list[float] = []
        self.service_latencies: list[float] = []
        self.unmatched = 0
        self.ends: dict[str, dict] = {}

    def on_frame(self, stream_id: str, seq: int, end_sample: int, sent: float) -> None:
        self.frame_ends.setdefault(stream_id, []).append(end_sample)
        self.frame_times.setdefault(stream_id, []).append(sent)

    def on_score(self, event, received: float) -> None:
        ends = self.frame_ends.get(event.stream_id, [])
        last_sample = round(event.end * SAMPLE_RATE) - 1
        i = bisect.bisect_right(ends, last_sample)  # the first frame whose end is past that sample
        if i >= len(ends):
            self.unmatched += 1
            return
        self.latencies.append(received - self.frame_times[event.stream_id][i])
        self.service_latencies.append(event.latency_ms / 1000.0)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p90_ms": round(float(np.percentile(a, 90)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1), "max_ms": round(float(a.max()), 1),
            "mean_ms": round(float(a.mean()), 1)}


async def run(args: argparse.Namespace) -> dict:
    proc = None
    if args.engine:
        proc, parts = await start_service(args)
        endpoint, events, http = parts["ingest"], parts["events"], parts["http"]
        drain = asyncio.create_task(proc.stderr.read())
    else:
        endpoint, events, http = args.endpoint, args.events, args.http
    clips = load_clips(args.audio)
    audio = [stream_audio(i, int(args.duration * SAMPLE_RATE), clips) for i in range(args.streams)]
    ids = [f"load-{i:03d}" for i in range(args.streams)]
    tracker = Tracker()
    rng = np.random.default_rng(args.seed)
    offsets = rng.uniform(0, 1.0, args.streams)  # independent calls do not start in the same millisecond
    load_before = os.getloadavg()
    cpu_before = cpu_seconds(proc.pid) if proc else None

    async with Subscriber(events, ["score."]) as subscriber:
        await subscriber.wait_connected()

        async def follow() -> None:
            while len(tracker.ends) < args.streams:
                event = await subscriber.recv()
                received = time.monotonic()
                if event.event == "score":
                    tracker.on_score(event, received)
                elif event.event == "end":
                    tracker.ends[event.stream_id] = {"windows": event.windows, "dropped": event.dropped}

        async def one_stream(sender: Sender, i: int) -> None:
            await asyncio.sleep(offsets[i])
            await sender.send_array(ids[i], audio[i], SAMPLE_RATE, fmt="s16le", speed=1.0,
                                    chunk_ms=args.chunk_ms, on_frame=tracker.on_frame)

        follower = asyncio.create_task(follow())
        started = time.monotonic()
        async with Sender(endpoint) as sender:
            await asyncio.gather(*(one_stream(sender, i) for i in range(args.streams)))
        sent_s = time.monotonic() - started
        await asyncio.wait_for(follower, 120)

    wall_s = time.monotonic() - started
    cpu_used = cpu_seconds(proc.pid) - cpu_before if proc else None
    scraped = metrics(http) if http else {}
    if proc:
        proc.terminate()
        await proc.wait()
        await drain
    windows = sum(e["windows"] for e in tracker.ends.values())
    dropped = sum(e["dropped"] for e in tracker.ends.values())
    batches = scraped.get("streamdet_batch_size_count", 0)
    return {
        "streams": args.streams, "duration_s": args.duration, "chunk_ms": args.chunk_ms,
        "audio": [str(p) for p in args.audio] or "synthetic",
        "windows_scored": windows, "windows_dropped_end_events": dropped,
        "windows_dropped_metrics": sum(v for k, v in scraped.items() if k.startswith("streamdet_windows_dropped_total")),
        "rejects_metrics": sum(v for k, v in scraped.items() if k.startswith("streamdet_ingest_rejects_total")),
        "latency_end_to_end": percentiles(tracker.latencies),
        "latency_service": percentiles(tracker.service_latencies),
        "unmatched_scores": tracker.unmatched,
        "mean_batch_size": round(scraped.get("streamdet_batch_size_sum", 0) / batches, 2) if batches else None,
        "batches": int(batches),
        "send_wall_s": round(sent_s, 2), "total_wall_s": round(wall_s, 2),
        "service_cpu_s": round(cpu_used, 1) if cpu_used is not None else None,
        "service_cpu_share": round(cpu_used / wall_s, 2) if cpu_used is not None else None,
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "serve_args": args.serve_arg,
    }


def main() -> int:
    args = parse_args()
    if not args.engine and not (args.endpoint and args.events):
        raise SystemExit("give --engine, or --endpoint and --events of a running service")
    summary = asyncio.run(run(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if summary["windows_dropped_end_events"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
