"""CPU per frame of the ZeroMQ ingest's host path: what the event loop spends on one 20-ms frame
between the socket and the stream's windows, with the model and the VAD left out.

    nice -n 19 python benchmarks/ingest_cpu.py [--streams 100] [--frames 500] [--repeats 5] [--paced] [--profile]

A ``ZmqIngest`` feeds a real ``StreamRegistry`` built as the service builds it (the service's
settings and stream policy, the speech gate off: ``alerts.min_speech = 0``, so the VAD is not
fed); complete windows are collected instead of scored. N streams x M frames, pre-encoded with
``encode_frame`` (s16le, 16 kHz mono, 640-byte payloads, seq in order, streams interleaved as real
senders interleave), go through it two ways:

- ``socket``: a sender thread PUSHes them over loopback TCP to the ingest's PULL socket, and the
  receiving (event-loop) thread's CPU time (``time.thread_time``) is divided by the frame count:
  poll, receiving, message properties, parsing, registry, windows, metrics.
- ``paced`` (with ``--paced``): as ``socket``, but the sender is a process of its own sending in real
  time (every stream's next frame each 20 ms, as a real sender's tick), so the drains are as small
  and the caches as cold between ticks as in service; it prints the mean frames per drain too.
- ``handle``: ``ZmqIngest.handle`` is called with the pre-built parts (no socket), and the process's
  CPU time (``time.process_time``) divided by the frame count: parsing, registry, windows, metrics.

Each figure is the median of ``--repeats`` runs, each on a fresh ingest and registry. ``--profile``
runs cProfile (CPU time) over one extra socket run and prints the top 15 functions by own time.

Measured 2026-12-02 on the 2-core AMD EPYC machine (Python 3.11.7, pyzmq over loopback TCP),
defaults (100 streams x 500 frames, 5 repeats), niced, on a shared machine (``uptime`` 1-minute load
2.6 to 5.2: a soak benchmark and other jobs), main's code (``9c98c25``) against the host-path work
of issue 16. Medians (us of CPU per frame); the first two rows are two alternating pairs of runs at
11:59-12:01 UTC, the last three one pair with ``--paced`` at 12:12-12:16 UTC:

| figure | before | after | ratio |
| --- | ---: | ---: | ---: |
| ``socket`` (event-loop thread) | 50.1, 49.2 | 33.1, 32.7 | 1.5x |
| ``handle`` (process) | 30.4, 27.6 | 18.6, 18.8 | 1.6x |
| ``socket`` | 47.4 | 31.7 | 1.5x |
| ``paced`` (real time, 5,000 frames/s, ~60 frames per drain) | 59.6 | 42.5 | 1.4x |
| ``handle`` | 26.1 | 21.0 | 1.2x |

With every frame already queued before the drain (``ingest.receive_hwm`` raised, a one-off script):
48.6 -> 27.1 (1.8x). Single runs vary by +-15 % on this shared machine: compare medians of
alternating runs (``handle`` after: 17.0 to 23.1 in one set). What is left per frame (after):
parsing ~7 (JSON ~3, s16 decode ~3), registry and stream ~4, receiving ~5 (three ``recv`` and
``Frame.bytes``); the rest of ``socket`` and ``paced`` over ``handle`` is the receiving thread's
cache misses (ZeroMQ's I/O thread writes the messages; between real-time ticks the other processes
evict everything: at 10 paced streams, 10 frames per drain, a frame cost ~100 us).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing
import pstats
import statistics
import threading
import time
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from streamdet.scoring.constant import ConstantScorer
from streamdet.service.batcher import WindowJob
from streamdet.service.frames import encode_frame
from streamdet.service.ingest import IngestContext, RejectReporter
from streamdet.service.ingest.zmq_pull import ZmqIngest
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.registry import StreamRegistry
from streamdet.service.server import Service
from streamdet.service.settings import Settings, load_settings

LOOPBACK = "tcp://127.0.0.1:*"
FRAME_SAMPLES = 320
"""20 ms at 16 kHz."""


def make_settings() -> Settings:
    return load_settings(None, {"ingest": {"endpoint": LOOPBACK}, "alerts": {"endpoint": LOOPBACK, "min_speech": 0.0},
                                "http": {"enabled": False}})


def make_frames(streams: int, frames: int, prefix: str) -> list[list[bytes]]:
    """Every stream's frames, interleaved (seq 0 of every stream, then seq 1...), deterministic noise."""
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(frames * FRAME_SAMPLES)).astype(np.float32)
    return [encode_frame(f"{prefix}-{s}", seq, audio[seq * FRAME_SAMPLES:(seq + 1) * FRAME_SAMPLES], 16_000)
            for seq in range(frames) for s in range(streams)]


class Harness:
    """A fresh ingest and registry, wired as ``Service.start`` wires them (no batcher, no publisher)."""

    def __init__(self, settings: Settings, zmq_context: zmq.asyncio.Context) -> None:
        self.windows: list[WindowJob] = []
        self.metrics = ServiceMetrics()
        policy = Service(settings, ConstantScorer()).policy  # the service's own policy resolution
        limits = settings.limits
        self.registry = StreamRegistry(
            policy, self.windows.append, None, self.metrics,  # type: ignore[arg-type]  # nothing is scored: no events
            model_id="constant@0", max_streams=limits.max_streams, idle_timeout_s=limits.idle_timeout_s,
            max_streams_per_sender=limits.max_streams_per_sender, max_seq_gap=limits.max_seq_gap,
            audio_timeout_s=limits.audio_timeout_s)
        self.ingest = ZmqIngest(settings.ingest, limits.max_frame_bytes, limits.max_inflight_bytes)
        self.ctx = IngestContext(self.registry, RejectReporter(self.metrics), self.metrics, zmq_context)

    def accepted(self) -> float:
        return self.metrics.registry.get_sample_value("streamdet_ingest_frames_total", {"adapter": "zmq"}) or 0.0

    def received_last(self, last: list[bytes]) -> bool:
        """Whether the last message sent was pushed: one connection keeps the order, so all were.
        Asked of the stream itself: reading the metrics collects the registry (0.3 ms a time, which
        100 checks a second would add to the measured thread's CPU)."""
        session = self.registry.get(last[0].decode())
        return session is not None and session.last_seq == json.loads(last[1])["seq"]

    def rejected(self) -> float:
        return sum(s.value for m in self.metrics.rejects.collect() for s in m.samples if s.name.endswith("_total"))


def _send(endpoint: str, messages: list[list[bytes]]) -> None:
    """Send every message at once (the ``socket`` figure's sender thread)."""
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.sndhwm = 0  # queue everything: the receiver sets the pace
    sock.linger = -1  # deliver everything, however slow the receiver (a profiled one is)
    sock.connect(endpoint)
    for parts in messages:
        sock.send_multipart(parts, copy=False)
    sock.close()
    context.term()


def _send_paced(endpoint: str, streams: int, frames: int, prefix: str, ready: Any, go: Any) -> None:
    """The ``paced`` sender, a process of its own. Spawned, not forked: a forked child shares the
    receiver's pages, and every page the receiver then writes is copied, on the receiver's CPU time.
    It builds the same frames, connects, sets ``ready``, and from ``go`` sends every stream's next
    frame each 20 ms, in real time."""
    messages = make_frames(streams, frames, prefix)
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.sndhwm = 0
    sock.linger = -1
    sock.connect(endpoint)
    ready.set()
    go.wait()
    start = time.monotonic()
    for tick in range(frames):
        for parts in messages[tick * streams:(tick + 1) * streams]:
            sock.send_multipart(parts, copy=False)
        time.sleep(max(0.0, start + (tick + 1) * FRAME_SAMPLES / 16_000 - time.monotonic()))
    sock.close()
    context.term()


async def socket_run(settings: Settings, messages: list[list[bytes]], profile: cProfile.Profile | None = None,
                     paced: tuple[int, int, str] | None = None) -> dict[str, Any]:
    """One run over loopback: the event-loop thread's CPU seconds per frame. ``paced``: (streams,
    frames, prefix) of ``messages``, sent in real time by ``_send_paced`` (else all at once, from a thread)."""
    context = zmq.asyncio.Context()
    harness = Harness(settings, context)
    await harness.ingest.start(harness.ctx)
    drains = [0]
    drain = getattr(harness.ingest, "drain", None)  # (main's code before issue 16 has none: not counted)
    if drain is not None:
        def counted(sock: zmq.Socket) -> int:
            drains[0] += 1
            return drain(sock)

        harness.ingest.drain = counted  # type: ignore[method-assign]  # the receive loop calls self.drain
    go = None
    sender: threading.Thread | multiprocessing.process.BaseProcess
    if paced is None:
        sender = threading.Thread(target=_send, args=(harness.ingest.endpoint, messages))
    else:
        spawn = multiprocessing.get_context("spawn")
        ready, go = spawn.Event(), spawn.Event()
        sender = spawn.Process(target=_send_paced, args=(harness.ingest.endpoint, *paced, ready, go))
        sender.start()
        await asyncio.to_thread(ready.wait)  # its start-up (imports, frames) is not the receiver's cost
    cpu, wall = time.thread_time(), time.monotonic()
    if profile is not None:
        profile.enable()
    if go is None:
        sender.start()
    else:
        go.set()
    while not harness.received_last(messages[-1]):
        await asyncio.sleep(0.1)  # rarely: each check wakes the measured thread
    if profile is not None:
        profile.disable()
    cpu, wall = time.thread_time() - cpu, time.monotonic() - wall
    sender.join()
    await harness.ingest.stop()
    context.term()
    return {"cpu_us_per_frame": 1e6 * cpu / len(messages), "wall_s": wall, "frames_per_drain": len(messages) / drains[0] if drains[0] else None,
            "accepted": harness.accepted(), "rejected": harness.rejected(), "windows": len(harness.windows)}


def handle_run(settings: Settings, messages: list[list[bytes]]) -> dict[str, Any]:
    """One run without a socket: ``handle`` on pre-built parts, process CPU seconds per frame."""
    context = zmq.asyncio.Context()
    harness = Harness(settings, context)
    harness.ingest._ctx = harness.ctx  # what ``start`` sets, without binding a socket
    harness.ingest._accepted = harness.metrics.frames.labels("zmq")
    handle, sender = harness.ingest.handle, "addr:127.0.0.1"
    cpu = time.process_time()
    for parts in messages:
        handle(parts, 0.0, sender)
    cpu = time.process_time() - cpu
    context.term()
    return {"cpu_us_per_frame": 1e6 * cpu / len(messages), "accepted": harness.accepted(),
            "rejected": harness.rejected(), "windows": len(harness.windows)}


def main(args: argparse.Namespace) -> None:
    settings = make_settings()
    socket_runs, handle_runs, paced_runs = [], [], []
    for repeat in range(args.repeats):
        # Fresh stream ids per run: the frames are the same bytes but never "late frames of an ended stream".
        messages = make_frames(args.streams, args.frames, f"bench{repeat}")
        socket_runs.append(asyncio.run(socket_run(settings, messages)))
        if args.paced:
            spec = (args.streams, args.frames, f"paced{repeat}")
            paced_runs.append(asyncio.run(socket_run(settings, make_frames(*spec), paced=spec)))
        handle_runs.append(handle_run(settings, messages))
    for name, runs in (("socket", socket_runs), ("paced", paced_runs), ("handle", handle_runs)):
        if not runs:  # --repeats 0: the profile alone
            continue
        per_frame = [r["cpu_us_per_frame"] for r in runs]
        print(f"{name}: median {statistics.median(per_frame):.2f} us/frame "
              f"(runs {', '.join(f'{x:.2f}' for x in per_frame)}); last run: accepted {runs[-1]['accepted']:.0f}, "
              f"rejected {runs[-1]['rejected']:.0f}, windows {runs[-1]['windows']}")
        drained = [r["frames_per_drain"] for r in runs if r.get("frames_per_drain")]
        if drained:
            print(f"  frames per drain: {', '.join(f'{x:.1f}' for x in drained)}")
    if socket_runs:
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in socket_runs)
        print(f"socket wall per run: {walls} s")
    if args.profile:
        profile = cProfile.Profile(time.thread_time)
        asyncio.run(socket_run(settings, make_frames(args.streams, args.frames, "profile"), profile))
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
        print(text.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--frames", type=int, default=500, help="frames per stream (50 per second of audio)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paced", action="store_true", help="also send in real time from another process")
    parser.add_argument("--profile", action="store_true", help="cProfile (thread CPU time) over one more socket run")
    main(parser.parse_args())
