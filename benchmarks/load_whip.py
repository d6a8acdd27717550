"""Load test of ``streamdet serve`` over WebRTC (WHIP): N concurrent real-time publishers, end to end.

    python benchmarks/load_whip.py --engine engines/codec_mellcnn --streams 10 --duration 60

Starts the service as a subprocess (``python -m streamdet serve``, everything on loopback, ICE on
127.0.0.1 only) and publishes ``--streams`` streams from this process with the aiortc WHIP client
(``streamdet.client.whip_sender``: Opus, 20 ms frames, paced in real time, starts spread over the
first second), then follows every ``score`` event on the ZeroMQ PUB socket.

End-to-end latency of a window = time its score event is received here − time the client handed
the frame holding the window's last sample to the encoder (both on this process's monotonic clock).
The window's last sample is its ``end`` in media seconds (the service counts samples from the first
one it decoded, which is the client's first), moved back by the Opus encoder's look-ahead (6.5 ms:
decoded audio lags the input by that much), so the latency covers encoding, RTP/SRTP over loopback,
the receiver's jitter buffer (4 packets), decoding, the edge, windowing, batching and scoring.

Prints one JSON summary: windows scored and dropped (end events and /metrics), media lost in
transit, latency percentiles, CPU of the service and of the publishers, and the machine load.
Audio: ``--audio FILE...`` (clips, looped), else a synthetic signal. Exit status 1 on any drop.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import re
import resource
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamdet.audio import SAMPLE_RATE  # noqa: E402
from streamdet.bench.load import load_clips, stream_audio  # noqa: E402
from streamdet.client import Subscriber  # noqa: E402
from streamdet.client.whip_sender import publish_array_async  # noqa: E402

OPUS_LOOKAHEAD_S = 0.0065


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", type=Path, required=True, help="CM directory: start a service with it")
    p.add_argument("--streams", type=int, default=10)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of audio per stream")
    p.add_argument("--audio", type=Path, nargs="*", default=[], help="clips to loop (default: synthetic)")
    p.add_argument("--codec", choices=["opus", "PCMU", "PCMA"], default="opus")
    p.add_argument("--serve-arg", action="append", default=[], help="extra argument for serve (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON summary here")
    return p.parse_args()



async def start_service(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "serve", "--engine", str(args.engine), "--ingest", "tcp://127.0.0.1:*",
        "--events", "tcp://127.0.0.1:*", "--http-port", "0", "--whip-ice-addresses", "127.0.0.1",
        "--log-format", "json", *args.serve_arg, env=env, stderr=asyncio.subprocess.PIPE)
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


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Tracker:
    """Send times of every frame, and the latency of every score event matched to them."""

    def __init__(self, codec: str) -> None:
        self.frame_ends: dict[str, list[int]] = {}
        self.frame_times: dict[str, list[float]] = {}
        self.latencies: list[float] = []
        self.service_latencies: list[float] = []
        self.unmatched = 0
        self.ends: dict[str, dict] = {}
        self.shift = OPUS_LOOKAHEAD_S if codec == "opus" else 0.0

    def on_frame(self, stream_id: str):
        ends = self.frame_ends.setdefault(stream_id, [])
        times = self.frame_times.setdefault(stream_id, [])

        def record(end_sample: int, sent: float) -> None:
            ends.append(end_sample)
            times.append(sent)
        return record

    def on_score(self, event, received: float) -> None:
        ends = self.frame_ends.get(event.stream_id, [])
        last_sample = round((event.end - self.shift) * SAMPLE_RATE) - 1
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
    proc, parts = await start_service(args)
    drain = asyncio.create_task(proc.stderr.read())
    events, http = parts["events"], parts["http"]
    clips = load_clips(args.audio)
    audio = [stream_audio(i, int(args.duration * SAMPLE_RATE), clips) for i in range(args.streams)]
    ids = [f"whip-{i:03d}" for i in range(args.streams)]
    tracker = Tracker(args.codec)
    offsets = np.random.default_rng(args.seed).uniform(0, 1.0, args.streams)
    load_before = os.getloadavg()
    cpu_before, own_before = cpu_seconds(proc.pid), own_cpu_seconds()

    async with Subscriber(events, ["score."]) as subscriber:
        await subscriber.wait_connected()

        async def follow() -> None:
            while len(tracker.ends) < args.streams:
                event = await subscriber.recv()
                received = time.monotonic()
                if event.event == "score":
                    tracker.on_score(event, received)
                elif event.event == "end":
                    tracker.ends[event.stream_id] = {"windows": event.windows, "dropped": event.dropped,
                                                     "duration": event.duration, "reason": event.reason}

        async def one_stream(i: int):
            await asyncio.sleep(offsets[i])
            return await publish_array_async(audio[i], SAMPLE_RATE, http, stream_id=ids[i], codec=args.codec,
                                             ice_addresses=["127.0.0.1"], on_frame=tracker.on_frame(ids[i]))

        follower = asyncio.create_task(follow())
        started = time.monotonic()
        results = await asyncio.gather(*(one_stream(i) for i in range(args.streams)), return_exceptions=True)
        sent_s = time.monotonic() - started
        failures = [repr(r) for r in results if isinstance(r, BaseException)]
        try:
            await asyncio.wait_for(follower, 60)
        except TimeoutError:
            failures.append(f"only {len(tracker.ends)} of {args.streams} end events")

    wall_s = time.monotonic() - started
    cpu_used, own_used = cpu_seconds(proc.pid) - cpu_before, own_cpu_seconds() - own_before
    scraped = metrics(http)
    proc.terminate()
    await proc.wait()
    await drain
    windows = sum(e["windows"] for e in tracker.ends.values())
    dropped = sum(e["dropped"] for e in tracker.ends.values())
    received_s = sum(e["duration"] for e in tracker.ends.values())
    batches = scraped.get("streamdet_batch_size_count", 0)
    return {
        "transport": f"WHIP/WebRTC ({args.codec}), loopback", "streams": args.streams, "duration_s": args.duration,
        "audio": [str(p) for p in args.audio] or "synthetic",
        "failures": failures,
        "windows_scored": windows, "windows_dropped_end_events": dropped,
        "windows_dropped_metrics": sum(v for k, v in scraped.items() if k.startswith("streamdet_windows_dropped_total")),
        "media_sent_s": round(args.duration * args.streams, 2), "media_received_s": round(received_s, 2),
        "concealed_s": round(scraped.get("streamdet_whip_concealed_seconds_total", 0.0), 3),
        "end_reasons": sorted({e["reason"] for e in tracker.ends.values()}),
        "whip_rejects_metrics": sum(v for k, v in scraped.items() if k.startswith("streamdet_whip_rejects_total")),
        "latency_end_to_end": percentiles(tracker.latencies),
        "latency_service": percentiles(tracker.service_latencies),
        "unmatched_scores": tracker.unmatched,
        "mean_batch_size": round(scraped.get("streamdet_batch_size_sum", 0) / batches, 2) if batches else None,
        "send_wall_s": round(sent_s, 2), "total_wall_s": round(wall_s, 2),
        "service_cpu_s": round(cpu_used, 1), "service_cpu_share": round(cpu_used / wall_s, 2),
        "publishers_cpu_s": round(own_used, 1), "publishers_cpu_share": round(own_used / wall_s, 2),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "serve_args": args.serve_arg,
    }


def main() -> int:
    args = parse_args()
    summary = asyncio.run(run(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    ok = not summary["failures"] and summary["windows_dropped_end_events"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
