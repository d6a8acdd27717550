"""``streamdet send`` and ``streamdet subscribe`` as subprocesses, against bare ZeroMQ sockets."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import zmq
import zmq.asyncio

from streamdet.service.events import WindowEvent, encode_event
from streamdet.service.frames import parse_frame

REPO = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


async def run_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "streamdet", *args, env=ENV,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_send_streams_each_file(tmp_path: Path) -> None:
    for name, rate in (("a", 16000), ("b", 48000)):
        sf.write(tmp_path / f"{name}.wav", np.zeros((rate // 2, 2)), rate, subtype="PCM_16")
    context = zmq.asyncio.Context()
    pull = context.socket(zmq.PULL)
    pull.bind("tcp://127.0.0.1:*")
    try:
        proc = await run_cli("send", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--endpoint",
                             pull.last_endpoint.decode(), "--stream-id", "one", "--stream-id", "two",
                             "--speed", "50")
        ended, rates = set(), {}
        while len(ended) < 2:
            frame = parse_frame(await asyncio.wait_for(pull.recv_multipart(), 30), 1 << 20)
            rates[frame.stream_id] = frame.sample_rate
            if frame.end:
                ended.add(frame.stream_id)
        stdout, stderr = await proc.communicate()
    finally:
        context.destroy(linger=0)
    assert proc.returncode == 0, stderr.decode()
    assert rates == {"one": 16000, "two": 48000}
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert [(r["stream_id"], r["channels"], r["format"], r["duration"]) for r in lines] == [
        ("one", 2, "s16le", 0.5), ("two", 2, "s16le", 0.5)]


async def test_send_refuses_mismatched_stream_ids(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(100), 16000)
    proc = await run_cli("send", str(tmp_path / "a.wav"), "--stream-id", "x", "--stream-id", "y")
    _, stderr = await proc.communicate()
    assert proc.returncode == 2 and b"--stream-id" in stderr


async def test_subscribe_prints_json_lines_of_its_topic() -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    proc = await run_cli("subscribe", "--endpoint", pub.last_endpoint.decode(), "--topic", "alert.", "--count", "2")
    try:
        score = WindowEvent("score", "s", 0, 0.0, 4.0375, 0.0, 0.9, 0.1, 0.5, 0.5, True, True, False, "m", 1.0)
        raised = WindowEvent("raised", "s", 0, 0.0, 4.0375, 0.0, 0.9, 0.1, 0.5, 0.5, True, True, False, "m", 1.0)
        # PUB drops what it sends before the subscriber has joined: publish until it has printed twice.
        while proc.returncode is None:
            pub.send_multipart(encode_event(score))
            pub.send_multipart(encode_event(raised))
            try:
                await asyncio.wait_for(proc.wait(), 0.1)
            except TimeoutError:
                pass
        stdout = await proc.stdout.read()
    finally:
        if proc.returncode is None:
            proc.kill()
        pub.close(linger=0)
        context.term()
    assert proc.returncode == 0
    assert [json.loads(line)["event"] for line in stdout.decode().splitlines()] == ["raised", "raised"]
