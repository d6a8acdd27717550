"""The service's end-to-end alert tests, run with exported engines instead of the torch CM.

Reuses ``tests/streamdet/service``'s fixtures and test bodies (loaded from their files, not edited):
the released codec Mel-LCNN is exported to ONNX (scored by ONNX Runtime in-process) and to a Triton
model repository (every score comes from a real ``tritonserver`` over gRPC). A last test runs the real
command line, ``streamdet serve --engine triton://HOST:PORT/MODEL``, as a subprocess.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES

pytestmark = pytest.mark.reference

REPO = Path(__file__).resolve().parents[3]
SERVICE_TESTS = REPO / "tests" / "streamdet" / "service"


def load(name: str, path: Path) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


service_kit = load("streamdet_service_test_kit", SERVICE_TESTS / "conftest.py")
e2e = load("streamdet_service_end_to_end", SERVICE_TESTS / "test_end_to_end.py")

# The service tests' fixtures, re-exported so that pytest finds them here.
kit = service_kit.kit
start_service = service_kit.start_service
zmq_context = service_kit.zmq_context
push = service_kit.push
codec_cm_dir = e2e.codec_cm_dir


@pytest.fixture(scope="module")
def onnx_engine(codec_cm_dir: Path, tmp_path_factory) -> Path:
    from offline.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("engines") / "codec_mellcnn-onnx"
    export_onnx(codec_cm_dir, out)
    return out / "model.onnx"


@pytest.fixture(scope="module")
def codec_triton_url(codec_cm_dir: Path, start_triton, tmp_path_factory) -> str:
    from offline.export.triton import export_triton

    repo = tmp_path_factory.mktemp("codec_triton_repo")
    export_triton(codec_cm_dir, repo, backend="python", max_batch=16, max_queue_delay_us=1000)
    return f"triton://{start_triton(repo).grpc_url}/codec_mellcnn"


@pytest.fixture(params=["onnx", "triton"])
def engine_scorer(request, onnx_engine: Path):
    """The released codec Mel-LCNN behind ONNX Runtime, or behind a real Triton server."""
    from streamdet.scoring import open_scorer

    engine = str(onnx_engine) if request.param == "onnx" else request.getfixturevalue("codec_triton_url")
    scorer = open_scorer(engine, device="cpu", sample_rate=SAMPLE_RATE, window_samples=WINDOW_SAMPLES)
    yield scorer
    scorer.close()


@pytest.fixture(scope="module")
def torch_scorer(codec_cm_dir: Path):
    from streamdet.scoring.torch_scorer import TorchScorer

    return TorchScorer(codec_cm_dir, device="cpu")


def test_engines_score_like_the_torch_cm(shared_dir: Path, engine_scorer, torch_scorer):
    from streamdet.audio import load_window

    windows = np.stack([load_window(shared_dir / e2e.FAKE), load_window(shared_dir / e2e.REAL)])
    np.testing.assert_allclose(engine_scorer.score_batch(windows), torch_scorer.score_batch(windows), atol=1e-4)


async def test_fake_clip_raises_an_alert(shared_dir, engine_scorer, start_service, kit) -> None:
    await e2e.test_fake_clip_sent_with_the_cli_raises_an_alert(shared_dir, engine_scorer, start_service, kit)


async def test_real_clip_raises_nothing(shared_dir, engine_scorer, start_service, kit) -> None:
    await e2e.test_real_clip_raises_nothing(shared_dir, engine_scorer, start_service, kit)


async def test_malformed_frames_do_not_stop_a_valid_stream(shared_dir, engine_scorer, start_service, kit,
                                                            push) -> None:
    await e2e.test_malformed_frames_do_not_stop_a_valid_stream(shared_dir, engine_scorer, start_service, kit, push)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"streamdet serve exited: {process.communicate()[1].decode()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("streamdet serve not ready in time")


async def test_serve_command_with_a_triton_url(shared_dir: Path, codec_triton_url: str) -> None:
    """``streamdet serve --engine triton://...`` as a user runs it: a fake clip raises an alert."""
    from streamdet.client import Sender, Subscriber

    ingest, events, http = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", free_port()
    command = [sys.executable, "-m", "streamdet", "serve", "--engine", codec_triton_url, "--ingest", ingest,
               "--events", events, "--http-port", str(http)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await asyncio.to_thread(wait_ready, process, http)
        async with Subscriber(events, ["alert."]) as subscriber:
            await subscriber.wait_connected()
            async with Sender(ingest) as sender:
                await sender.send_file(shared_dir / e2e.FAKE, "fake-cli")
            alert = await subscriber.recv(timeout=120)
        assert (alert.event, alert.stream_id) == ("raised", "fake-cli")
        assert alert.model_id.startswith("codec_mellcnn@") and alert.model_id.endswith(":triton-fp32")
    finally:
        process.terminate()
        process.communicate(timeout=30)  # also closes the stderr pipe
