"""``streamdet serve`` processes that cannot finish their work: a shutdown past its timeout, and a
SIGKILL followed by a restart on the same journal. Real subprocesses (``serve_test_scorer.py``: the
real command with a model-free scorer), real sockets on loopback, the journal read afterwards."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import numpy as np

from streamdet.bench.server import Endpoints
from streamdet.client import Sender, Subscriber
from streamdet.service.journal import read_journal

_spec = importlib.util.spec_from_file_location("streamdet_tests_serve_process",
                                               Path(__file__).with_name("serve_process.py"))
serve_process = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve_process)  # wait_ready: serve's "ready:" line → its endpoints

REPO = Path(__file__).resolve().parents[3]
SERVE = Path(__file__).with_name("serve_test_scorer.py")
SECONDS = 8.0
"""Audio per stream: 4 regular windows (hop 1 s) while it flows, and a tail window at its end."""
WINDOWS_PER_STREAM = 5
CHUNK = 3_200  # 0.2 s frames
FRAMES_PER_STREAM = int(SECONDS * 16_000) // CHUNK


class Serve:
    """A running ``serve`` process and its endpoints (from its ``ready:`` log line)."""

    def __init__(self, proc: asyncio.subprocess.Process, endpoints: Endpoints) -> None:
        self.proc = proc
        self.ingest, self.events, self.http = endpoints.ingest, endpoints.events, endpoints.http

    async def frames_received(self) -> float:
        async with aiohttp.ClientSession() as session, session.get(f"{self.http}/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith('streamdet_ingest_frames_total{adapter="zmq"}'):
                    return float(line.split()[-1])
        return 0.0

    async def wait_for_frames(self, count: int) -> None:
        while await self.frames_received() < count:
            await asyncio.sleep(0.05)


@asynccontextmanager
async def serve(p_bonafide: float, delay_s: float, journal: Path, *flags: str,
                env: dict[str, str] | None = None) -> AsyncIterator[Serve]:
    """``streamdet serve`` on loopback with the test scorer; killed at exit if still running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVE), str(p_bonafide), str(delay_s), "--device", "cpu",
        "--ingest", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", "--http-port", "0", "--no-whip",
        "--log-format", "json", "--min-speech", "0", "--journal", str(journal), *flags,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, stderr=asyncio.subprocess.PIPE)
    drain: asyncio.Task[bytes] | None = None
    try:
        endpoints = await serve_process.wait_ready(proc)
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up
        yield Serve(proc, endpoints)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if drain is not None:
            await drain


async def send_stream(sender: Sender, kit: ModuleType, stream_id: str, first_seq: int = 0,
                      end: bool = False) -> None:
    """``SECONDS`` of tone as ``FRAMES_PER_STREAM`` frames from ``first_seq`` on, the last marked ``end`` if asked."""
    audio = kit.tone(SECONDS)
    for i, start in enumerate(range(0, len(audio), CHUNK)):
        await sender.send_frame(stream_id, first_seq + i, audio[start:start + CHUNK], 16_000,
                                end=end and i == FRAMES_PER_STREAM - 1)


def journaled(path: Path) -> list[dict[str, Any]]:
    return read_journal(path, since=0, limit=100_000).events


async def wait_in_journal(path: Path, found: Callable[[dict[str, Any]], bool]) -> None:
    while not any(found(event) for event in journaled(path)):
        await asyncio.sleep(0.05)


async def test_sigterm_past_a_1s_shutdown_timeout_ends_all_20_streams_unscored_and_exits_3(
        tmp_path: Path, kit: ModuleType) -> None:
    """20 streams x 8 s (5 windows each, the tail included), a scorer taking 0.5 s per batch of 2
    windows, ``limits.shutdown_timeout_s`` = 1: SIGTERM leaves most windows unscored. Every stream
    must still get its ``end`` (reason ``unscored``, windows + dropped + unscored = 5), live on the
    socket and in the journal, and the process exits 3. Before: 0 of 20 ``end`` events, exit 0."""
    journal = tmp_path / "events.sqlite"
    streams = [f"s{i:02d}" for i in range(20)]
    async with serve(1.0, 0.5, journal, "--max-batch", "2",
                     env={"STREAMDET_LIMITS__SHUTDOWN_TIMEOUT_S": "1"}) as service:
        async with Subscriber(service.events, topics=["score."]) as subscriber:
            await subscriber.wait_connected()
            async with Sender(service.ingest) as sender:
                for stream_id in streams:
                    await send_stream(sender, kit, stream_id)
                await service.wait_for_frames(len(streams) * FRAMES_PER_STREAM)
            service.proc.send_signal(signal.SIGTERM)
            live_ends = {}
            while len(live_ends) < len(streams):
                event = await subscriber.recv(timeout=60)
                if event.event == "end":
                    live_ends[event.stream_id] = event
        assert await asyncio.wait_for(service.proc.wait(), 60) == 3
    assert sorted(live_ends) == streams
    assert {end.reason for end in live_ends.values()} == {"unscored"}
    for end in live_ends.values():
        assert end.unscored >= 1
        assert end.windows + end.dropped + end.unscored == WINDOWS_PER_STREAM, end
    stored_ends = {e["stream_id"]: e for e in journaled(journal) if e["event"] == "end"}
    assert {sid: (e["reason"], e["unscored"]) for sid, e in stored_ends.items()} == \
        {sid: (e.reason, e.unscored) for sid, e in live_ends.items()}


async def test_sigkill_then_restart_ends_the_old_stream_restart_and_never_repeats_a_window_or_raise(
        tmp_path: Path, kit: ModuleType) -> None:
    """A stream of all-spoof windows (k = n = 1: raised at window 0), the service SIGKILLed after its
    4 windows and ``raised``, restarted on the same journal, the stream continued (seq 40 on, 8 s
    more, then ended). Expected in the journal: the pre-crash instance closed at start-up by
    ``end`` (reason ``restart``, its own epoch, 4 windows, stream_seq continuing) and ``ended``,
    before any event of the new instance; no (stream, epoch, window) published twice; on the alert
    topic raised, ended, raised, ended. Before: no ``end`` for the old instance, windows 0-3 and
    ``raised`` published a second time under the same identity."""
    journal = tmp_path / "events.sqlite"
    alerts = ("--alert-k", "1", "--alert-n", "1")
    async with serve(0.0, 0.0, journal, *alerts) as first:
        async with Sender(first.ingest) as sender:
            await send_stream(sender, kit, "call")
            await first.wait_for_frames(FRAMES_PER_STREAM)
        await wait_in_journal(journal, lambda e: e["event"] == "score" and e["window"] == 3)
        first.proc.send_signal(signal.SIGKILL)
        assert await first.proc.wait() == -signal.SIGKILL
    before = journaled(journal)

    async with serve(0.0, 0.0, journal, *alerts) as second:
        async with Sender(second.ingest) as sender:
            await send_stream(sender, kit, "call", first_seq=FRAMES_PER_STREAM, end=True)
        await wait_in_journal(journal, lambda e: e["event"] == "end" and e["reason"] == "end")
        second.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.proc.wait(), 60) == 0
    events = [e for e in journaled(journal) if e["stream_id"] == "call"]
    after = events[len(before):]

    assert [(e["event"], e["window"]) for e in before if e["event"] == "score"] == [("score", w) for w in range(4)]
    restart_end, restart_ended = after[0], after[1]
    assert (restart_end["event"], restart_end["reason"], restart_end["windows"], restart_end["alert"]) == \
        ("end", "restart", 4, True)
    assert restart_ended["event"] == "ended" and restart_ended["reason"] == "restart"
    assert restart_end.get("epoch") == before[-1].get("epoch") != 0
    assert restart_end["stream_seq"] == before[-1]["stream_seq"] + 1
    new_epoch = {e["epoch"] for e in after[2:]}
    assert len(new_epoch) == 1 and new_epoch.pop() > before[-1]["epoch"]
    assert [(e["event"], e["reason"]) for e in after[-2:]] == [("end", "end"), ("ended", "end")]

    windows: dict[tuple[str, int], list[int]] = defaultdict(list)
    for event in events:
        if event["event"] == "score":
            windows[event["stream_id"], event.get("epoch", 0)].append(event["window"])
    for key, numbers in windows.items():
        assert len(numbers) == len(set(numbers)), (key, numbers)
    assert sum(len(numbers) for numbers in windows.values()) == 4 + WINDOWS_PER_STREAM
    alert_topic = [e["event"] for e in events if e["topic"].startswith("alert.")]
    assert alert_topic == ["raised", "ended", "raised", "ended"]
    assert np.all(np.diff([e["seq"] for e in events]) > 0)
