"""Service load driver: N concurrent real-time streams through ``streamdet serve`` over ZeroMQ or WHIP.

One step = N streams of ``duration`` seconds of 16 kHz audio, each sent in ``chunk_ms`` frames at
real-time pace (a frame leaves when its last sample would have been captured), their starts spread
over the first hop as independent calls would be. Every ``score`` event is matched to the frame that
carried its window's last sample:

    end-to-end latency = time the score event is received − time that frame was sent

both on this process's monotonic clock. WHIP streams (``whip_streams``: WebRTC through
``streamdet.client.whip_sender``, 20 ms frames handed to the encoder in real time) are matched the
same way, the window's end moved back by the codec's look-ahead (Opus: 6.5 ms), so their latency
covers encoding, RTP over loopback, the receiver's jitter buffer and decoding too.

A step also records windows/s, drops (the service's ``/metrics`` counters and the ``end`` events),
windows that never came (expected from the stream lengths), the server's CPU use and resident memory
(from /proc of its pid), this client's own CPU use (it shares the machine), the load average before
and after, and how late the client sent frames (a client that cannot keep real-time pace offers less
load than it claims; such a step fails).

The service is started or reached with ``streamdet.bench.server``. The driver shares the machine with
the server, so every CPU millisecond it spends is taken from what it measures: the ZeroMQ streams'
frames are encoded before the step's clock starts (``streamdet.bench.encoded``: the very bytes
``encode_frame`` gives, the send time written in at send time), one pacing loop hands them to one
``Sender`` (``streamdet.client``) without waiting when ZeroMQ's queue has room, and the score events
are read from a plain SUB socket and parsed only as far as needed (``streamdet.bench.feed``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES, load_audio
from streamdet.bench import ws_load
from streamdet.bench.encoded import FRAME_OVERHEAD_BYTES, EncodedStream, HeaderPrefixes
from streamdet.bench.feed import ScoreFeed
from streamdet.bench.pacing import DEFAULT_TICK_S, paced
from streamdet.bench.server import Endpoints, ProcessStats, metrics_delta, scrape_metrics
from streamdet.bench.stats import latency_summary
from streamdet.errors import BenchError, ConfigError
from streamdet.service.frames import FORMATS
from streamdet.stream.policy import DEFAULT_MIN_TAIL, WindowGeometry

log = logging.getLogger(__name__)

WHIP_FRAME_SAMPLES = SAMPLE_RATE * 20 // 1000
"""The WHIP sender's frame at 16 kHz (``streamdet.client.whip_sender.FRAME_MS`` = 20 ms)."""
WHIP_CODECS = ("opus", "PCMU", "PCMA")
OPUS_LOOKAHEAD_SAMPLES = round(0.0065 * SAMPLE_RATE)
"""The Opus encoder's look-ahead (6.5 ms): decoded audio lags the input by that much, so a window's
last decoded sample was the client's input sample this much earlier."""

# --- what is sent -----------------------------------------------------------------------------------


def expected_windows(total: int, hop: int, window: int = WINDOW_SAMPLES, min_tail: int = DEFAULT_MIN_TAIL) -> int:
    """Windows the service emits for a stream of ``total`` samples (the policy's window geometry: a
    stream shorter than ``min_tail`` samples, the service's ``window.min_tail_samples``, gives none)."""
    return WindowGeometry(window, hop, min_tail=min_tail).count(total)


def stream_audio(index: int, samples: int, clips: Sequence[np.ndarray] = ()) -> np.ndarray:
    """``samples`` of mono 16 kHz audio for stream ``index``: the clips looped (each stream starting at
    another clip), else a tone plus noise that differs per stream."""
    if clips:
        pieces, total, i = [], 0, index
        while total < samples:
            pieces.append(clips[i % len(clips)])
            total += len(pieces[-1])
            i += 1
        return np.concatenate(pieces)[:samples].astype(np.float32)
    rng = np.random.default_rng(index)
    t = np.arange(samples) / SAMPLE_RATE
    signal = 0.1 * np.sin(2 * np.pi * (120 + 40 * index) * t) + 0.02 * rng.standard_normal(samples)
    return signal.astype(np.float32)


def load_clips(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """Audio files decoded to mono 16 kHz (the rate the streams are sent at)."""
    clips = [load_audio(p) for p in paths]
    if any(len(c) == 0 for c in clips):
        raise ConfigError("an --audio file holds no samples")
    return clips


@dataclass
class StreamPlan:
    stream_id: str
    audio: np.ndarray
    start_offset_s: float
    transport: str = "zmq"
    """``zmq`` (protocol v1 frames, 16 kHz s16le), ``whip`` (WebRTC, Opus at 48 kHz, via aiortc) or
    ``media_ws`` (a Twilio Media Streams call, μ-law at 8 kHz; ``streamdet.bench.ws_load``)."""


@dataclass
class StepConfig:
    """One load step: how many streams, for how long, how they are cut and paced."""

    streams: int
    duration_s: float
    hop_s: float = 1.0
    chunk_ms: float = 20.0
    settle_s: float = 30.0
    """After the last frame: how long to wait for the remaining scores and ``end`` events."""
    seed: int = 0
    id_prefix: str = "bench"
    fmt: str = "s16le"
    whip_streams: int = 0
    """How many of the streams (the first ones) go over WHIP instead of ZeroMQ."""
    whip_ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    whip_codec: str = "opus"
    """The one codec the WHIP publishers offer (``WHIP_CODECS``)."""
    ws_streams: int = 0
    """How many of the streams (after the WHIP ones) go over the media-stream WebSocket ingest."""
    pacing_tick_ms: float = 1000 * DEFAULT_TICK_S
    """The ZeroMQ pacing loop wakes at most once per tick (``streamdet.bench.pacing``); 0: at every due time."""

    @property
    def hop_samples(self) -> int:
        return round(self.hop_s * SAMPLE_RATE)

    @property
    def chunk_samples(self) -> int:
        return max(1, round(SAMPLE_RATE * self.chunk_ms / 1000.0))


def plan_streams(config: StepConfig, clips: Sequence[np.ndarray] = ()) -> list[StreamPlan]:
    """The step's streams, their starts spread uniformly over the first hop."""
    samples = round(config.duration_s * SAMPLE_RATE)
    rng = np.random.default_rng(config.seed)
    offsets = rng.uniform(0.0, config.hop_s, config.streams)
    def transport(i: int) -> str:
        if i < config.whip_streams:
            return "whip"
        return "media_ws" if i < config.whip_streams + config.ws_streams else "zmq"

    # A WebSocket call's stream is its inbound track: ``<call>/inbound``.
    return [StreamPlan(f"{config.id_prefix}-{i:03d}" + ("/inbound" if transport(i) == "media_ws" else ""),
                       stream_audio(i, samples, clips), float(offsets[i]), transport(i))
            for i in range(config.streams)]


# --- what comes back --------------------------------------------------------------------------------


@dataclass
class StreamRecord:
    """Send times of one stream's frames, and what came back for it."""

    plan: StreamPlan
    chunk: int
    lag_samples: int = 0
    """How far the service's sample count runs behind the client's (a codec's look-ahead)."""
    sent: list[float] = field(default_factory=list)
    scores: int = 0
    end: dict[str, Any] | None = None

    def frame_of(self, end_sample: int) -> int:
        """Index of the frame holding sample ``end_sample - 1`` (the window's last)."""
        last_frame = -(-len(self.plan.audio) // self.chunk) - 1
        return min(max(end_sample - 1, 0) // self.chunk, last_frame)


class Tracker:
    """Matches score events to frame send times; collects latencies and per-stream counts."""

    def __init__(self, plans: Sequence[StreamPlan], chunk: int, whip_codec: str = "opus") -> None:
        whip_lag = OPUS_LOOKAHEAD_SAMPLES if whip_codec == "opus" else 0
        frames = {"whip": WHIP_FRAME_SAMPLES, "media_ws": ws_load.FRAME_SAMPLES_16K}
        self.records = {p.stream_id: StreamRecord(p, frames.get(p.transport, chunk),
                                                  whip_lag if p.transport == "whip" else 0) for p in plans}
        self.latencies: list[float] = []
        self.by_transport: dict[str, list[float]] = {}
        self.service_latencies: list[float] = []
        self.unmatched = 0
        self.foreign = 0
        self.first_score_at: float | None = None
        self.last_score_at: float | None = None

    def on_event(self, event: Any, received: float) -> None:
        """An event object (``streamdet.service.events``): its fields as ``on_message`` reads them."""
        self.on_message(vars(event), received)

    def on_message(self, event: Mapping[str, Any], received: float) -> None:
        """An event as its parsed JSON (``ScoreFeed``): only the keys needed are read."""
        record = self.records.get(event["stream_id"])
        if record is None:
            self.foreign += 1  # another client's stream on a shared service
            return
        kind = event["event"]
        if kind == "end":
            record.end = {"windows": event["windows"], "dropped": event["dropped"], "reason": event["reason"],
                          "duration": event["duration"]}
            return
        if kind != "score":
            return
        record.scores += 1
        if self.first_score_at is None:
            self.first_score_at = received
        self.last_score_at = received
        index = record.frame_of(round(event["end"] * SAMPLE_RATE) - record.lag_samples)
        if index >= len(record.sent):
            self.unmatched += 1  # a score before its last sample was sent: impossible unless ids clash
            return
        latency = received - record.sent[index]
        self.latencies.append(latency)
        self.by_transport.setdefault(record.plan.transport, []).append(latency)
        self.service_latencies.append(event["latency_ms"] / 1000.0)

    @property
    def ended(self) -> int:
        return sum(1 for r in self.records.values() if r.end is not None)


# --- one step ---------------------------------------------------------------------------------------


AHEAD_BYTES = 256 << 20
"""At most this much of a step's frames is held encoded ahead: a sweep's largest default step (128
streams of 30 s in s16le 20-ms frames, ~130 MB) is encoded whole before its clock starts; a longer
one in blocks that fit (the next encoded when a stream reaches it)."""


def encode_streams(plans: Sequence[StreamPlan], config: StepConfig,
                   block_frames: int | None = None) -> dict[int, EncodedStream]:
    """The ZeroMQ streams' frames, encoded ahead (``streamdet.bench.encoded``), by plan index; the
    first ``block_frames`` of each here, before the step's clock starts (None: as many as
    ``AHEAD_BYTES`` holds, at least one second's)."""
    chosen = [i for i, plan in enumerate(plans) if plan.transport == "zmq"]
    chunk = config.chunk_samples
    if block_frames is None:
        frame_bytes = chunk * FORMATS[config.fmt].itemsize + FRAME_OVERHEAD_BYTES
        longest = max((-(-len(plans[i].audio) // chunk) for i in chosen), default=1)
        block_frames = min(longest, max(round(SAMPLE_RATE / chunk), AHEAD_BYTES // (frame_bytes * max(1, len(chosen)))))
    headers = HeaderPrefixes(SAMPLE_RATE, 1, config.fmt)
    return {i: EncodedStream(plans[i].stream_id, plans[i].audio, chunk, headers, block_frames) for i in chosen}


async def _pace(sender: Any, plans: Sequence[StreamPlan], streams: dict[int, EncodedStream], tracker: Tracker,
                config: StepConfig, lags: list[float]) -> None:
    """Send every ZeroMQ stream's frames at real-time pace; a frame is due when its last sample is.
    The frames are encoded ahead (``encode_streams``): per frame, only the send time is written."""
    chunk = config.chunk_samples
    start = time.monotonic() + 0.05
    schedule = {
        i: [start + plans[i].start_offset_s + min((k + 1) * chunk, len(plans[i].audio)) / SAMPLE_RATE
            for k in range(stream.frames)]
        for i, stream in streams.items()}
    sent_times = {i: tracker.records[plans[i].stream_id].sent for i in streams}
    monotonic, wall, send = time.monotonic, time.time, sender.send_encoded
    async for i, k, due in paced(schedule, config.pacing_tick_ms / 1000):
        await send(streams[i].message(k, wall()))
        sent = monotonic()
        sent_times[i].append(sent)
        lags.append(sent - due if sent > due else 0.0)


async def _publish_whip(http: str | None, plans: Sequence[StreamPlan], tracker: Tracker, config: StepConfig,
                        errors: list[str]) -> None:
    """The WHIP streams, each from its start offset, through ``streamdet.client.whip_sender`` (aiortc
    paces 20 ms frames in real time and reports each frame's end sample and send time)."""
    plans = [p for p in plans if p.transport == "whip"]
    if not plans:
        return
    if not http:
        raise BenchError("WHIP streams need the service's HTTP address (--http)")
    from streamdet.client.whip_sender import publish_array_async

    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("aioice").setLevel(logging.WARNING)  # a line per ICE check per publisher otherwise

    async def one(plan: StreamPlan) -> None:
        record = tracker.records[plan.stream_id]
        await asyncio.sleep(plan.start_offset_s)
        try:
            await publish_array_async(plan.audio, SAMPLE_RATE, http, stream_id=plan.stream_id,
                                      codec=config.whip_codec, ice_addresses=list(config.whip_ice_addresses),
                                      on_frame=lambda _end, sent: record.sent.append(sent))
        except Exception as exc:  # noqa: BLE001 - one failed publisher is a result, not a crash
            errors.append(f"{plan.stream_id}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(plan) for plan in plans))


async def _follow(feed: ScoreFeed, tracker: Tracker, streams: int) -> None:
    while tracker.ended < streams:
        payloads = await feed.batch()
        received = time.monotonic()  # those already queued came no later than this
        for payload in payloads:
            tracker.on_message(json.loads(payload), received)


async def _sample_rss(stats: ProcessStats, peak: list[int], interval_s: float = 0.5) -> None:
    while True:
        rss = stats.rss_bytes()
        if rss is not None:
            peak[0] = max(peak[0], rss)
        await asyncio.sleep(interval_s)


async def run_step(endpoints: Endpoints, config: StepConfig, clips: Sequence[np.ndarray] = (),
                   server_pid: int | None = None) -> dict[str, Any]:
    """Drive one step against a running service; returns its measurements (see the module docstring)."""
    from streamdet.client import Sender

    if config.streams < 1 or config.duration_s <= 0:
        raise ConfigError("a load step needs at least one stream and a positive duration")
    plans = plan_streams(config, clips)
    if config.whip_codec not in WHIP_CODECS:
        raise ConfigError(f"WHIP codec {config.whip_codec!r}: choose from {', '.join(WHIP_CODECS)}")
    tracker = Tracker(plans, config.chunk_samples, config.whip_codec)
    encoded = encode_streams(plans, config)
    stats = ProcessStats(server_pid)
    lags: list[float] = []
    whip_errors: list[str] = []
    ws_errors: list[str] = []
    peak_rss = [0]
    metrics_before = await asyncio.to_thread(scrape_metrics, endpoints.http)
    cpu_before, client_cpu_before = stats.cpu_seconds(), time.process_time()
    load_before = [round(x, 2) for x in os.getloadavg()]
    sampler = asyncio.create_task(_sample_rss(stats, peak_rss))
    settled = True
    async with ScoreFeed(endpoints.events) as feed:
        try:
            await feed.wait_connected(timeout=15)
        except TimeoutError:
            sampler.cancel()
            raise BenchError(f"no connection to the event socket {endpoints.events}") from None
        follower = asyncio.create_task(_follow(feed, tracker, len(plans)))
        started = time.monotonic()
        async with Sender(endpoints.ingest, send_hwm=100_000) as sender:
            await asyncio.gather(_pace(sender, plans, encoded, tracker, config, lags),
                                 _publish_whip(endpoints.http, plans, tracker, config, whip_errors),
                                 ws_load.publish_media_ws(endpoints.http, plans, tracker, ws_errors, lags))
            sent_at = time.monotonic()
        try:
            await asyncio.wait_for(follower, config.settle_s)
        except TimeoutError:
            settled = False
    finished = time.monotonic()
    sampler.cancel()
    cpu_after, client_cpu_after = stats.cpu_seconds(), time.process_time()
    metrics_after = await asyncio.to_thread(scrape_metrics, endpoints.http)
    return summarize(config, tracker, lags, started, sent_at, finished, settled,
                     metrics_delta(metrics_before, metrics_after),
                     None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
                     client_cpu_after - client_cpu_before, peak_rss[0] or stats.rss_bytes(), load_before,
                     whip_errors, ws_errors)


def _expected(record: StreamRecord, hop: int) -> int:
    """Windows a stream should get. Over WHIP the service sees the codec's samples (the sender's tail
    padding included), over a WebSocket call 8 kHz samples resampled back, so its own count from the
    ``end`` event (scored + dropped) is the truth."""
    if record.plan.transport in ("whip", "media_ws") and record.end is not None:
        return int(record.end["windows"]) + int(record.end["dropped"])
    return expected_windows(len(record.plan.audio), hop)


def summarize(config: StepConfig, tracker: Tracker, lags: Sequence[float], started: float, sent_at: float,
              finished: float, settled: bool, metrics: dict[str, Any], server_cpu_s: float | None,
              client_cpu_s: float, server_rss: int | None, load_before: list[float],
              whip_errors: Sequence[str] = (), ws_errors: Sequence[str] = ()) -> dict[str, Any]:
    """One step's JSON record."""
    records = list(tracker.records.values())
    expected = sum(_expected(r, config.hop_samples) for r in records)
    received = sum(r.scores for r in records)
    dropped_end = sum(r.end["dropped"] for r in records if r.end)
    dropped_reported = metrics.get("windows_dropped", dropped_end) if metrics else dropped_end
    missing = max(0, expected - received - dropped_reported)
    # The scoring phase's rate: windows between the first and the last score event.
    scoring_span = (tracker.last_score_at or 0.0) - (tracker.first_score_at or 0.0)
    rate = (received - 1) / scoring_span if received > 1 and scoring_span > 0 else 0.0
    wall = finished - started
    return {
        "streams": config.streams,
        "whip_streams": config.whip_streams,
        "whip_codec": config.whip_codec if config.whip_streams else None,
        "whip_errors": list(whip_errors),
        "ws_streams": config.ws_streams,
        "ws_errors": list(ws_errors),
        "duration_s": config.duration_s,
        "hop_s": config.hop_s,
        "chunk_ms": config.chunk_ms,
        "windows_expected": expected,
        "windows_scored": received,
        "windows_per_s": round(rate, 3),
        "offered_windows_per_s": round(config.streams / config.hop_s, 3),
        "drops": {
            "reported": int(dropped_reported),
            "end_events": int(dropped_end),
            "metrics": metrics.get("windows_dropped") if metrics else None,
            "missing_windows": int(missing),
            "total": int(dropped_reported + missing),
        },
        "streams_ended": tracker.ended,
        "end_reasons": sorted({r.end["reason"] for r in records if r.end}),
        "media_sent_s": round(sum(len(r.plan.audio) for r in records) / SAMPLE_RATE, 2),
        "media_received_s": round(sum(r.end["duration"] for r in records if r.end), 2),
        "settled": settled,
        "unmatched_scores": tracker.unmatched,
        "latency_ms": latency_summary(tracker.latencies),
        "service_latency_ms": latency_summary(tracker.service_latencies),
        "latency_ms_by_transport": {k: latency_summary(v) for k, v in sorted(tracker.by_transport.items())},
        "pacing_lag_ms": latency_summary(lags),
        "server": {
            "cpu_seconds": round(server_cpu_s, 2) if server_cpu_s is not None else None,
            "cpu_percent": round(100 * server_cpu_s / wall, 1) if server_cpu_s is not None else None,
            "rss_mb": round(server_rss / 2**20, 1) if server_rss else None,
        },
        "client_cpu_percent": round(100 * client_cpu_s / wall, 1),
        "wall_s": round(wall, 2),
        "send_s": round(sent_at - started, 2),
        "metrics": metrics,
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
