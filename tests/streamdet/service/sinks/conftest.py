"""Fixtures for the sink tests: a real ``redis-server`` and a real webhook receiver, on loopback.

``redis_server`` starts Debian's ``redis-server`` (skipped with a reason when it is missing) on a
free port with its own directory and an append-only file fsynced on every write, so that it keeps
its data across ``stop()`` and ``start()``, which the outage tests use. ``webhook_receiver`` is an
aiohttp app that records every request and can be stopped and started again on the same port.

Outages last ``STREAMDET_TEST_OUTAGE_S`` seconds (5 by default, to keep each test short; set 30 for
the full-length check).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

OUTAGE_S = float(os.environ.get("STREAMDET_TEST_OUTAGE_S", "5"))
SECRET = "test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
             "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self._answers_ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text() if (self.directory / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log[-2000:]}")
            time.sleep(0.05)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis finishes its append-only file and exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(30)
        self._proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                               else None)
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(binary, directory)
    server.start()
    yield server
    server.stop()


@dataclass
class Received:
    key: str
    body: bytes
    signature: str
    attempt: str


@dataclass
class WebhookReceiver:
    """Records every POST to ``/hook``; answers ``status`` (200 by default)."""

    port: int = field(default_factory=free_port)
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.headers.get("Idempotency-Key", ""), await request.read(),
                                      request.headers.get("X-Streamdet-Signature", ""),
                                      request.headers.get("X-Streamdet-Attempt", "")))
        self._arrived.set()
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, keys: set[str], timeout: float = 60) -> None:
        """Until a request for every key in ``keys`` has arrived."""
        async def arrived() -> None:
            while not keys <= {r.key for r in self.requests}:
                self._arrived.clear()
                await self._arrived.wait()
        await asyncio.wait_for(arrived(), timeout)


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    await receiver.stop()


@pytest.fixture
def outage_s() -> float:
    """How long the outage tests keep Redis or the webhook receiver away (``STREAMDET_TEST_OUTAGE_S``)."""
    return OUTAGE_S
