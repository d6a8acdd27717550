"""Real broadcast servers for the pull tests, on loopback and free ports, stopped afterwards:
icecast2 fed by ffmpeg, an HLS playlist written live by ffmpeg behind an aiohttp static server,
MPEG-TS over UDP from ffmpeg, and the broken ones (a 404 and a server that never answers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from aiohttp import web

ICECAST_CONFIG = """<icecast>
  <limits><clients>20</clients><sources>4</sources><source-timeout>10</source-timeout></limits>
  <authentication><source-password>{password}</source-password>
    <admin-user>admin</admin-user><admin-password>{password}</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>0</fileserve>
  <paths><logdir>{logdir}</logdir><webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot>{changeowner}</security>
</icecast>
"""


def need(*binaries: str) -> str | None:
    """The reason to skip when a binary is missing, else None."""
    missing = [b for b in binaries if shutil.which(b) is None]
    return f"not installed: {', '.join(missing)} (Debian packages ffmpeg, icecast2)" if missing else None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def icecast(workdir: Path) -> Iterator[tuple[int, str]]:
    """A running icecast2: (port, source password). As root it must drop to nobody (it refuses
    to run as root otherwise), so its log directory is one that nobody can reach and write
    (pytest's temporary directories are private to their owner)."""
    port, password = free_port(), "source-secret"
    logdir = Path(tempfile.mkdtemp(prefix="streamdet-icecast-"))
    os.chmod(logdir, 0o777)
    changeowner = "<changeowner><user>nobody</user><group>nogroup</group></changeowner>" if os.geteuid() == 0 else ""
    config = workdir / "icecast.xml"
    config.write_text(ICECAST_CONFIG.format(port=port, password=password, logdir=logdir, changeowner=changeowner))
    process = subprocess.Popen(["icecast2", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port, password
    finally:
        stop(process)
        shutil.rmtree(logdir, ignore_errors=True)


def ffmpeg(*args: str) -> subprocess.Popen:
    """ffmpeg reading its input in real time (``-re``)."""
    return subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-re", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.asynccontextmanager
async def static_server(directory: Path) -> AsyncIterator[int]:
    """HTTP files from ``directory`` (an HLS playlist and its segments); yields the port."""
    app = web.Application()
    app.router.add_static("/", directory)
    async with serve(app) as port:
        yield port


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def stalling_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never sends a byte; yields the port."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
