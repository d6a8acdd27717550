"""ZeroMQ ingest: a PULL socket receiving protocol v1 frames (see ``streamdet.service.frames``).

Each frame's owner (``StreamOwner``) is its sender as ZeroMQ reports it: the CURVE public key
(ZAP ``User-Id``) when CURVE is on, else the peer's IP address (``Peer-Address``), narrowed by the
header's ``token`` when there is one. The registry binds a stream to its first frame's owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from streamdet.errors import ConfigError, ProtocolError
from streamdet.service.curve import make_server, require_auth_off_loopback
from streamdet.service.frames import MAX_HEADER_BYTES, parse_parts
from streamdet.service.ingest import IngestContext, IngestPlugin
from streamdet.service.owner import StreamOwner
from streamdet.service.settings import IngestSettings

if TYPE_CHECKING:
    from streamdet.service.settings import Settings

log = logging.getLogger(__name__)


def _property(frame: zmq.Frame, name: str) -> str:
    """A message property (``User-Id``, ``Peer-Address``), or "" where the transport has none."""
    try:
        return frame.get(name) or ""
    except zmq.ZMQError:  # EINVAL: not set (no ZAP handler, or an ipc/inproc peer)
        return ""


def sender_of(frame: zmq.Frame, curve: bool = True) -> str:
    """Who sent a message, as the transport vouches for it: ``curve:<key>``, else ``addr:<ip>``.
    ``curve`` False (the socket has no CURVE) skips the key lookup: without ZAP there is none, and
    asking costs a raised and caught ZMQError per frame."""
    user = _property(frame, "User-Id") if curve else ""
    if user:
        return f"curve:{user}"
    return f"addr:{_property(frame, 'Peer-Address') or 'local'}"


def _stream_id_hint(parts: list[bytes]) -> str:
    """A printable stream id for the log line of a frame too broken to parse."""
    if not parts:
        return "?"
    return parts[0][:64].decode("utf-8", "replace").encode("unicode_escape").decode("ascii") or "?"


class ZmqIngest:
    """Receives frames on ``settings.endpoint`` and pushes them into the registry."""

    name = "zmq"
    DRAIN_MAX = 256
    """Most frames handled per wake-up before yielding to the event loop."""
    DRAIN_MAX_BYTES = 1 << 20
    """Most bytes of frames handled per wake-up (at least one frame): 256 frames of 1 MiB kept the
    loop, and so /healthz, busy for seconds per turn."""
    COALESCE_S = 0.005
    """After emptying the queue, the ingest sleeps this long before waiting for frames again: at
    thousands of frames per second a wake-up per frame preempts the scoring threads thousands of
    times per second (each costs the model its caches); 5 ms of gathering costs a window nothing."""
    MAX_REMEMBERED = 4_096
    """Most owners kept for reuse (``_owner``); past it they are all forgotten."""

    def __init__(self, settings: IngestSettings, max_frame_bytes: int, max_inflight_bytes: int = 64 << 20) -> None:
        self.settings = settings
        self.max_frame_bytes = max_frame_bytes
        self.receive_hwm = settings.receive_hwm or max(1, max_inflight_bytes // max_frame_bytes)
        """Frames ZeroMQ queues per connected sender: set, or derived from the byte budget."""
        self.endpoint = settings.endpoint
        """The bound endpoint, with the actual port when a wildcard (``tcp://127.0.0.1:*``) was asked."""
        self._curve = settings.curve_secret_key is not None
        self._socket: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._ctx: IngestContext | None = None
        self._owners: dict[tuple[str, str | None], StreamOwner] = {}

    async def start(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        self._accepted = ctx.metrics.frames.labels(self.name)
        sock = ctx.zmq_context.socket(zmq.PULL)
        sock.rcvhwm = self.receive_hwm
        sock.linger = 0
        # A hard guard far above the counted limit: ZeroMQ drops a connection sending absurd
        # messages before allocating them; merely oversize frames reach us and are counted.
        sock.maxmsgsize = 4 * self.max_frame_bytes + MAX_HEADER_BYTES
        if self.settings.curve_secret_key is not None:
            make_server(sock, self.settings.curve_secret_key, domain="ingest")
        try:
            sock.bind(self.settings.endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise ConfigError(f"cannot bind ingest socket to {self.settings.endpoint}: {exc}") from exc
        self.endpoint = sock.last_endpoint.decode()
        self._socket = sock
        self._task = asyncio.create_task(self._receive(), name="streamdet-ingest-zmq")
        log.info("ZeroMQ ingest listening on %s%s", self.endpoint,
                 " (CURVE)" if self.settings.curve_secret_key else "")

    def curve_policy(self) -> tuple[str, Path | None] | None:
        if self.settings.curve_secret_key is None:
            return None
        return "ingest", self.settings.curve_clients_dir

    def describe(self) -> dict[str, Any]:
        return {"protocol": "zeromq", "endpoint": self.endpoint,
                "auth": "curve" if self.settings.curve_secret_key is not None else "none"}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._socket is not None:
            # Frames ZeroMQ already holds were sent before we stopped: handle them too.
            direct = zmq.Socket.shadow(self._socket.underlying)
            while self.drain(direct):
                pass
            self._socket.close()
            self._socket = None

    async def _receive(self) -> None:
        assert self._socket is not None
        # Wait asynchronously, then take what is already queued through the synchronous API:
        # an awaited recv costs a future and an event-loop round per frame, which adds up at
        # hundreds of frames per second. The caps (frames and bytes) keep the loop responsive to
        # the batcher and to HTTP.
        direct = zmq.Socket.shadow(self._socket.underlying)
        while True:
            await self._socket.poll(flags=zmq.POLLIN)
            if self.drain(direct) < self.DRAIN_MAX:
                # Let frames gather before the next wake-up rather than waking per frame.
                await asyncio.sleep(self.COALESCE_S)

    def drain(self, sock: zmq.Socket) -> int:
        """Handle the frames already queued on ``sock`` (at most ``DRAIN_MAX`` of them, and about
        ``DRAIN_MAX_BYTES``) without blocking; returns how many were handled. The accepted ones are
        counted once per drain: one prometheus ``inc`` (a lock) per frame was measurable."""
        budget = self.DRAIN_MAX_BYTES
        handled = accepted = 0
        try:
            while handled < self.DRAIN_MAX:
                try:
                    parts, sender = self._recv(sock)
                except zmq.Again:  # the queue is empty: once per drain, cheaper than asking EVENTS per frame
                    break
                handled += 1
                accepted += self._handle(parts, time.monotonic(), sender)
                budget -= sum(map(len, parts))
                if budget <= 0:
                    break
        finally:
            if accepted:
                self._accepted.inc(accepted)
        return handled

    def _recv(self, sock: zmq.Socket) -> tuple[list[bytes], str]:
        """One multipart message's parts and its sender (``sender_of``); raises zmq.Again when none
        is queued. Read part by part with ``Frame.more`` rather than ``recv_multipart``, which asks
        the socket for RCVMORE (an option lookup and an enum conversion) after every part."""
        # Frames, not bytes: only a frame carries its sender's metadata.
        frame = sock.recv(zmq.NOBLOCK, copy=False)
        sender = sender_of(frame, self._curve)
        parts = [frame.bytes]
        while frame.more:  # the rest of a multipart message is already there: ZeroMQ delivers it whole
            frame = sock.recv(zmq.NOBLOCK, copy=False)
            parts.append(frame.bytes)
        return parts, sender

    def handle(self, parts: list[bytes], arrival: float, sender: str | None = None) -> None:
        """Parse one multipart message and push it; any ProtocolError becomes a counted rejection.
        ``sender`` (``sender_of``) owns the streams it starts; None skips the ownership check."""
        if self._handle(parts, arrival, sender):
            self._accepted.inc()

    def _handle(self, parts: list[bytes], arrival: float, sender: str | None) -> bool:
        """``handle`` without counting the accepted frame: True when it was accepted."""
        assert self._ctx is not None
        stream_id = None
        try:
            stream_id, header, samples, clipped = parse_parts(parts, self.max_frame_bytes)
            if clipped:
                self._ctx.metrics.clipped_samples.labels(self.name).inc(clipped)
            self._ctx.registry.push(stream_id, samples, header["sample_rate"], header["channels"],
                                    seq=header["seq"], end=header.get("end", False), arrival=arrival,
                                    ingest=self.name, owner=None if sender is None else self._owner(sender, header))
        except ProtocolError as exc:
            self._ctx.rejects.report(_stream_id_hint(parts) if stream_id is None else stream_id, exc, self.name)
            return False
        except Exception:
            # A bug must cost one frame, not the receive loop that every stream shares.
            log.exception("frame of stream %s failed", _stream_id_hint(parts) if stream_id is None else stream_id)
            self._ctx.metrics.rejects.labels("internal_error").inc()
            return False
        return True

    def _owner(self, sender: str, header: dict[str, Any]) -> StreamOwner:
        """``StreamOwner(sender, token)``, one shared instance per pair: building a frozen dataclass
        per frame was measurable, and an owner is immutable, so sharing it changes nothing."""
        key = (sender, header.get("token"))
        owner = self._owners.get(key)
        if owner is None:
            owner = StreamOwner(*key)
            if len(self._owners) >= self.MAX_REMEMBERED:  # bounded: tokens are chosen by senders
                self._owners.clear()
            self._owners[key] = owner
        return owner


def create(section: IngestSettings, settings: Settings) -> ZmqIngest | None:
    if not section.enabled:
        return None
    require_auth_off_loopback(section.endpoint, section.curve_secret_key, section.allow_unauthenticated,
                              "ingest", "--ingest-curve-key", "start streams and have them scored")
    limits = settings.limits
    return ZmqIngest(section, limits.max_frame_bytes, limits.max_inflight_bytes)


PLUGIN = IngestPlugin("zmq", IngestSettings, create, section="ingest")
