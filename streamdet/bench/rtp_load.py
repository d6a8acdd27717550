"""Service load over RTP: each stream a call sending G.711 μ-law (8 kHz, 20 ms packets) to its own
port, opened with ``POST /rtp`` as a call platform's external-media request would, ended with RTCP
BYE. ``streamdet bench --transport rtp`` (the service needs ``[ingests.rtp] enabled``; a server the
bench starts gets it through ``STREAMDET_INGESTS__RTP__ENABLED``).

It reuses the ZeroMQ driver's plan, event matching and report (``streamdet.bench.load``): a score's
end-to-end latency runs from sending the packet that carried its window's last sample to receiving
the score. A packet of 160 μ-law samples at 8 kHz is 320 samples of the 16 kHz stream the service
scores, so windows map to packets as they map to 20 ms ZeroMQ frames.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np

from streamdet.audio import SAMPLE_RATE, resample
from streamdet.bench.feed import ScoreFeed
from streamdet.bench.load import (
    StepConfig,
    StreamPlan,
    Tracker,
    _follow,
    _sample_rss,
    plan_streams,
    summarize,
)
from streamdet.bench.pacing import paced
from streamdet.bench.server import Endpoints, ProcessStats, metrics_delta, scrape_metrics
from streamdet.errors import BenchError, ConfigError
from streamdet.g711 import ulaw_encode
from streamdet.service.ingest.rtp_packet import build_rtcp_bye, build_rtp

RTP_RATE = 8_000
PACKET_SAMPLES = 160
"""20 ms at 8 kHz: what Asterisk and most SBCs send."""
FRAME_16K = SAMPLE_RATE * PACKET_SAMPLES // RTP_RATE


def ulaw_payloads(audio: np.ndarray) -> list[bytes]:
    """16 kHz float audio → 20 ms μ-law payloads at 8 kHz."""
    narrow = resample(audio, SAMPLE_RATE, RTP_RATE)
    codes = ulaw_encode((np.clip(narrow, -1.0, 1.0) * 32767).astype(np.int16)).tobytes()
    return [codes[s:s + PACKET_SAMPLES] for s in range(0, len(codes), PACKET_SAMPLES)]


async def open_sessions(http: str, plans: Sequence[StreamPlan]) -> dict[str, dict[str, Any]]:
    """One ``POST /rtp`` per stream; BenchError if the service refuses (no RTP ingest, no sessions)."""
    sessions = {}
    async with aiohttp.ClientSession() as client:
        for plan in plans:
            async with client.post(f"{http.rstrip('/')}/rtp", json={"stream_id": plan.stream_id}) as response:
                if response.status != 201:
                    raise BenchError(f"POST /rtp for {plan.stream_id}: {response.status} {await response.text()}"
                                     " (is [ingests.rtp] enabled, with sessions?)")
                sessions[plan.stream_id] = await response.json()
    return sessions


async def close_sessions(http: str, sessions: dict[str, dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as client:
        for session in sessions.values():
            async with client.delete(f"{http.rstrip('/')}/rtp/{session['session']}"):
                pass


async def _pace(sock: socket.socket, plans: Sequence[StreamPlan], sessions: dict[str, dict[str, Any]],
                tracker: Tracker, lags: list[float]) -> None:
    """Every stream's packets at real-time pace from one loop (a heap of due times), then its BYE."""
    payloads = [ulaw_payloads(plan.audio) for plan in plans]
    ssrcs = [0x5D000000 + i for i in range(len(plans))]
    start = time.monotonic() + 0.05
    schedule = {i: [start + plan.start_offset_s + (k + 1) * PACKET_SAMPLES / RTP_RATE for k in range(len(payloads[i]))]
                for i, plan in enumerate(plans)}
    async for i, k, due in paced(schedule):
        plan, session = plans[i], sessions[plans[i].stream_id]
        address = (session["host"], session["port"])
        sock.sendto(build_rtp(0, k, k * PACKET_SAMPLES, ssrcs[i], payloads[i][k], marker=k == 0), address)
        sent = time.monotonic()
        tracker.records[plan.stream_id].sent.append(sent)
        lags.append(max(0.0, sent - due))
        if k + 1 == len(payloads[i]):
            sock.sendto(build_rtcp_bye(ssrcs[i]), address)  # RTCP multiplexed on the RTP port


def rtp_packet_counts(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """What the step added to ``streamdet_rtp_packets_total``, by result."""
    counts = {}
    for key, value in after.items():
        if key.startswith("streamdet_rtp_packets_total{"):
            gained = int(value - before.get(key, 0.0))
            if gained:
                counts[key.split('result="', 1)[1].split('"', 1)[0]] = gained
    return counts


async def run_rtp_step(endpoints: Endpoints, config: StepConfig, clips: Sequence[np.ndarray] = (),
                       server_pid: int | None = None) -> dict[str, Any]:
    """One load step over RTP; the same record as ``streamdet.bench.load.run_step`` plus ``rtp_packets``."""
    if config.streams < 1 or config.duration_s <= 0:
        raise ConfigError("a load step needs at least one stream and a positive duration")
    if not endpoints.http:
        raise BenchError("RTP streams need the service's HTTP address (--http) for POST /rtp")
    plans = plan_streams(config, clips)
    for plan in plans:
        plan.transport = "rtp"
    tracker = Tracker(plans, FRAME_16K)
    stats = ProcessStats(server_pid)
    lags: list[float] = []
    peak_rss = [0]
    sessions = await open_sessions(endpoints.http, plans)
    metrics_before = await asyncio.to_thread(scrape_metrics, endpoints.http)
    cpu_before, client_cpu_before = stats.cpu_seconds(), time.process_time()
    load_before = [round(x, 2) for x in os.getloadavg()]
    sampler = asyncio.create_task(_sample_rss(stats, peak_rss))
    settled = True
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        async with ScoreFeed(endpoints.events) as feed:
            try:
                await feed.wait_connected(timeout=15)
            except TimeoutError:
                raise BenchError(f"no connection to the event socket {endpoints.events}") from None
            follower = asyncio.create_task(_follow(feed, tracker, len(plans)))
            started = time.monotonic()
            await _pace(sock, plans, sessions, tracker, lags)
            sent_at = time.monotonic()
            try:
                await asyncio.wait_for(follower, config.settle_s)
            except TimeoutError:
                settled = False
    finally:
        sock.close()
        sampler.cancel()
    finished = time.monotonic()
    cpu_after, client_cpu_after = stats.cpu_seconds(), time.process_time()
    metrics_after = await asyncio.to_thread(scrape_metrics, endpoints.http)
    await close_sessions(endpoints.http, sessions)
    result = summarize(config, tracker, lags, started, sent_at, finished, settled,
                       metrics_delta(metrics_before, metrics_after),
                       None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
                       client_cpu_after - client_cpu_before, peak_rss[0] or stats.rss_bytes(), load_before)
    result["transport"] = "rtp"
    result["rtp_packets"] = rtp_packet_counts(metrics_before, metrics_after)
    return result
