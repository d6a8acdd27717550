"""Alerts are never lost, with real processes: ``streamdet serve`` (a random CM that calls every
window spoof, so every stream raises at once and ends raised) and ``streamdet subscribe``.

- a subscriber down while alerts are raised gets every one of them, in order, once, with ``--since``;
  one asking for events the journal no longer holds is told so (stderr, exit status 1);
- SIGKILL during a burst: after a restart on the same journal, ``--since 0`` delivers every event the
  killed service had journaled, sequence numbers continue, no event id comes twice.

How long the subscriber stays down is ``STREAMDET_TEST_SUBSCRIBER_DOWN_S`` (10 s by default, to keep
the test short; 60 s is the figure to check before a release).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from streamdet.bench.server import Endpoints
from streamdet.client import Sender, Since, Subscriber
from streamdet.service.journal import read_journal

_spec = importlib.util.spec_from_file_location("streamdet_tests_serve_process",
                                               Path(__file__).with_name("serve_process.py"))
serve_process = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve_process)  # wait_ready: serve's "ready:" line → its endpoints

REPO = Path(__file__).resolve().parents[3]
DOWN_S = float(os.environ.get("STREAMDET_TEST_SUBSCRIBER_DOWN_S", "10"))
AUDIO = np.zeros((16_000 * 5, 1), np.float32)  # 5 s: two windows and the tail; raised, then ended


class Serve:
    """``python -m streamdet serve`` on loopback ports with a journal, and where it listens."""

    def __init__(self, proc: asyncio.subprocess.Process, endpoints: Endpoints) -> None:
        self.proc = proc
        self.endpoints = endpoints
        self._drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up

    @classmethod
    async def start(cls, cm: Path, journal: Path, **env: str) -> Serve:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamdet", "serve", "--engine", str(cm), "--device", "cpu",
            "--ingest", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", "--http-port", "0",
            "--log-format", "json", "--spoof-threshold", "0.0", "--alert-k", "1", "--alert-n", "1",
            "--journal", str(journal), "--no-whip",
            "--min-speech", "0",  # synthetic audio: no speech for the gate to find
            env={**os.environ, "PYTHONPATH": str(REPO), "STREAMDET_ALERTS__HEARTBEAT_S": "0.5", **env},
            stderr=asyncio.subprocess.PIPE)
        try:
            return cls(proc, await serve_process.wait_ready(proc))
        except BaseException:
            proc.kill()  # not left running behind a failed test
            await proc.wait()
            raise

    async def send(self, *stream_ids: str) -> None:
        async with Sender(self.endpoints.ingest) as sender:
            await asyncio.gather(*(sender.send_array(s, AUDIO, 16_000, chunk_ms=100) for s in stream_ids))

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), 60)
        await self._drain


async def subscribe(serve: Serve, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "subscribe", "--endpoint", serve.endpoints.events,
        "--http", serve.endpoints.http, "--topic", "alert.", *args,
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def read_events(proc: asyncio.subprocess.Process, count: int) -> list[dict]:
    return [json.loads(await asyncio.wait_for(proc.stdout.readline(), 30)) for _ in range(count)]


async def test_a_subscriber_back_after_a_while_gets_every_alert_once_in_order(random_cm_dir: Path,
                                                                              tmp_path: Path) -> None:
    serve = await Serve.start(random_cm_dir, tmp_path / "events.sqlite")
    try:
        first = await subscribe(serve, "--since", "0")  # however long it takes to start, it misses nothing
        await serve.send("before")
        seen = await read_events(first, 2)
        assert [(e["event"], e["stream_id"]) for e in seen] == [("raised", "before"), ("ended", "before")]
        first.kill()
        await first.wait()

        # Down for DOWN_S seconds while streams keep raising alerts (one stream every 2 s).
        down_until, sent = time.monotonic() + DOWN_S, []
        while time.monotonic() < down_until:
            sent.append(f"down-{len(sent)}")
            await serve.send(sent[-1])
            await asyncio.sleep(2.0)

        back = await subscribe(serve, "--since", str(seen[-1]["seq"]), "--count", str(2 * len(sent) + 2),
                               "--timeout", "30")
        replayed = await read_events(back, 2 * len(sent))
        await serve.send("after")  # and on it goes, live
        live = await read_events(back, 2)
        assert await asyncio.wait_for(back.wait(), 30) == 0
    finally:
        await serve.stop()
    events = replayed + live
    assert [(e["event"], e["stream_id"]) for e in events] == \
        [(kind, s) for s in [*sent, "after"] for kind in ("raised", "ended")]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and seqs[0] > seen[-1]["seq"]
    assert len({e["event_id"] for e in events}) == len(events)


async def test_events_the_journal_no_longer_holds_are_reported(random_cm_dir: Path, tmp_path: Path) -> None:
    serve = await Serve.start(random_cm_dir, tmp_path / "events.sqlite", STREAMDET_EVENTS__RETENTION_BYTES="4096")
    try:
        await serve.send(*(f"s{i}" for i in range(8)))  # about 30 kB of events through a 4 kB journal
        proc = await subscribe(serve, "--since", "0", "--count", "1", "--timeout", "30")
        (event,) = await read_events(proc, 1)
        stderr = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
        assert await asyncio.wait_for(proc.wait(), 30) == 1
    finally:
        await serve.stop()
    assert event["event"] in ("raised", "ended")
    lines = stderr.strip().splitlines()
    assert any("missed events 1-" in line and "no longer in the journal (retention)" in line for line in lines), stderr
    assert "could not be recovered" in lines[-1]


async def test_after_sigkill_every_journaled_event_is_delivered_and_seq_continues(random_cm_dir: Path,
                                                                                  tmp_path: Path) -> None:
    journal = tmp_path / "events.sqlite"
    serve = await Serve.start(random_cm_dir, journal)
    live: list = []
    try:
        async with Subscriber(serve.endpoints.events) as subscriber:
            await subscriber.wait_connected()
            burst = asyncio.create_task(serve.send(*(f"burst-{i}" for i in range(12))))
            while len(live) < 10:  # in the middle of the burst
                live.append(await subscriber.recv(timeout=30))
            await serve.stop(signal.SIGKILL)
            burst.cancel()
    finally:
        await serve.stop(signal.SIGKILL)
    assert serve.proc.returncode == -signal.SIGKILL
    journaled = read_journal(journal, since=0, limit=100_000).events  # what the killed service had stored
    assert [e["seq"] for e in journaled] == list(range(1, len(journaled) + 1))
    assert {e.event_id for e in live} <= {e["event_id"] for e in journaled}  # nothing went out unjournaled

    serve = await Serve.start(random_cm_dir, journal)
    try:
        async with Subscriber(serve.endpoints.events, topics=[""], replay=serve.endpoints.http,
                              since=Since(seq=0)) as subscriber:
            delivered = [await subscriber.recv(timeout=30) for _ in journaled]
            await serve.send("after")
            while not (delivered[-1].stream_id == "after" and delivered[-1].event in ("end", "ended")
                       and not (delivered[-1].event == "end" and delivered[-1].alert)):
                delivered.append(await subscriber.recv(timeout=30))
    finally:
        await serve.stop()
    before = delivered[:len(journaled)]
    assert [e.event_id for e in before] == [e["event_id"] for e in journaled]
    after = delivered[len(journaled):]
    assert [e.seq for e in after] == list(range(len(journaled) + 1, len(journaled) + 1 + len(after)))
    assert {e.node for e in delivered} == {journaled[0]["node"]}
    assert len({e.event_id for e in delivered}) == len(delivered) and subscriber.duplicates == 0
    assert not subscriber.missed
