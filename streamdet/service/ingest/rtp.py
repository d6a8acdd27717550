"""RTP ingest (RFC 3550/3551): call audio forked as RTP over UDP, one stream per source (SSRC).

Ports are named two ways: statically (``ports = {5004 = "call-a"}``) or per call over HTTP, as a
call platform's external-media request expects (``POST /rtp`` → a port; ``DELETE /rtp/<session>``
ends it). On each port RTCP is accepted multiplexed (RFC 5761) and, by default, on port + 1.

    POST   /rtp   {"stream_id": "call-1", "payload_types": {"111": "opus/48000/2"}}
           → 201 {"session": ..., "stream_id": ..., "host": ..., "port": N, "rtcp_port": N + 1 | null}
    DELETE /rtp/<session>  → 200: its streams end (tail windows scored), its port closes

A stream ends on RTCP BYE (``bye``), after ``idle_timeout_s`` without packets (``idle``), on
``DELETE`` (``end``) or at shutdown. The first source on a port is the stream named for the port;
another source while it lives is ``<name>.<ssrc as 8 hex digits>``. Packet fates are counted in
``streamdet_rtp_packets_total{result}``; malformed or unconfigured packets also in
``streamdet_ingest_rejects_total{reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from streamdet.errors import ConfigError, ProtocolError, RtpSessionError
from streamdet.service.frames import STREAM_ID_PATTERN
from streamdet.service.ingest import IngestContext, IngestPlugin
from streamdet.service.ingest.rtp_codecs import STATIC_PAYLOAD_TYPES, PayloadFormat, parse_format
from streamdet.service.ingest.rtp_packet import is_rtcp, parse_rtp, rtcp_bye_sources
from streamdet.service.ingest.rtp_settings import RtpSettings
from streamdet.service.ingest.rtp_source import ADAPTER, RtpSource, SourceOptions

log = logging.getLogger(__name__)

TICK_S = 0.02
"""How often jitter buffers are drained and timeouts checked."""
MAX_REQUEST_BYTES = 4_096


@dataclass(eq=False)
class RtpPort(asyncio.DatagramProtocol):
    """One bound port (and its RTCP companion): the stream name, formats and live sources."""

    ingest: RtpIngest
    name: str
    formats: dict[int, PayloadFormat]
    session: str | None = None
    port: int = 0
    rtcp_port: int | None = None
    sources: dict[int, RtpSource] = field(default_factory=dict)
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)
    last_packet: float = field(default_factory=time.monotonic)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.ingest.handle(self, data, time.monotonic())


class RtpIngest:
    name = ADAPTER

    def __init__(self, settings: RtpSettings) -> None:
        self.settings = settings
        self.ports: dict[int, RtpPort] = {}
        self.sessions: dict[str, RtpPort] = {}
        self._token = settings.token.get_secret_value().encode() if settings.token else None
        self._formats = {**STATIC_PAYLOAD_TYPES,
                         **{pt: parse_format(text) for pt, text in settings.payload_types.items()}}
        self._options = SourceOptions(settings.jitter_ms / 1000.0, settings.max_conceal_s)
        self._bye_grace_s = max(self._options.jitter_s, 2 * TICK_S)
        """How long a source lives on after its BYE, for packets sent before it but read after it
        (RTP and RTCP on different sockets, or reordered by the network)."""
        self._ctx: IngestContext | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._accepting = False

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        registry = ctx.metrics.registry
        self._packets = Counter("streamdet_rtp_packets", "RTP packets, by fate", ["result"], registry=registry)
        self._concealed = Counter("streamdet_rtp_concealed_seconds",
                                  "Silence inserted for RTP timestamp gaps (lost packets, CN, DTMF)",
                                  registry=registry)
        for port, name in self.settings.ports.items():
            await self._open_port(name, dict(self._formats), port)
        self._ticker = asyncio.create_task(self._tick(), name="streamdet-ingest-rtp")
        self._accepting = True

    async def stop(self) -> None:
        self._accepting = False
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for port in list(self.ports.values()):
            self._close_port(port, "shutdown")

    def describe(self) -> dict[str, Any]:
        static = ",".join(str(p) for p in self.settings.ports)
        return {"protocol": "rtp", "endpoint": f"udp://{self.settings.host}:{static or '<session port>'}",
                "sessions": "POST /rtp" if self.settings.sessions else "off",
                "auth": "bearer" if self._token else "none"}

    # --- packets ---------------------------------------------------------------------------------

    def handle(self, port: RtpPort, data: bytes, now: float) -> None:
        assert self._ctx is not None
        port.last_packet = now
        try:
            if is_rtcp(data):
                for ssrc in rtcp_bye_sources(data):
                    source = port.sources.get(ssrc)
                    if source is not None and source.bye_at is None:
                        source.bye_at = now  # ended by the ticker: packets sent before it may still be queued
                return
            packet = parse_rtp(data)
            if packet.payload_type not in port.formats:
                raise ProtocolError("rtp_payload_type",
                                    f"payload type {packet.payload_type} is not configured on port {port.port}")
            source = port.sources.get(packet.ssrc) or self._new_source(port, packet.ssrc, now)
        except ProtocolError as exc:
            self._packets.labels("rejected").inc()
            self._ctx.rejects.report(port.name, exc, ADAPTER)
            return
        except Exception:
            # A bug must cost one packet, not the port's receive path.
            log.exception("RTP packet on port %d failed", port.port)
            self._ctx.metrics.rejects.labels("internal_error").inc()
            return
        source.receive(packet, now)

    def _new_source(self, port: RtpPort, ssrc: int, now: float) -> RtpSource:
        assert self._ctx is not None
        if len(port.sources) >= self.settings.max_sources_per_port:
            raise ProtocolError("rtp_too_many_sources",
                                f"{len(port.sources)} sources already on port {port.port}")
        taken = {s.stream_id for s in port.sources.values()}
        stream_id = port.name if port.name not in taken else f"{port.name}.{ssrc:08x}"
        source = RtpSource(stream_id, ssrc, port.formats.get, self._ctx, self._options, self._count,
                           self._concealed.inc, now)
        port.sources[ssrc] = source
        log.info("RTP source %08x on port %d: stream %s", ssrc, port.port, stream_id)
        return source

    def _count(self, result: str, n: int) -> None:
        if n:
            self._packets.labels(result).inc(n)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for port in list(self.ports.values()):
                for ssrc, source in list(port.sources.items()):
                    if source.bye_at is not None and now - source.bye_at >= self._bye_grace_s:
                        del port.sources[ssrc]
                        source.finish("bye")
                    elif now - source.last_arrival >= self.settings.idle_timeout_s:
                        del port.sources[ssrc]
                        source.finish("idle")
                    else:
                        source.poll(now)
                if port.session is not None and now - port.last_packet >= self.settings.session_timeout_s:
                    log.info("RTP session %s (stream %s) silent for %.0f s: closing port %d", port.session[:8],
                             port.name, self.settings.session_timeout_s, port.port)
                    self._close_port(port, "idle")

    # --- ports -----------------------------------------------------------------------------------

    async def _open_port(self, name: str, formats: dict[int, PayloadFormat], port: int,
                         session: str | None = None) -> RtpPort:
        loop = asyncio.get_running_loop()
        state = RtpPort(self, name, formats, session)
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: state, local_addr=(self.settings.host, port))
        except OSError as exc:
            raise ConfigError(f"cannot bind RTP port {self.settings.host}:{port}: {exc}") from exc
        state.transports.append(transport)
        state.port = transport.get_extra_info("sockname")[1]
        if self.settings.receive_buffer_bytes:
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                                          self.settings.receive_buffer_bytes)
        if self.settings.rtcp_port and state.port < 65535 and state.port + 1 not in self.settings.ports:
            with contextlib.suppress(OSError):  # taken: RTCP can still come multiplexed
                rtcp, _ = await loop.create_datagram_endpoint(lambda: state,
                                                              local_addr=(self.settings.host, state.port + 1))
                state.transports.append(rtcp)
                state.rtcp_port = state.port + 1
        self.ports[state.port] = state
        if session is not None:
            self.sessions[session] = state
        log.info("RTP port %s:%d (RTCP %s) feeds stream %s", self.settings.host, state.port,
                 state.rtcp_port or "multiplexed", name)
        return state

    def _close_port(self, port: RtpPort, reason: str) -> None:
        for source in port.sources.values():
            source.finish(reason)
        port.sources.clear()
        for transport in port.transports:
            transport.close()
        self.ports.pop(port.port, None)
        if port.session is not None:
            self.sessions.pop(port.session, None)

    async def _open_session_port(self, name: str, formats: dict[int, PayloadFormat], session: str) -> RtpPort:
        if self.settings.session_ports is None:
            return await self._open_port(name, formats, 0, session)
        low, high = self.settings.session_ports
        for port in range(low + low % 2, high + 1, 2):  # even RTP ports, RTCP on the odd one above
            if port in self.ports:
                continue
            with contextlib.suppress(ConfigError):
                return await self._open_port(name, formats, port, session)
        raise RtpSessionError(503, "rtp_no_port", f"no free port in {low}-{high}")

    # --- HTTP sessions ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        if self.settings.sessions:
            app.router.add_route("POST", "/rtp", self.post)
            app.router.add_route("DELETE", "/rtp/{session}", self.delete)

    async def post(self, request: web.Request) -> web.Response:
        stream_id = "?"
        try:
            self._authorize(request)
            body = await self._read_json(request)
            stream_id = body.get("stream_id")
            if not isinstance(stream_id, str) or not STREAM_ID_PATTERN.fullmatch(stream_id):
                raise RtpSessionError(400, "bad_stream_id", "stream_id: 1-128 characters of [A-Za-z0-9._:@/-]")
            formats = dict(self._formats)
            requested = body.get("payload_types") or {}
            if not isinstance(requested, dict):
                raise RtpSessionError(400, "bad_payload_type", "payload_types: an object of type → format")
            for key, text in requested.items():
                try:
                    payload_type = int(key)
                    if not 96 <= payload_type <= 127 or not isinstance(text, str):
                        raise ValueError
                    formats[payload_type] = parse_format(text)
                except (ValueError, ConfigError) as exc:
                    raise RtpSessionError(400, "bad_payload_type", f"{key}: {text!r}: {exc}") from None
            assert self._ctx is not None
            if any(p.name == stream_id for p in self.ports.values()) or self._ctx.registry.get(stream_id):
                raise RtpSessionError(409, "duplicate_stream", f"stream {stream_id} is live or has a port")
            if len(self.sessions) >= self.settings.max_sessions:
                raise RtpSessionError(503, "max_sessions", f"{self.settings.max_sessions} RTP sessions open")
            session = secrets.token_urlsafe(12)
            port = await self._open_session_port(stream_id, formats, session)
        except RtpSessionError as exc:
            assert self._ctx is not None
            self._ctx.rejects.report(str(stream_id)[:128], exc, ADAPTER)
            return web.json_response({"error": exc.reason, "detail": exc.detail}, status=exc.status)
        host = self.settings.public_host or self.settings.host
        return web.json_response({"session": session, "stream_id": stream_id, "host": host,
                                  "port": port.port, "rtcp_port": port.rtcp_port}, status=201,
                                 headers={"Location": f"/rtp/{session}"})

    async def delete(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            port = self.sessions.get(request.match_info["session"])
            if port is None:
                raise RtpSessionError(404, "unknown_session", "no such RTP session (it may have ended already)")
        except RtpSessionError as exc:
            return web.json_response({"error": exc.reason, "detail": exc.detail}, status=exc.status)
        self._close_port(port, "end")
        return web.json_response({"stream_id": port.name, "port": port.port})

    def _authorize(self, request: web.Request) -> None:
        if not self._accepting:
            raise RtpSessionError(503, "shutting_down", "the service is not accepting RTP sessions")
        if self._token is None:
            return
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self._token):
            raise RtpSessionError(401, "unauthorized", "a valid bearer token is required")

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        raw = await request.content.read(MAX_REQUEST_BYTES + 1)
        if len(raw) > MAX_REQUEST_BYTES:
            raise RtpSessionError(413, "oversize", f"a request is at most {MAX_REQUEST_BYTES} bytes")
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RtpSessionError(400, "bad_json", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise RtpSessionError(400, "bad_json", "the body is not a JSON object")
        return body


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free at the moment (for tests that configure static ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def create(section: RtpSettings, settings: Any) -> RtpIngest | None:
    return RtpIngest(section) if section.enabled else None


PLUGIN = IngestPlugin("rtp", RtpSettings, create)
