"""``streamdet send`` and ``streamdet subscribe`` as subprocesses against a running service."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[3]


async def run_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", *args, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_files_are_scored_under_the_stream_id_after_each(kit, start_service, tmp_path: Path) -> None:
    service = await start_service(kit.FakeScorer(0.1))
    listener = service.listen()
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", kit.tone(5.0), 16000, subtype="PCM_16")
    proc = await run_cli("send", str(tmp_path / "a.wav"), "--stream-id", "call-a", str(tmp_path / "b.wav"),
                         "--stream-id", "call-b", "--endpoint", service.ingest_endpoint, "--speed", "20")
    scored: dict[str, int] = {}
    ended: set[str] = set()
    while ended != {"call-a", "call-b"}:
        event = await listener.get(60)
        if event.event == "score":
            scored[event.stream_id] = scored.get(event.stream_id, 0) + 1
        elif event.event == "end":
            ended.add(event.stream_id)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert set(scored) == {"call-a", "call-b"} and min(scored.values()) >= 1


async def test_subscribe_fails_once_the_service_is_gone(kit, start_service, tmp_path: Path) -> None:
    service = await start_service(kit.FakeScorer(0.1))
    endpoint = service.events_endpoint
    proc = await run_cli("subscribe", "--endpoint", endpoint, "--topic", "score.", "--timeout", "3")
    sf.write(tmp_path / "a.wav", kit.tone(5.0), 16000, subtype="PCM_16")
    # Send streams until the subscriber prints an event: then it has heard the running service.
    printed = asyncio.create_task(proc.stdout.readline())
    while not printed.done():
        send = await run_cli("send", str(tmp_path / "a.wav"), "--endpoint", service.ingest_endpoint, "--speed", "20")
        assert await asyncio.wait_for(send.wait(), 60) == 0
        await asyncio.wait([printed], timeout=1)
    assert json.loads(printed.result())["event"] == "score"
    await service.stop()
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert stderr.decode().strip().splitlines() == [
        f"streamdet subscribe: error: no event or heartbeat for 3 s; is the server at {endpoint} running?"]
