"""Fixtures for the service tests: a fast fake scorer, in-process services on loopback, helpers.

Tests reach the helpers of this module through the ``kit`` fixture (``kit.tone(2.0)``): with
pytest's importlib mode a conftest cannot be imported by name.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType

import aiohttp
import numpy as np
import pytest
import zmq
import zmq.asyncio

from streamdet.manifest import InputContract
from streamdet.scoring.base import Scorer
from streamdet.service.events import Event
from streamdet.service.frames import encode_frame
from streamdet.service.server import Service
from streamdet.service.settings import load_settings

LOOPBACK = "tcp://127.0.0.1:*"


@pytest.fixture
def kit() -> ModuleType:
    """This module: FakeScorer, tone, frames_of, send_all, collect_until_end, http_get, metric_value."""
    return sys.modules[__name__]


class FakeScorer(Scorer):
    """A fake model, for tests of the plumbing (not of scores): P(bona fide) = ``p_bonafide``, or
    a function of each window. Fast and deterministic, so protocol tests need no reference data."""

    def __init__(self, p_bonafide: float | Callable[[np.ndarray], float] = 0.1, delay_s: float = 0.0) -> None:
        self.contract = InputContract()
        self.model_id = "fake@0"
        self.p_bonafide = p_bonafide
        self.delay_s = delay_s
        self.batches: list[int] = []

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        self.batches.append(len(windows))
        if callable(self.p_bonafide):
            return np.array([self.p_bonafide(w) for w in windows], dtype=np.float32)
        return np.full(len(windows), self.p_bonafide, dtype=np.float32)

    async def score(self, windows: np.ndarray) -> np.ndarray:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.score_batch(windows)


def loopback_overrides(**sections: dict) -> dict:
    """Settings overrides binding every socket to a free loopback port, merged with ``sections``.

    The speech gate is off (``alerts.min_speech`` 0) unless a test sets it: plumbing tests stream
    tones and silence through fake scorers, which the gate would rightly leave out of every alert."""
    base: dict = {"ingest": {"endpoint": LOOPBACK}, "alerts": {"endpoint": LOOPBACK, "min_speech": 0.0},
                  "http": {"port": 0}}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


StartService = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_service() -> AsyncIterator[StartService]:
    """``await start_service(scorer, alerts={...}, limits={...})``: a started service, stopped after."""
    started: list[Service] = []

    async def start(scorer: Scorer | None = None, **sections: dict) -> Service:
        service = Service(load_settings(None, loopback_overrides(**sections)), scorer or FakeScorer())
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@pytest.fixture
async def zmq_context() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
async def push(zmq_context: zmq.asyncio.Context) -> Callable[[str], zmq.asyncio.Socket]:
    """``push(endpoint)``: a connected PUSH socket, to send raw (also malformed) messages."""

    def connect(endpoint: str) -> zmq.asyncio.Socket:
        socket = zmq_context.socket(zmq.PUSH)
        socket.linger = 1000
        socket.connect(endpoint)
        return socket

    return connect


def tone(seconds: float, rate: int = 16_000, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A test signal: float32 (frames, channels), channels slightly different."""
    t = np.arange(int(seconds * rate)) / rate
    cols = [0.3 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def frames_of(stream_id: str, samples: np.ndarray, rate: int = 16_000, chunk: int = 3_200, fmt: str = "s16le",
              first_seq: int = 0, end: bool = True) -> list[list[bytes]]:
    """A stream as protocol messages (chunk frames per message), the last marked ``end``."""
    starts = list(range(0, len(samples), chunk))
    return [encode_frame(stream_id, first_seq + i, samples[s:s + chunk], rate, fmt,
                         end=end and i == len(starts) - 1) for i, s in enumerate(starts)]


async def send_all(socket: zmq.asyncio.Socket, messages: list[list[bytes]]) -> None:
    for parts in messages:
        await socket.send_multipart(parts)


async def collect_until_end(listener, stream_id: str, timeout: float = 30.0) -> list[Event]:
    """Events of ``stream_id`` from an in-process listener, up to and including its ``end``."""
    events: list[Event] = []
    while True:
        event = await listener.get(timeout)
        if event.stream_id != stream_id:
            continue
        events.append(event)
        if event.event == "end":
            return events


async def http_get(service: Service, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{service.http_port}{path}") as response:
            return response.status, await response.text()


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample's value from Prometheus text (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{label_text}}}" if labels else "")) + r" ([0-9.e+-]+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="session")
def random_cm_dir(tmp_path_factory) -> Path:
    """A Mel-LCNN CM with random weights in streamdet's format: a real engine without reference data."""
    import torch

    from streamdet.cm import build_backend, save_cm
    from streamdet.manifest import CMManifest

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("random_cm")
    save_cm(directory, build_backend("mel_lcnn").state_dict(), CMManifest(name="random_mellcnn",
                                                                            architecture="mel_lcnn"))
    return directory


VOCODER_FAKE = "alm-add/audio/AudioLM/speech_497b5be1-e5f7-49dd-b244-67df3817d25b_fake.wav"
"""10.0 s, 16 kHz. To ``vocoder_mellcnn`` every window is spoof (p_bonafide < 2e-7) offline, after
G.711 μ-law at 8 kHz (< 2e-7) and after Opus (< 6e-6)."""
VOCODER_REAL = "alm-add/audio/AudioLM/speech_4093adea-d36c-42b8-a165-14cc5fceb461_real.wav"
"""4.0 s, 16 kHz: one (tiled) window, p_bonafide 0.990 to ``vocoder_mellcnn``."""


@pytest.fixture(scope="session")
def vocoder_scorer(released_checkpoint, tmp_path_factory) -> Scorer:
    """The released ``vocoder_mellcnn`` (Mel-LCNN trained on ASVspoof2019 LA) on CPU (needs
    ../shared), for the telephone ingests' acceptance tests: the codec-trained CM calls codec-coded
    bona fide speech (μ-law, Opus) fake."""
    from offline.checkpoint import import_checkpoint
    from streamdet.scoring.torch_scorer import TorchScorer

    directory = tmp_path_factory.mktemp("vocoder_mellcnn")
    import_checkpoint(released_checkpoint("vocoder_mellcnn"), directory)
    return TorchScorer(directory, device="cpu")
