"""``streamdet serve`` as a user runs it: a real subprocess, real sockets, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import torch

from streamdet.cli import main
from streamdet.client import Sender, Subscriber

REPO = Path(__file__).resolve().parents[3]


def test_serve_without_engine_or_shipped_cm_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    import streamdet.pretrained

    monkeypatch.delenv("STREAMDET_SCORING__ENGINE", raising=False)
    monkeypatch.setattr(streamdet.pretrained, "PRETRAINED_DIR", tmp_path)
    assert main(["serve"]) == 2
    assert "offline pull codec_mellcnn --out engines/codec_mellcnn" in capsys.readouterr().err


async def test_serve_without_engine_scores_with_the_shipped_cm() -> None:
    env = {k: v for k, v in os.environ.items() if k != "STREAMDET_SCORING__ENGINE"}
    env["PYTHONPATH"] = str(REPO)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "serve", "--device", "cpu", "--ingest", "tcp://127.0.0.1:*",
        "--events", "tcp://127.0.0.1:*", "--http-port", "0", "--log-format", "json",
        env=env, stderr=asyncio.subprocess.PIPE)
    try:
        messages = []
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), 120)
            assert line, "serve exited before it was ready"
            try:
                messages.append(json.loads(line)["message"])
            except json.JSONDecodeError:
                continue
            if messages[-1].startswith("ready:"):
                break
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert any("shipped CM" in m and "telephone_mellcnn" in m for m in messages), messages


def test_serve_with_invalid_settings_exits_2(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[alerts]\nk = 7\nn = 2\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "alerts.k" in capsys.readouterr().err


async def _ready_line(stderr: asyncio.StreamReader) -> dict:
    """Read JSON log lines until the service says it is ready; returns that line."""
    while True:
        line = await stderr.readline()
        if not line:
            raise AssertionError("serve exited before it was ready")
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry["message"].startswith("ready:"):
            return entry


async def _frames_received(http: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{http}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith('streamdet_ingest_frames_total{adapter="zmq"}'):
                return float(line.split()[-1])
    return 0.0


async def test_sigterm_scores_the_in_flight_stream_and_exits_0(random_cm_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "serve", "--engine", str(random_cm_dir), "--device", "cpu",
        "--ingest", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", "--http-port", "0",
        "--log-format", "json", "--spoof-threshold", "0.0", "--alert-k", "1", "--alert-n", "1",
        "--min-speech", "0",  # the audio is silence: no speech gate, so that every window counts
        env=env, stderr=asyncio.subprocess.PIPE)
    try:
        ready = await asyncio.wait_for(_ready_line(proc.stderr), 120)
        # "ready: ingest tcp://..., events tcp://..., http http://..."
        parts = dict(p.strip().split(" ", 1) for p in ready["message"][len("ready:"):].split(","))
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up

        async with Subscriber(parts["events"]) as subscriber:
            await subscriber.wait_connected()
            async with Sender(parts["ingest"]) as sender:
                audio = np.zeros((40_000, 1), np.float32)  # 2.5 s: less than one window, never ended
                for seq, start in enumerate(range(0, len(audio), 4_000)):
                    await sender.send_frame("inflight", seq, audio[start:start + 4_000], 16000)
                while await _frames_received(parts["http"]) < 10:
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                events = [await subscriber.recv(timeout=60) for _ in range(3)]
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await drain
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    score, raised, end = events
    assert (score.event, score.final, score.start, score.end) == ("score", True, 0.0, 2.5)
    assert raised.event == "raised"  # threshold 0: any window is spoof evidence
    assert (end.event, end.reason, end.windows, end.duration) == ("end", "shutdown", 1, 2.5)


def test_w2v2_cm_without_reachable_hub_fails_in_one_line(random_w2v2_hub_cm: Path,
                                                          hub_unreachable_env: dict[str, str]) -> None:
    """No traceback, no half a minute of retries: one line that says how to point at a local XLS-R."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "streamdet", "serve", "--engine", str(random_w2v2_hub_cm), "--device", "cpu",
         "--ingest", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", "--no-http"],
        env=hub_unreachable_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "http://127.0.0.1:9 is not reachable" in lines[0]
    assert "--w2v2-source" in lines[0] and "STREAMDET_SCORING__W2V2_SOURCE" in lines[0]


def test_old_threshold_flag_is_the_spoof_threshold_with_a_warning(capsys) -> None:
    from streamdet.cli import build_parser
    from streamdet.commands.serve import overrides_from

    # --threshold was already a spoof probability: the same value, under its new name.
    assert overrides_from(build_parser().parse_args(["serve", "--threshold", "0.3"])) == \
        {"alerts": {"spoof_threshold": 0.3}}
    assert "--threshold is deprecated, use --spoof-threshold" in capsys.readouterr().err
    assert overrides_from(build_parser().parse_args(["serve", "--spoof-threshold", "0.3"])) == \
        {"alerts": {"spoof_threshold": 0.3}}
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("device, message", [
    ("gpu", "unknown device 'gpu'"),
    pytest.param("cuda", "no CUDA device is usable", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a CUDA device")),
])
def test_a_device_torch_cannot_use_is_one_line(device: str, message: str) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "streamdet", "serve", "--device", device, "--workers", "2",
         "--ingest", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", "--no-http"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert len(errors) == 1 and message in errors[0], done.stderr


def test_a_cm_without_weights_sha256_is_refused_in_one_line_unless_trusted(random_cm_dir: Path, tmp_path: Path) -> None:
    """Deleting ``weights_sha256`` used to load altered weights without a word."""
    import shutil
    import subprocess

    from streamdet.cli import build_parser
    from streamdet.commands.serve import overrides_from

    cm = tmp_path / "cm"
    shutil.copytree(random_cm_dir, cm)
    manifest = json.loads((cm / "manifest.json").read_text())
    del manifest["weights_sha256"]
    (cm / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run(
        [sys.executable, "-m", "streamdet", "serve", "--engine", str(cm), "--device", "cpu",
         "--ingest", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", "--no-http"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust-unhashed" in lines[0], done.stderr
    assert overrides_from(build_parser().parse_args(["serve", "--trust-unhashed"])) == \
        {"scoring": {"trust_unhashed": True}}
