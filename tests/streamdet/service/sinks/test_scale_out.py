"""Scale-out as deployed: three ``streamdet serve`` nodes (real processes, a small random CM) and one
real Redis; a consumer group sees every node's alerts and scores, each audio stream's in order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from streamdet.client import Sender
from streamdet.client.redis_subscriber import RedisSubscriber

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[4]
NODES = ("node-1", "node-2", "node-3")


async def start_node(name: str, cm_dir: Path, redis_url: str, tmp_path: Path) -> tuple[asyncio.subprocess.Process, str]:
    """A serve process; returns it and its ZeroMQ ingest endpoint (from its ``ready:`` line)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "STREAMDET_EVENTS__REDIS_URL": redis_url,
           "STREAMDET_EVENTS__NODE_ID": name, "STREAMDET_EVENTS__OUTBOX_PATH": str(tmp_path / f"{name}.sqlite3"),
           # One journal per node: a journal belongs to one service (it takes a lock).
           "STREAMDET_EVENTS__JOURNAL_PATH": str(tmp_path / f"{name}-journal.sqlite")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "serve", "--engine", str(cm_dir), "--device", "cpu", "--threads", "1",
        "--ingest", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", "--no-http", "--log-format", "json",
        "--spoof-threshold", "0.0", "--alert-k", "1", "--alert-n", "1",
        "--min-speech", "0",  # synthetic audio: no speech for the gate to find
        env=env, stderr=asyncio.subprocess.PIPE)
    while True:
        line = await proc.stderr.readline()
        if not line:
            raise AssertionError(f"{name} exited before it was ready")
        try:
            message = json.loads(line)["message"]
        except json.JSONDecodeError:
            continue
        if message.startswith("ready:"):
            # "ready: ingest tcp://..., events tcp://..., http off"
            return proc, message[len("ready: ingest "):].split(",")[0]


async def read_until_ended(url: str, stream: str, last_kind: str, stream_ids: set[str]) -> list:
    """Entries of ``stream`` through a consumer group until every audio stream sent ``last_kind``."""
    entries, waiting = [], set(stream_ids)
    async with RedisSubscriber(url, stream=stream, group="ops", consumer="checker", start="0") as subscriber:
        while waiting:
            entry = await subscriber.recv(timeout=120)
            await subscriber.ack(entry)
            entries.append(entry.event)
            if entry.event.event == last_kind:
                waiting.discard(entry.event.stream_id)
    return entries


async def test_a_consumer_sees_every_nodes_alerts_in_order(random_cm_dir, redis_server, tmp_path) -> None:
    nodes, drains = [], []
    try:
        for name in NODES:  # one at a time: three CMs loading at once would crowd a small machine
            nodes.append(await asyncio.wait_for(start_node(name, random_cm_dir, redis_server.url, tmp_path), 180))
        drains += [asyncio.create_task(proc.stderr.read()) for proc, _ in nodes]  # keep the pipes flowing
        audio = np.random.default_rng(0).normal(0, 0.1, (16_000 * 6, 1)).astype(np.float32)  # 6 s: 3 windows
        stream_ids = set()
        for name, (_proc, ingest) in zip(NODES, nodes, strict=True):
            async with Sender(ingest) as sender:
                for k in range(2):
                    stream_ids.add(f"{name}-call-{k}")
                    await sender.send_array(f"{name}-call-{k}", audio, 16_000)
        alerts = await read_until_ended(redis_server.url, "alerts", "ended", stream_ids)
        scores = await read_until_ended(redis_server.url, "scores", "end", stream_ids)
    finally:
        for proc, _ in nodes:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in nodes:
            await asyncio.wait_for(proc.wait(), 60)
    await asyncio.gather(*drains)
    assert all(proc.returncode == 0 for proc, _ in nodes)

    assert {e.node for e in alerts} == set(NODES) == {e.node for e in scores}
    per_stream: dict[str, list] = defaultdict(list)
    for event in alerts:
        per_stream[event.stream_id].append(event.event)
        assert event.stream_id.startswith(event.node)  # each audio stream lived on the node it was sent to
    assert per_stream == {sid: ["raised", "ended"] for sid in stream_ids}  # threshold 0: raised, never cleared
    by_stream: dict[str, list] = defaultdict(list)
    for event in alerts + scores:
        by_stream[event.stream_id].append(event)
    for stream_id, events in by_stream.items():
        # Within each key, a stream's events come in the order its node published them.
        for key_events in ([e for e in events if e in alerts], [e for e in events if e in scores]):
            seqs = [e.stream_seq for e in key_events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), stream_id
        windows = [e.window for e in events if e.event == "score"]
        assert windows == list(range(len(windows))) and len(windows) >= 3, stream_id
