"""Soak test: a real ``streamdet serve`` under steady real-time load for a long time, sampled every interval.

    scripts/soak --streams 24 --duration 3600 --out /work/soak-run

N streams of real speech (the demo clips, looped; each stream starts at another clip) are sent over
ZeroMQ at real-time pace for ``duration`` seconds by one pacing loop (``streamdet.bench.pacing``).
Each stream is cut into segments of ``segment`` seconds: at a segment's last frame the stream ends
(``end`` flag) and the next frame starts a new stream id, so the service creates and retires streams
all the time. The segment ends of the N streams are staggered evenly, so the load never dips.

Every ``interval`` seconds one row is sampled (``SERIES_FIELDS``): the service's resident memory,
open file descriptors and threads (from /proc of its pid), its CPU use, the load average of the
machine (it is shared), end-to-end latency p50/p99 of the windows scored in the interval (time the
score event is received − time the frame carrying the window's last sample was sent, both on this
process's monotonic clock), alerts raised and cleared, and, for the segments whose ``end`` event came
in the interval, windows expected (``WindowGeometry`` of the samples sent), scored, dropped (from the
``end`` event) and missing (expected − scored − dropped). Rows go to ``series.csv`` as they are
taken; ``soak.json`` gets the configuration, the machine, the series and ``summarize``'s verdict.

The exit status is 1 when the service crashed (exited before the soak stopped it), a window went
missing, or resident memory or open files grew past the limits after the warm-up; else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from streamdet.audio import SAMPLE_RATE
from streamdet.bench.encoded import HeaderPrefixes, PayloadBlocks, stamp
from streamdet.bench.load import expected_windows, load_clips
from streamdet.bench.machine import load_average, machine_info
from streamdet.bench.pacing import paced
from streamdet.bench.server import ProcessStats, ServerProcess, scrape_metrics
from streamdet.bench.stats import latency_summary
from streamdet.errors import BenchError, ConfigError

SERIES_FIELDS = (
    "t_s", "server_alive", "rss_mb", "fds", "threads", "server_cpu_percent", "load1", "load5",
    "active_segments", "windows_scored", "segments_closed", "windows_expected", "windows_scored_closed",
    "windows_dropped", "windows_missing", "latency_p50_ms", "latency_p99_ms", "latency_max_ms",
    "alerts_raised", "alerts_cleared", "pacing_lag_max_ms", "rejects_total", "dropped_total_metrics",
)
"""One row of the series. ``windows_scored``: score events received in the interval;
``windows_expected/_scored_closed/_dropped/_missing``: over the segments that ended in the interval
(the last row also counts the segments whose ``end`` never came); ``*_total``: the service's counters."""

DEFAULT_RSS_DRIFT_PCT = 5.0
DEFAULT_FD_DRIFT = 16


# --- the verdict (a pure function of the series) -----------------------------------------------------


def summarize(rows: Sequence[dict[str, Any]], *, warmup_s: float = 120.0,
              max_rss_drift_pct: float = DEFAULT_RSS_DRIFT_PCT, max_fd_drift: int = DEFAULT_FD_DRIFT,
              server_exit: int | None = 0) -> dict[str, Any]:
    """What a soak's series says: memory and fds at the baseline (the first row at or after
    ``warmup_s``: allocator pools and model caches fill during the first minutes) and at the end, their
    drift, window totals, crashes, and the failures that make the exit status 1."""
    if not rows:
        return {"ok": False, "failures": ["no samples"], "rows": 0}
    baseline = next((r for r in rows if r["t_s"] >= warmup_s), rows[0])
    alive = [r for r in rows if r["server_alive"]]
    rss = [r["rss_mb"] for r in alive if r["rss_mb"] is not None]
    fds = [r["fds"] for r in alive if r["fds"] is not None]
    last = alive[-1] if alive else rows[-1]
    rss_drift = (100.0 * (last["rss_mb"] - baseline["rss_mb"]) / baseline["rss_mb"]
                 if alive and baseline["rss_mb"] and last["rss_mb"] is not None else None)
    fd_drift = (last["fds"] - baseline["fds"]) if alive and baseline["fds"] is not None and last["fds"] is not None else None
    crashes = sum(1 for r in rows if not r["server_alive"])
    totals = {k: int(sum(r[k] for r in rows)) for k in
              ("windows_scored", "segments_closed", "windows_expected", "windows_scored_closed", "windows_dropped",
               "windows_missing", "alerts_raised", "alerts_cleared")}
    p99 = [r["latency_p99_ms"] for r in rows if r["latency_p99_ms"] is not None]
    p50 = [r["latency_p50_ms"] for r in rows if r["latency_p50_ms"] is not None]
    failures = []
    if crashes:
        failures.append(f"the service crashed ({crashes} sample(s) without it)")
    if server_exit not in (0, None):
        failures.append(f"the service exited with status {server_exit} on SIGTERM")
    if totals["windows_missing"]:
        failures.append(f"{totals['windows_missing']} window(s) missing")
    if rss_drift is not None and rss_drift > max_rss_drift_pct:
        failures.append(f"resident memory grew {rss_drift:.1f} % after the warm-up (limit {max_rss_drift_pct:g} %)")
    if fd_drift is not None and fd_drift > max_fd_drift:
        failures.append(f"open files grew by {fd_drift} after the warm-up (limit {max_fd_drift})")
    return {
        "ok": not failures,
        "failures": failures,
        "rows": len(rows),
        "duration_s": rows[-1]["t_s"],
        "rss_mb": {"first": rss[0] if rss else None, "baseline": baseline["rss_mb"], "baseline_t_s": baseline["t_s"],
                   "last": last["rss_mb"], "max": max(rss) if rss else None, "min": min(rss) if rss else None,
                   "drift_pct": round(rss_drift, 2) if rss_drift is not None else None},
        "fds": {"first": fds[0] if fds else None, "baseline": baseline["fds"], "last": last["fds"],
                "max": max(fds) if fds else None, "drift": fd_drift},
        "threads": {"first": alive[0]["threads"] if alive else None, "last": last["threads"],
                    "max": max((r["threads"] or 0) for r in alive) if alive else None},
        "crashes": crashes,
        "server_exit": server_exit,
        **totals,
        "latency_ms": {"p50_median": float(np.median(p50)) if p50 else None,
                       "p99_max": max(p99) if p99 else None},
        "load1": {"min": min(r["load1"] for r in rows), "max": max(r["load1"] for r in rows),
                  "mean": round(float(np.mean([r["load1"] for r in rows])), 2)},
    }


def read_series(path: Path) -> list[dict[str, Any]]:
    """A ``series.csv`` back as rows of numbers (empty cells: None)."""
    def value(text: str) -> Any:
        if text in ("True", "False"):
            return text == "True"
        if text == "":
            return None
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number

    with path.open(newline="") as handle:
        return [{k: value(v) for k, v in r.items()} for r in csv.DictReader(handle)]


def block_table(rows: Sequence[dict[str, Any]], every_s: float = 300.0) -> str:
    """The series in blocks of ``every_s`` seconds as a Markdown table: memory, files and threads at the
    block's end, the mean load, window counts summed, the median p50 and the worst p99 of its rows."""
    lines = ["| t min | RSS MB | fds | threads | load1 | windows expected | scored | dropped | missing "
             "| p50 ms | p99 ms | alerts |", "|" + " --- |" * 12]
    blocks: dict[int, list[dict[str, Any]]] = {}
    for r in rows:  # samples come a little late (a few seconds an hour): 5 % of a block of tolerance
        blocks.setdefault(max(0, math.ceil(r["t_s"] / every_s - 0.05) - 1), []).append(r)
    for rows_in in blocks.values():
        end, alive = rows_in[-1], [r for r in rows_in if r["server_alive"]] or rows_in
        p50 = [r["latency_p50_ms"] for r in rows_in if r["latency_p50_ms"] is not None]
        p99 = [r["latency_p99_ms"] for r in rows_in if r["latency_p99_ms"] is not None]
        lines.append("| " + " | ".join(str(x) for x in (
            f"{end['t_s'] / 60:.1f}", alive[-1]["rss_mb"], alive[-1]["fds"], alive[-1]["threads"],
            f"{np.mean([r['load1'] for r in rows_in]):.1f}",
            *(sum(r[k] for r in rows_in) for k in ("windows_expected", "windows_scored_closed", "windows_dropped",
                                                   "windows_missing")),
            f"{np.median(p50):.0f}" if p50 else "-", f"{max(p99):.0f}" if p99 else "-",
            sum(r["alerts_raised"] for r in rows_in))) + " |")
    return "\n".join(lines)


# --- what is sent ------------------------------------------------------------------------------------


class FrameTimes(Sequence[float]):
    """Due times of a stream's frames, computed on demand (an hour of 20-ms frames is 180,000 of them)."""

    def __init__(self, start: float, frame_s: float, count: int) -> None:
        self.start, self.frame_s, self.count = start, frame_s, count

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, k: int) -> float: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[float]: ...
    def __getitem__(self, k: int | slice) -> float | Sequence[float]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self.count))]
        if k < 0:
            k += self.count
        if not 0 <= k < self.count:
            raise IndexError(k)
        return self.start + (k + 1) * self.frame_s  # a frame leaves when its last sample is captured


@dataclass
class Segment:
    """One stream id: a segment of a soak stream, from its first frame until its ``end`` event."""

    stream_id: str
    sent: list[float] = field(default_factory=list)
    """Send time of each frame (monotonic), for the latency of each window."""
    samples: int = 0
    scores: int = 0


@dataclass
class Interval:
    """What happened since the last sample."""

    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    scores: int = 0
    closed: int = 0
    expected: int = 0
    scored_closed: int = 0
    dropped: int = 0
    missing: int = 0
    alerts: Counter[str] = field(default_factory=Counter)


class SoakLoad:
    """N endless streams cut into staggered segments; tracks every segment until its ``end`` event."""

    def __init__(self, streams: int, segment_s: float, chunk: int, hop: int, clips: Sequence[np.ndarray],
                 prefix: str) -> None:
        self.chunk, self.hop, self.prefix = chunk, hop, prefix
        self.frames_per_segment = max(1, round(segment_s * SAMPLE_RATE / chunk))
        # Each stream loops the clips from another one; its segment ends are shifted by 1/N of a segment.
        self.audio = [np.concatenate([clips[(i + j) % len(clips)] for j in range(len(clips))]).astype(np.float32)
                      for i in range(streams)]
        self.phase = [i * self.frames_per_segment // streams for i in range(streams)]
        self.open: dict[str, Segment] = {}
        self.interval = Interval()
        # What is sent, encoded ahead (streamdet.bench.encoded): a block of payloads per stream at a
        # time (the audio loops), headers by (seq, end), the same for every segment.
        self.headers = HeaderPrefixes(SAMPLE_RATE)
        self.payloads = [PayloadBlocks(audio, chunk, wrap=True) for audio in self.audio]

    def _place(self, i: int, k: int, last: bool) -> tuple[Segment, int, bool]:
        """Stream ``i``'s frame ``k``: its segment, its seq within it, whether it ends it."""
        position = k + self.phase[i]
        number = position // self.frames_per_segment
        seq = position % self.frames_per_segment if number else k
        stream_id = f"{self.prefix}-{i:03d}-{number:05d}"
        segment = self.open.get(stream_id)
        if segment is None:
            segment = self.open[stream_id] = Segment(stream_id)
        return segment, seq, last or (position + 1) % self.frames_per_segment == 0

    def frame(self, i: int, k: int, last: bool) -> tuple[Segment, int, np.ndarray, bool]:
        """Stream ``i``'s frame ``k``: its segment, its seq within it, its samples, whether it ends it."""
        segment, seq, end = self._place(i, k, last)
        samples = self.audio[i].take(np.arange(k * self.chunk, (k + 1) * self.chunk), mode="wrap")
        return segment, seq, samples, end

    def message(self, i: int, k: int, last: bool, ts: float) -> tuple[Segment, list[bytes]]:
        """``frame(i, k, last)`` as the ZeroMQ message ``encode_frame`` makes of it, sent at ``ts``
        (s16le), from what is encoded ahead: no numpy and no JSON per frame."""
        segment, seq, end = self._place(i, k, last)
        header = stamp(self.headers(seq, end), ts)
        return segment, [segment.stream_id.encode("utf-8"), header, self.payloads[i][k]]

    def on_event(self, event: Any, received: float) -> None:
        segment = self.open.get(event.stream_id)
        if event.event in ("raised", "cleared"):
            self.interval.alerts[event.event] += 1
        if segment is None:
            return
        if event.event == "score":
            segment.scores += 1
            self.interval.scores += 1
            index = min(max(round(event.end * SAMPLE_RATE) - 1, 0) // self.chunk, len(segment.sent) - 1)
            if index >= 0:
                self.interval.latencies.append(received - segment.sent[index])
        elif event.event == "end":
            self.close(segment, int(event.dropped))

    def close(self, segment: Segment, dropped: int) -> None:
        """Account for a segment: its ``end`` event came (or, at the very end, never will)."""
        del self.open[segment.stream_id]
        expected = expected_windows(segment.samples, self.hop)
        self.interval.closed += 1
        self.interval.expected += expected
        self.interval.scored_closed += segment.scores
        self.interval.dropped += dropped
        self.interval.missing += max(0, expected - segment.scores - dropped)

    def take_interval(self) -> Interval:
        interval, self.interval = self.interval, Interval()
        return interval


# --- the run -----------------------------------------------------------------------------------------


@dataclass
class SoakConfig:
    streams: int
    duration_s: float
    segment_s: float = 60.0
    interval_s: float = 30.0
    hop_s: float = 1.0
    chunk_ms: float = 20.0
    settle_s: float = 30.0
    warmup_s: float = 120.0
    max_rss_drift_pct: float = DEFAULT_RSS_DRIFT_PCT
    max_fd_drift: int = DEFAULT_FD_DRIFT


def _proc_count(pid: int | None, what: str) -> int | None:
    """Open fds (``fd``) or threads (``threads``) of a process, from /proc; None if it is gone."""
    if pid is None:
        return None
    try:
        if what == "fd":
            return len(os.listdir(f"/proc/{pid}/fd"))
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _metric_total(metrics: dict[str, float], name: str) -> int | None:
    if not metrics:
        return None
    return int(sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{")))


class Soak:
    def __init__(self, config: SoakConfig, server: ServerProcess, clips: Sequence[np.ndarray],
                 series_path: Path, say=print) -> None:
        self.config, self.server, self.say = config, server, say
        self.chunk = max(1, round(SAMPLE_RATE * config.chunk_ms / 1000))
        self.load = SoakLoad(config.streams, config.segment_s, self.chunk, round(config.hop_s * SAMPLE_RATE),
                             clips, f"soak-{int(time.time())}")
        self.rows: list[dict[str, Any]] = []
        self.series_path = series_path
        self.crashed = asyncio.Event()

    def _alive(self) -> bool:
        process = self.server.process
        return process is not None and process.returncode is None

    async def sample(self, started: float, cpu_before: list[float | None], final: bool = False) -> dict[str, Any]:
        pid = self.server.pid
        stats = ProcessStats(pid)
        alive = self._alive()
        metrics = await asyncio.to_thread(scrape_metrics, self.server.endpoints.http) if alive else {}
        if final:  # segments whose end never came: every window they lack is missing
            for segment in list(self.load.open.values()):
                self.load.close(segment, 0)
        interval = self.load.take_interval()
        now = time.monotonic()
        cpu = stats.cpu_seconds() if alive else None
        cpu_percent = (100 * (cpu - cpu_before[0]) / (now - cpu_before[1])
                       if cpu is not None and cpu_before[0] is not None else None)
        cpu_before[:] = [cpu, now]
        latency = latency_summary(interval.latencies)
        rss = stats.rss_bytes() if alive else None
        load1, load5, _ = load_average()
        row = {
            "t_s": round(now - started, 1), "server_alive": alive,
            "rss_mb": round(rss / 2**20, 1) if rss else None,
            "fds": _proc_count(pid, "fd") if alive else None, "threads": _proc_count(pid, "threads") if alive else None,
            "server_cpu_percent": round(cpu_percent, 1) if cpu_percent is not None else None,
            "load1": load1, "load5": load5, "active_segments": len(self.load.open),
            "windows_scored": interval.scores, "segments_closed": interval.closed,
            "windows_expected": interval.expected, "windows_scored_closed": interval.scored_closed,
            "windows_dropped": interval.dropped, "windows_missing": interval.missing,
            "latency_p50_ms": latency["p50_ms"], "latency_p99_ms": latency["p99_ms"], "latency_max_ms": latency["max_ms"],
            "alerts_raised": interval.alerts["raised"], "alerts_cleared": interval.alerts["cleared"],
            "pacing_lag_max_ms": round(1000 * max(interval.lags), 1) if interval.lags else None,
            "rejects_total": _metric_total(metrics, "streamdet_ingest_rejects_total"),
            "dropped_total_metrics": _metric_total(metrics, "streamdet_windows_dropped_total"),
        }
        self.rows.append(row)
        with self.series_path.open("a", newline="") as handle:
            csv.DictWriter(handle, SERIES_FIELDS).writerow(row)
        self.say(" ".join(f"{k}={row[k]}" for k in ("t_s", "rss_mb", "fds", "threads", "load1", "windows_scored",
                                                   "windows_missing", "windows_dropped", "latency_p99_ms",
                                                   "alerts_raised")))
        return row

    async def _send(self, sender: Any, started: float) -> None:
        frames = max(1, round(self.config.duration_s * SAMPLE_RATE / self.chunk))
        rng = np.random.default_rng(0)
        frame_s = self.chunk / SAMPLE_RATE
        schedule = {i: FrameTimes(started + float(rng.uniform(0, self.config.hop_s)), frame_s, frames)
                    for i in range(self.config.streams)}
        async for i, k, due in paced(schedule):
            segment, message = self.load.message(i, k, k == frames - 1, time.time())
            await sender.send_encoded(message)
            sent = time.monotonic()
            segment.sent.append(sent)
            segment.samples += self.chunk  # the audio loops: every frame is whole
            self.load.interval.lags.append(max(0.0, sent - due))

    async def _follow(self, subscriber: Any) -> None:
        while True:
            event = await subscriber.recv()
            self.load.on_event(event, time.monotonic())

    async def _watch(self, started: float) -> None:
        cpu_before: list[float | None] = [None, time.monotonic()]
        cpu_before[0] = ProcessStats(self.server.pid).cpu_seconds()
        while True:
            await asyncio.sleep(self.config.interval_s)
            row = await self.sample(started, cpu_before)
            if not row["server_alive"]:
                self.crashed.set()
                return

    async def run(self) -> float:
        """Send for the duration (or until the service dies), wait for the last ``end`` events; returns
        the start time (monotonic)."""
        from streamdet.client import Sender, Subscriber

        endpoints = self.server.endpoints
        assert endpoints is not None
        started = time.monotonic() + 0.05
        async with Subscriber(endpoints.events, ["score.", "alert."]) as subscriber:
            await subscriber.wait_connected(timeout=15)
            follower = asyncio.create_task(self._follow(subscriber))
            watcher = asyncio.create_task(self._watch(started))
            async with Sender(endpoints.ingest, send_hwm=100_000) as sender:
                sending = asyncio.create_task(self._send(sender, started))
                crash = asyncio.create_task(self.crashed.wait())
                await asyncio.wait({sending, crash}, return_when=asyncio.FIRST_COMPLETED)
                for task in (sending, crash):
                    task.cancel()
            deadline = time.monotonic() + self.config.settle_s
            while self.load.open and time.monotonic() < deadline and self._alive():
                await asyncio.sleep(0.2)
            watcher.cancel()
            follower.cancel()
        cpu_before: list[float | None] = [None, time.monotonic()]
        await self.sample(started, cpu_before, final=True)
        return started


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return (out.stdout.strip() + ("-dirty" if dirty else "")) or None
    except OSError:
        return None


def default_audio() -> list[Path]:
    from streamdet.demo.samples import SAMPLES

    return [sample.path for sample in SAMPLES]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, help="concurrent real-time streams")
    parser.add_argument("--duration", type=float, help="seconds of load")
    parser.add_argument("--segment", type=float, default=60.0, help="seconds per stream id before it restarts")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--hop", type=float, default=1.0, help="window hop in seconds (passed to the service)")
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    parser.add_argument("--settle-s", type=float, default=30.0, help="wait for the last end events")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the memory baseline")
    parser.add_argument("--max-rss-drift-pct", type=float, default=DEFAULT_RSS_DRIFT_PCT)
    parser.add_argument("--max-fd-drift", type=int, default=DEFAULT_FD_DRIFT)
    parser.add_argument("--engine", type=Path, default=None, help="CM directory (default: the shipped CM)")
    parser.add_argument("--audio", type=Path, nargs="*", default=None, help="clips to loop (default: the demo clips)")
    parser.add_argument("--threads", type=int, default=None, help="the service's torch threads (--threads)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for streamdet serve")
    parser.add_argument("--out", type=Path, help="directory for series.csv and soak.json")
    parser.add_argument("--table", type=Path, metavar="SERIES_CSV",
                        help="print an earlier run's series in blocks (Markdown) instead of running")
    parser.add_argument("--every", type=float, default=300.0, help="seconds per block of --table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from streamdet.bench.runs import shipped_cm

    args = parse_args(argv)
    if args.table is not None:
        if not args.table.is_file():
            raise ConfigError(f"--table: no such file {args.table}")
        print(block_table(read_series(args.table), args.every))
        return 0
    if args.streams is None or args.duration is None or args.out is None:
        raise ConfigError("a soak needs --streams, --duration and --out")
    if args.streams < 1 or args.duration <= 0 or args.interval <= 0 or args.segment <= 0:
        raise ConfigError("--streams, --duration, --interval and --segment must be positive")
    config = SoakConfig(args.streams, args.duration, args.segment, args.interval, args.hop, args.chunk_ms,
                        args.settle_s, args.warmup, args.max_rss_drift_pct, args.max_fd_drift)
    engine = args.engine or shipped_cm()
    clips = load_clips(args.audio or default_audio())
    serve_args = [f"--hop-samples={round(args.hop * SAMPLE_RATE)}", *args.serve_arg]
    if args.threads is not None:
        serve_args.append(f"--threads={args.threads}")
    args.out.mkdir(parents=True, exist_ok=True)
    series_path = args.out / "series.csv"
    with series_path.open("w", newline="") as handle:
        csv.DictWriter(handle, SERIES_FIELDS).writeheader()
    report: dict[str, Any] = {"kind": "soak", "machine": machine_info(), "commit": _git_commit(),
                              "config": {**config.__dict__, "engine": str(engine), "serve_args": serve_args,
                                         "audio": [str(p) for p in (args.audio or default_audio())]},
                              "loadavg_before": load_average()}

    async def go() -> tuple[Soak, int | None]:
        server = ServerProcess(engine, serve_args)
        await server.start()
        print(f"service pid {server.pid}: {server.endpoints}", flush=True)
        soak = Soak(config, server, clips, series_path, say=lambda line: print(line, flush=True))
        try:
            await soak.run()
        finally:
            status = await server.stop()
        report["server_log_warnings"] = server.warnings
        report["server_log_tail"] = list(server.log_tail)[-10:]
        return soak, status

    try:
        soak, status = asyncio.run(go())
    except BenchError as exc:
        raise ConfigError(str(exc)) from exc
    summary = summarize(soak.rows, warmup_s=config.warmup_s, max_rss_drift_pct=config.max_rss_drift_pct,
                        max_fd_drift=config.max_fd_drift, server_exit=status)
    report.update(loadavg_after=load_average(), series=soak.rows, summary=summary)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print("soak: " + ("OK" if summary["ok"] else "FAILED: " + "; ".join(summary["failures"])))
    return 0 if summary["ok"] else 1
