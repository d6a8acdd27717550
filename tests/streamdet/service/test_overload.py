"""Admission control and overload shedding, over real ZeroMQ on loopback (docs/security.md, "Overload").

- A flood of tiny streams (one sample and ``end``, each a new id) used to queue a full tiled window
  per frame: 294 KB of traffic grew the service by over a gigabyte and delayed a real stream's alert
  by minutes. Streams shorter than ``window.min_tail_samples`` now end with no window.
- A service that cannot keep up used to score ever older windows (8 per stream queued, about 8 s
  behind at one window per second); it now sheds windows older than ``scoring.max_latency_s``,
  keeping each stream's newest, answers ``/readyz`` 503 and refuses new streams while it does.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np

from streamdet.service.frames import encode_frame

FLOOD_STREAMS = 3_000


def _rss_bytes() -> int:
    """This process's resident set (the service runs in it)."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


async def _sample_peak_rss(peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _rss_bytes())
        await asyncio.sleep(0.01)


async def test_tiny_end_flood_of_3000_frames_grows_rss_under_200mb_and_a_fake_alerts_within_2s(
        start_service, kit, push) -> None:
    # Before: each of the 3,000 98-byte frames queued a tiled 64,600-sample window (258 KB), about
    # 0.75 GB in all, and the real stream's windows waited behind them (137 s with the real model).
    # The scorer: 20 ms per batch of 2 (100 windows/s, a fast CPU model's order), every window spoof.
    service = await start_service(kit.FakeScorer(p_bonafide=0.0, delay_s=0.02), scoring={"max_batch": 2})
    listener = service.listen()
    socket = push(service.ingest_endpoint)
    real = kit.frames_of("real", kit.tone(6.0), chunk=1_600)  # 60 frames of 0.1 s
    flood = [encode_frame(f"flood-{i}", 0, np.zeros((1, 1), np.int16), 16_000, end=True)
             for i in range(FLOOD_STREAMS)]
    assert len(b"".join(flood[0])) < 100  # 98 bytes on the wire, as measured
    baseline, peak, stop = _rss_bytes(), [0], asyncio.Event()
    sampler = asyncio.create_task(_sample_peak_rss(peak, stop))
    per_frame = FLOOD_STREAMS // len(real)
    for i, frame in enumerate(real):  # the real stream at 4x real time, the flood between its frames
        await socket.send_multipart(frame)
        await kit.send_all(socket, flood[i * per_frame:(i + 1) * per_frame])
        await asyncio.sleep(0.025)
    events = await kit.collect_until_end(listener, "real", timeout=30.0)
    stop.set()
    await sampler
    raised = [e for e in events if e.event == "raised"]
    growth = (peak[0] - baseline) / 2**20
    assert raised and raised[0].latency_ms < 2_000, f"alert {raised[0].latency_ms / 1000:.1f} s late" if raised else events
    assert growth < 200, f"RSS grew {growth:.0f} MB"
    metrics = (await kit.http_get(service, "/metrics"))[1]
    assert kit.metric_value(metrics, "streamdet_streams_ended_total", reason="end") == FLOOD_STREAMS + 1
    assert kit.metric_value(metrics, "streamdet_windows_scored_total") == len([e for e in events
                                                                              if e.event == "score"])


async def test_a_flood_of_short_streams_each_ends_with_no_window_and_its_end_event(start_service, kit,
                                                                                   push) -> None:
    service = await start_service(kit.FakeScorer(p_bonafide=0.0))
    listener = service.listen("score.")
    socket = push(service.ingest_endpoint)
    await kit.send_all(socket, kit.frames_of("short", kit.tone(0.99)))  # under the 1 s floor
    await kit.send_all(socket, kit.frames_of("one-second", kit.tone(1.0)))
    short = await kit.collect_until_end(listener, "short")
    one = await kit.collect_until_end(listener, "one-second")
    assert [e.event for e in short] == ["end"] and short[0].windows == 0 and short[0].dropped == 0
    assert [e.event for e in one] == ["score", "end"] and one[0].final  # one tiled window


async def test_a_flood_of_500_one_second_streams_is_held_to_a_50_window_budget(start_service, kit, push) -> None:
    # Streams of 1 s and an end mark each cost a full window. Before, all 500 queued (12.5 s of
    # scoring at 40 windows/s here) ahead of the real stream that started first. With a budget of
    # 50 waiting windows, the flood's new streams are refused (``overloaded``) once it is reached,
    # and the real stream keeps being served: its alert comes within 3 s of its audio (50 windows
    # ahead of it are 1.25 s of scoring).
    service = await start_service(kit.FakeScorer(p_bonafide=0.0, delay_s=0.05),
                                  scoring={"max_batch": 2, "max_pending_windows": 50})
    listener = service.listen()
    socket = push(service.ingest_endpoint)
    real = kit.frames_of("real", kit.tone(6.0), chunk=1_920)  # 50 frames, 10 flood streams after each
    second = kit.tone(1.0)
    peak, stop = [0], asyncio.Event()

    async def watch_pending() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], service.batcher.pending)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch_pending())
    for i, frame in enumerate(real):
        await socket.send_multipart(frame)
        for j in range(10):
            await socket.send_multipart(encode_frame(f"flood-{i}-{j}", 0, second, 16_000, end=True))
        await asyncio.sleep(0.025)
    events = await kit.collect_until_end(listener, "real", timeout=60.0)
    stop.set()
    await watcher
    raised = [e for e in events if e.event == "raised"]
    assert raised and raised[0].latency_ms < 3_000, f"alert {raised[0].latency_ms / 1000:.1f} s late" if raised else events
    assert [e for e in events if e.event == "score"][-1].final  # its newest window is never shed
    assert peak[0] <= 51, peak  # the budget, and the real stream's newest window beyond it
    metrics = (await kit.http_get(service, "/metrics"))[1]
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="overloaded") > 0


async def _readyz(service, kit) -> tuple[int, dict]:
    status, body = await kit.http_get(service, "/readyz")
    return status, json.loads(body)


async def test_overload_sheds_to_a_2s_target_instead_of_falling_8s_behind_and_readyz_says_so(
        start_service, kit, push) -> None:
    # One window every 0.25 s of audio sent in real time, scored at 1 s each: 4 offered for 1 scored.
    # Before: the stream's 8 queued windows were scored in turn, ~8 s after their audio arrived, and
    # /readyz stayed 200. Now: windows older than 2 s are shed (each stream's newest kept), so a
    # score is about 2 s + one 1 s batch late (at the stream's end its newest window, the tail, may
    # wait one batch more: 4 s; 5 s leaves room for a busy machine); /readyz answers 503 and new
    # streams are refused while the service sheds, 200 once it has caught up.
    service = await start_service(kit.FakeScorer(p_bonafide=0.5, delay_s=1.0),
                                  scoring={"max_batch": 1, "max_wait_ms": 0, "max_latency_s": 2.0},
                                  window={"hop_samples": 4_000})
    listener = service.listen("score.")
    socket = push(service.ingest_endpoint)
    assert (await _readyz(service, kit))[0] == 200
    busy: list[dict] = []
    for i, frame in enumerate(kit.frames_of("busy", kit.tone(10.0), chunk=1_600)):
        await socket.send_multipart(frame)
        await asyncio.sleep(0.1)
        status, body = await _readyz(service, kit)
        if status == 503:
            busy.append(body)
            await socket.send_multipart(encode_frame(f"newcomer-{i}", 0, kit.tone(0.1), 16_000))
    events = await kit.collect_until_end(listener, "busy", timeout=60.0)
    scores = [e for e in events if e.event == "score"]
    worst = max(e.latency_ms for e in scores)
    assert worst < 5_000, f"a score published {worst / 1000:.1f} s after its audio arrived"
    assert busy and busy[0] == {**busy[0], "ready": False, "reason": "overloaded"}
    metrics = (await kit.http_get(service, "/metrics"))[1]
    shed = kit.metric_value(metrics, "streamdet_windows_dropped_total", reason="over_latency")
    capped = kit.metric_value(metrics, "streamdet_windows_dropped_total", reason="overload")
    assert shed > 0 and events[-1].dropped == shed + capped
    assert scores[-1].final  # the newest window (here the tail) is never shed
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="overloaded") > 0
    while (await _readyz(service, kit))[0] != 200:  # back within the 2 s target once it caught up
        await asyncio.sleep(0.1)
    assert kit.metric_value((await kit.http_get(service, "/metrics"))[1], "streamdet_overloaded") == 0
