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


async def test_each_stream_id_names_the_file_before_it(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        sf.write(tmp_path / f"{name}.wav", np.zeros(1600), 16000, subtype="PCM_16")
    context = zmq.asyncio.Context()
    pull = context.socket(zmq.PULL)
    pull.bind("tcp://127.0.0.1:*")
    try:
        proc = await run_cli("send", str(tmp_path / "a.wav"), "--stream-id", "first", str(tmp_path / "b.wav"),
                             str(tmp_path / "c.wav"), "--stream-id", "third", "--endpoint",
                             pull.last_endpoint.decode(), "--speed", "50")
        ended: set[str] = set()
        while len(ended) < 3:
            frame = parse_frame(await asyncio.wait_for(pull.recv_multipart(), 30), 1 << 20)
            if frame.end:
                ended.add(frame.stream_id)
        stdout, stderr = await proc.communicate()
    finally:
        context.destroy(linger=0)
    assert proc.returncode == 0, stderr.decode()
    ids = [json.loads(line)["stream_id"] for line in stdout.decode().splitlines()]
    assert ids[0] == "first" and ids[1].startswith("b-") and ids[2] == "third"
    assert ended == set(ids)


async def test_send_refuses_a_stream_id_given_twice(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(100), 16000)
    proc = await run_cli("send", str(tmp_path / "a.wav"), "--stream-id", "x", str(tmp_path / "a.wav"),
                         "--stream-id", "x")
    _, stderr = await proc.communicate()
    assert proc.returncode == 2 and b"must differ" in stderr


def _unused_endpoint() -> str:
    """A loopback endpoint nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


async def test_send_without_a_service_gives_up_after_its_timeout(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(1600), 16000)
    endpoint = _unused_endpoint()
    proc = await run_cli("send", str(tmp_path / "a.wav"), "--endpoint", endpoint, "--timeout", "1")
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and stdout == b""
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and f"no connection to the service at {endpoint} within 1 s" in lines[0]


async def test_subscribe_without_a_service_fails_after_its_timeout() -> None:
    endpoint = _unused_endpoint()
    proc = await run_cli("subscribe", "--endpoint", endpoint, "--timeout", "1")
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert lines == [f"streamdet subscribe: error: no event or heartbeat for 1 s; is the server at {endpoint} "
                     "running?"]


async def test_subscribe_heartbeats_keep_a_quiet_service_alive() -> None:
    """Heartbeats for three times the timeout, then an event: printed, and no heartbeat is."""
    context = zmq.asyncio.Context()
    pub = context.socket(zmq.XPUB)  # XPUB: the subscriptions arrive as messages, so we know it has joined
    pub.bind("tcp://127.0.0.1:*")
    proc = await run_cli("subscribe", "--endpoint", pub.last_endpoint.decode(), "--timeout", "2", "--count", "1")
    try:
        subscriptions = {await asyncio.wait_for(pub.recv(), 60) for _ in range(2)}
        assert subscriptions == {b"\x01", b"\x01hb."}  # everything, and the heartbeats
        for _ in range(60):  # 6 s of heartbeats every 0.1 s
            await pub.send_multipart([b"hb.", json.dumps({"event": "heartbeat", "v": 1}).encode()])
            await asyncio.sleep(0.1)
            assert proc.returncode is None
        raised = WindowEvent(event="raised", stream_id="s", window=0, start=0.0, end=4.0375, wall_time=0.0,
                             p_spoof=0.9, p_bonafide=0.1, spoof_threshold=0.5, threshold=0.5, spoof=True,
                             alert=True, final=False, model_id="m", latency_ms=1.0)
        await pub.send_multipart(encode_event(raised))
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        context.destroy(linger=0)
    assert proc.returncode == 0, stderr.decode()
    assert [json.loads(line)["event"] for line in stdout.decode().splitlines()] == ["raised"]
