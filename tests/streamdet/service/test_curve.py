"""CURVE on the ingest and event sockets, with keys generated on the spot, over loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq.auth

from streamdet.client import Sender, Subscriber


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    clients = tmp_path / "clients"
    clients.mkdir()
    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    allowed_public, allowed_secret = zmq.auth.create_certificates(tmp_path, "allowed")
    _, stranger_secret = zmq.auth.create_certificates(tmp_path, "stranger")
    Path(allowed_public).rename(clients / "allowed.key")
    return {"server_public": Path(server_public), "server_secret": Path(server_secret), "clients": clients,
            "allowed": Path(allowed_secret), "stranger": Path(stranger_secret)}


async def curve_service(start_service, kit, keys, clients_dir=None):
    section = {"curve_secret_key": keys["server_secret"], "curve_clients_dir": clients_dir}
    return await start_service(kit.FakeScorer(0.1), ingest=dict(section), alerts=dict(section))


async def test_curve_clients_send_and_subscribe(kit, start_service, keys) -> None:
    service = await curve_service(start_service, kit, keys)
    async with Subscriber(service.events_endpoint, ["alert."], server_key=keys["server_public"]) as sub:
        await sub.wait_connected()
        async with Sender(service.ingest_endpoint, server_key=keys["server_public"]) as sender:
            await sender.send_array("secret-call", kit.tone(5.0), 16000)
        event = await sub.recv(timeout=20)
    assert (event.event, event.stream_id) == ("raised", "secret-call")


async def test_plain_sender_is_not_heard(kit, start_service, keys) -> None:
    service = await curve_service(start_service, kit, keys)
    sender = Sender(service.ingest_endpoint)
    try:
        # The handshake never succeeds, so the PUSH socket may have no peer and wait for one.
        await asyncio.wait_for(sender.send_array("plain", kit.tone(0.5), 16000), 2)
    except TimeoutError:
        pass
    await asyncio.sleep(0.3)
    assert service.active_streams == 0 and service.registry.get("plain") is None
    await sender.close(linger_s=0)


async def test_clients_directory_admits_only_known_clients(kit, start_service, keys) -> None:
    service = await curve_service(start_service, kit, keys, clients_dir=keys["clients"])
    listener = service.listen()
    for who in ("stranger", "allowed"):
        sender = Sender(service.ingest_endpoint, server_key=keys["server_public"], client_secret_key=keys[who])
        try:  # the stranger's handshake is denied: its socket may wait for a peer forever
            await asyncio.wait_for(sender.send_array(who, kit.tone(0.5), 16000), 5)
        except TimeoutError:
            assert who == "stranger"
        await sender.close(linger_s=0.5)
    assert (await listener.get(10)).stream_id == "allowed"
    assert service.registry.get("stranger") is None


async def test_send_with_the_wrong_server_key_fails_in_one_line(kit, start_service, keys, tmp_path: Path) -> None:
    """The service drops a handshake it cannot decrypt; the client says so instead of waiting forever."""
    import os
    import sys

    import numpy as np
    import soundfile as sf

    service = await curve_service(start_service, kit, keys)
    wrong_public, _ = zmq.auth.create_certificates(tmp_path, "not-the-server")
    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "send", str(tmp_path / "a.wav"), "--endpoint", service.ingest_endpoint,
        "--server-key", wrong_public, "--timeout", "20",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and stdout == b""
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "CURVE handshake" in lines[0] and "--server-key" in lines[0], lines
    assert service.active_streams == 0


async def test_refused_handshakes_are_reported_not_waited_on(kit, start_service, keys) -> None:
    from streamdet.errors import ConnectError

    service = await curve_service(start_service, kit, keys, clients_dir=keys["clients"])
    for options, message in (({}, "it may require CURVE"),
                             ({"server_key": keys["server_public"], "client_secret_key": keys["stranger"]},
                              "refused this client's CURVE key")):
        sender = Sender(service.ingest_endpoint, **options)
        with pytest.raises(ConnectError, match=message):
            await sender.wait_connected(timeout=20)
        await sender.close(linger_s=0)
    allowed = Sender(service.ingest_endpoint, server_key=keys["server_public"], client_secret_key=keys["allowed"])
    await allowed.wait_connected(timeout=20)
    await allowed.close(linger_s=0)


@pytest.mark.parametrize(("endpoint", "local"), [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.0.0.2:*", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/streamdet.sock", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://eth0:5555", False),
    ("tcp://10.1.2.3:5555", False), ("tcp://[::]:5555", False),
])
def test_only_loopback_ipc_and_inproc_endpoints_are_local(endpoint: str, local: bool) -> None:
    from streamdet.service.curve import is_local_endpoint

    assert is_local_endpoint(endpoint) is local


@pytest.mark.parametrize("section", ["ingest", "alerts"])
def test_an_open_zeromq_socket_off_loopback_without_curve_is_refused_unless_allowed(
        section: str, kit, keys) -> None:
    """The Docker images bind 0.0.0.0: without a key the service says why it will not start, and how."""
    from streamdet.errors import ConfigError
    from streamdet.service.server import Service
    from streamdet.service.settings import load_settings

    def service(**extra):
        overrides = kit.loopback_overrides(**{section: {"endpoint": "tcp://0.0.0.0:0", **extra}})
        return Service(load_settings(None, overrides), kit.FakeScorer())

    with pytest.raises(ConfigError, match=rf"{section}\.curve_secret_key.*{section}\.allow_unauthenticated"):
        service()
    service(allow_unauthenticated=True)
    service(curve_secret_key=keys["server_secret"])
