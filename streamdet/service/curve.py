"""Optional ZeroMQ CURVE encryption and authentication for the ingest and event sockets.

Keys are ``zmq.auth`` certificate files: ``zmq.auth.create_certificates(dir, "server")`` writes
``server.key`` (public, give it to clients) and ``server.key_secret`` (keep it on the server).
A server socket with a secret key accepts only CURVE clients; with a clients directory, only the
clients whose public certificates are in it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

from streamdet.errors import ConfigError


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read CURVE certificate ({exc})") from exc
    if need_secret and not secret:
        raise ConfigError(f"{path}: not a secret certificate (expected the .key_secret file)")
    return public, secret


def make_server(socket: zmq.Socket, secret_key_file: Path, domain: str) -> None:
    """Turn ``socket`` into a CURVE server (before bind); ``domain`` names its ZAP policy."""
    public, secret = _load(secret_key_file, need_secret=True)
    socket.zap_domain = domain.encode()
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def make_client(socket: zmq.Socket, server_key_file: str | Path,
                client_secret_key_file: str | Path | None = None) -> None:
    """Turn ``socket`` into a CURVE client of the server whose public key is in ``server_key_file``
    (before connect); without a client certificate an ephemeral key pair is used."""
    server_public, _ = _load(Path(server_key_file), need_secret=False)
    if client_secret_key_file is not None:
        public, secret = _load(Path(client_secret_key_file), need_secret=True)
    else:
        public, secret = zmq.curve_keypair()
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public


def start_authenticator(context: zmq.Context, policies: dict[str, Path | None]) -> AsyncioAuthenticator:
    """One ZAP handler for the CURVE sockets of ``context``: per domain, the clients whose public
    certificates are in the directory given, or any client (None)."""
    for clients_dir in policies.values():
        if clients_dir is not None and not clients_dir.is_dir():
            raise ConfigError(f"{clients_dir}: CURVE clients directory does not exist")
    auth = AsyncioAuthenticator(context)
    auth.start()
    for domain, clients_dir in policies.items():
        auth.configure_curve(domain=domain,
                             location=str(clients_dir) if clients_dir else zmq.auth.CURVE_ALLOW_ANY)
    return auth


def is_local_endpoint(endpoint: str) -> bool:
    """True for endpoints only this host can reach: ``ipc://``, ``inproc://``, and TCP on a loopback
    address (``127.0.0.0/8``, ``::1``, ``localhost``). A wildcard or an interface name is not local."""
    transport, _, address = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name
        return False


def require_auth_off_loopback(endpoint: str, secret_key: Path | None, allow_unauthenticated: bool,
                              section: str, flag: str, risk: str) -> None:
    """Refuse to bind ``endpoint`` beyond loopback without CURVE, unless the operator opted out:
    ``risk`` says what anyone who reaches it could do."""
    if secret_key is not None or allow_unauthenticated or is_local_endpoint(endpoint):
        return
    env = f"STREAMDET_{section.upper()}__"
    raise ConfigError(
        f"{endpoint} is reachable from other hosts, but without {section}.curve_secret_key anyone who "
        f"reaches it can {risk}. Set it ({flag}, {env}CURVE_SECRET_KEY; docs/security.md), bind "
        f"127.0.0.1, or accept the risk with {section}.allow_unauthenticated = true "
        f"({env}ALLOW_UNAUTHENTICATED=true)")
