"""Media-stream WebSocket ingest: call audio forked over WebSockets, on the service's HTTP port.

- ``GET /media-stream`` (``path``): the Twilio Media Streams JSON dialect;
- ``GET /audio-fork`` (``fork_path``): a JSON ``start`` then binary 16-bit PCM (mod_audio_fork);

(messages: ``media_ws_messages``). A call's tracks are separate streams, ``<call>/inbound`` and
``<call>/outbound``. The service's alert events for them (``raised``, ``cleared``, ``ended``), and
each stream's ``end``, go back on the same socket as JSON text messages (``send_alerts``).

A call ends with ``stop`` (reason ``end``; the socket stays open until the call's ``end`` events
are sent, then the service closes it), when the peer closes the socket (``closed``), after
``idle_timeout_s`` without a message (``idle_timeout``), or when the service stops (``shutdown``).
A ``start`` without the required token closes the socket (1008). Settings: ``[ingests.media_ws]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from dataclasses import asdict
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from streamdet.errors import ProtocolError
from streamdet.service.events import EndEvent, WindowEvent
from streamdet.service.ingest import IngestContext, IngestPlugin
from streamdet.service.ingest import media_ws_messages as msgs
from streamdet.service.owner import StreamOwner
from streamdet.service.publisher import EventListener

log = logging.getLogger(__name__)


class MediaWsSettings(BaseModel):
    """``[ingests.media_ws]``: the media-stream WebSocket ingest (needs ``http``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    path: str = "/media-stream"
    """Route of the Twilio Media Streams dialect."""
    fork_path: str = "/audio-fork"
    """Route of the binary audio-fork dialect."""
    token: SecretStr | None = None
    """Required token: ``Authorization: Bearer``, ``?token=``, or in ``start`` (Twilio
    ``customParameters.token``, fork ``token``); None = no authentication."""
    send_alerts: bool = True
    """Send the call's alert and end events back on its socket."""
    idle_timeout_s: float = Field(10.0, gt=0)
    """A socket with no message for this long is closed and its streams ended."""
    stop_linger_s: float = Field(15.0, gt=0)
    """After ``stop``, how long the socket waits for the call's ``end`` events before closing."""
    max_connections: int = Field(256, ge=1)
    max_message_bytes: int = Field(1 << 20, ge=1024)
    coalesce_ms: float = Field(100.0, ge=0)
    """Audio of a track is pushed to the registry once this much has arrived (Twilio sends 20 ms
    per message): fewer, larger pushes at a latency cost of at most this much."""


class _Call:
    """One socket's call: its tracks' pending audio and the streams it opened."""

    def __init__(self, start: msgs.CallStart, coalesce_ms: float) -> None:
        self.start = start
        self.streams: set[str] = set()
        self._pending: dict[str, list[np.ndarray]] = {}
        self._pending_frames: dict[str, int] = {}
        self._first_arrival: dict[str, float] = {}
        self._coalesce = int(start.sample_rate * coalesce_ms / 1000.0)

    def stream_id(self, track: str) -> str:
        return f"{self.start.call_id}/{track}"

    def add(self, track: str, samples: np.ndarray, arrival: float) -> bool:
        """Buffer ``samples``; True when the track has enough to push."""
        self._pending.setdefault(track, []).append(samples)
        self._first_arrival.setdefault(track, arrival)
        self._pending_frames[track] = self._pending_frames.get(track, 0) + len(samples)
        return self._pending_frames[track] >= self._coalesce

    def take(self, track: str) -> tuple[np.ndarray, float] | None:
        chunks = self._pending.pop(track, None)
        self._pending_frames.pop(track, None)
        arrival = self._first_arrival.pop(track, time.monotonic())
        if not chunks:
            return None
        return (chunks[0] if len(chunks) == 1 else np.concatenate(chunks)), arrival

    def tracks_pending(self) -> list[str]:
        return list(self._pending)


class MediaWsIngest:
    name = "media_ws"

    def __init__(self, settings: MediaWsSettings) -> None:
        self.settings = settings
        self._ctx: IngestContext | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._connections: Gauge | None = None

    # --- IngestAdapter ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(self.settings.path, self._twilio)
        app.router.add_get(self.settings.fork_path, self._fork)

    async def start(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        self._accepted = ctx.metrics.frames.labels(self.name)
        self._connections = Gauge("streamdet_media_ws_connections", "Media-stream WebSockets open",
                                  registry=ctx.metrics.registry)

    async def stop(self) -> None:
        self._stopping = True
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"service stopping")
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 5.0)

    def describe(self) -> dict[str, Any]:
        return {"protocol": "media-ws", "endpoint": f"{self.settings.path} {self.settings.fork_path}",
                "auth": "token" if self.settings.token is not None else "none"}

    # --- connections -----------------------------------------------------------------------------

    async def _twilio(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, fork=False)

    async def _fork(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, fork=True)

    def _reject(self, stream_id: str, exc: ProtocolError) -> None:
        assert self._ctx is not None
        self._ctx.rejects.report(stream_id, exc, self.name)

    def _token_ok(self, given: str | None) -> bool:
        expected = self.settings.token
        return expected is None or (given is not None and hmac.compare_digest(
            given.encode(), expected.get_secret_value().encode()))

    async def _serve(self, request: web.Request, fork: bool) -> web.StreamResponse:
        assert self._ctx is not None
        if self._stopping:
            raise web.HTTPServiceUnavailable(text="the service is stopping")
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.query.get("token")
        if given is not None and not self._token_ok(given):
            self._reject("-", ProtocolError("unauthorized", "wrong token"))
            raise web.HTTPUnauthorized(text="wrong token")
        if len(self._sockets) >= self.settings.max_connections:
            self._reject("-", ProtocolError("max_connections", f"{self.settings.max_connections} sockets open"))
            raise web.HTTPServiceUnavailable(text="too many media-stream connections")
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_message_bytes, autoping=True)
        await ws.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._sockets.add(ws)
        self._handlers.add(task)
        assert self._connections is not None
        self._connections.inc()
        connection = _Connection(self, ws, fork, authorized=given is not None or self.settings.token is None,
                                 remote=request.remote or "")
        try:
            await connection.run()
        finally:
            self._sockets.discard(ws)
            self._handlers.discard(task)
            self._connections.dec()
        return ws


class _Connection:
    """One WebSocket: reads messages, feeds the registry, sends the call's events back."""

    def __init__(self, ingest: MediaWsIngest, ws: web.WebSocketResponse, fork: bool, authorized: bool,
                 remote: str = "") -> None:
        assert ingest._ctx is not None
        self.owner = StreamOwner(f"ws:{remote}", secrets.token_hex(8))
        """The call's streams are this socket's: another socket with the same call id cannot feed them."""
        self.ingest = ingest
        self.ctx = ingest._ctx
        self.settings = ingest.settings
        self.ws = ws
        self.fork = fork
        self.authorized = authorized
        self.call: _Call | None = None
        self._sender: asyncio.Task[None] | None = None
        self._ended: set[str] = set()
        self._all_ended = asyncio.Event()
        self.stopped = False
        self.refused = False

    @property
    def label(self) -> str:
        return self.call.start.call_id if self.call else "-"

    async def run(self) -> None:
        reason = "closed"
        try:
            while True:
                try:
                    message = await self.ws.receive(timeout=self.settings.idle_timeout_s)
                except TimeoutError:
                    reason = "idle_timeout"
                    self.ingest._reject(self.label, ProtocolError("idle_timeout", "no message on the socket"))
                    break
                if message.type == WSMsgType.TEXT:
                    self._on_text(message.data)
                elif message.type == WSMsgType.BINARY:
                    self._on_binary(message.data)
                elif message.type == WSMsgType.ERROR:
                    self.ingest._reject(self.label, ProtocolError("socket_error", str(self.ws.exception())))
                    break
                else:  # CLOSE, CLOSING, CLOSED
                    break
                if self.stopped:
                    reason = "end"
                    break
                if self.refused:
                    reason = "unauthorized"
                    break
                if self.ws.closed:
                    break
        finally:
            if self.ingest._stopping and reason == "closed":
                reason = "shutdown"  # the service closed the socket
            self._end_call(reason)
            if reason == "end" and self.call is not None and self._sender is not None:
                # Let the call's last events (the tail window, end) reach the peer, then close.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._all_ended.wait(), self.settings.stop_linger_s)
            if self._sender is not None:
                self._sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sender
            if not self.ws.closed:
                # 1008 (policy violation) for a refused token; 1000 (normal) otherwise.
                await self.ws.close(code=1008 if self.refused else 1000, message=reason.encode())

    # --- inbound messages ------------------------------------------------------------------------

    def _on_text(self, text: str) -> None:
        try:
            message = msgs.parse_json(text)
            event = message["event"]
            if event == "start":
                self._on_start(msgs.fork_start(message) if self.fork else msgs.twilio_start(message))
            elif event == "stop":  # ends the call, or a socket whose start was refused
                self.stopped = True
            elif self.fork:
                raise ProtocolError("unknown_event", f"event {event[:40]!r} (audio fork: start, stop)")
            elif event == "media":
                if self.call is None:
                    raise ProtocolError("media_before_start", "media before start")
                track, samples = msgs.twilio_media(message, self.call.start)
                self._feed(track, samples)
            elif event not in msgs.TWILIO_EVENTS:
                raise ProtocolError("unknown_event", f"event {event[:40]!r}")
            # connected, mark and dtmf carry nothing to score
        except ProtocolError as exc:
            self.ingest._reject(self.label, exc)

    def _on_binary(self, data: bytes) -> None:
        try:
            if not self.fork:
                raise ProtocolError("unexpected_binary", "binary message on the JSON (Twilio) route")
            if self.call is None:
                raise ProtocolError("media_before_start", "binary audio before the start message")
            for track, samples in msgs.fork_frame(data, self.call.start).items():
                self._feed(track, samples)
        except ProtocolError as exc:
            self.ingest._reject(self.label, exc)

    def _on_start(self, start: msgs.CallStart) -> None:
        if self.call is not None:
            raise ProtocolError("duplicate_start", f"call {self.call.start.call_id} already started")
        if not self.authorized:
            if not self.ingest._token_ok(start.token):
                self.refused = True  # the socket is closed: nothing more from this peer is read
                raise ProtocolError("unauthorized", "no valid token in the header, query or start message")
            self.authorized = True
        self.call = _Call(start, self.settings.coalesce_ms)
        log.info("media-ws call %s started: %d Hz, tracks %s", start.call_id, start.sample_rate,
                 ",".join(start.tracks))
        if self.settings.send_alerts and self.ctx.publisher is not None:
            # Listen before any audio is pushed, so that no event of the call can be missed.
            listeners = (self.ctx.publisher.listen(f"alert.{start.call_id}/"),
                         self.ctx.publisher.listen(f"score.{start.call_id}/"))
            self._sender = asyncio.create_task(self._send_events(*listeners),
                                               name=f"streamdet-media-ws-{start.call_id}")

    def _feed(self, track: str, samples: np.ndarray) -> None:
        assert self.call is not None
        if self.call.add(track, samples, time.monotonic()):
            self._push(track)

    def _push(self, track: str, end: bool = False) -> None:
        assert self.call is not None
        taken = self.call.take(track)
        stream_id = self.call.stream_id(track)
        if taken is None:
            return
        samples, arrival = taken
        try:
            self.ctx.registry.push(stream_id, samples, self.call.start.sample_rate, 1, arrival=arrival,
                                   ingest=self.ingest.name, owner=self.owner)
        except ProtocolError as exc:
            self.ingest._reject(stream_id, exc)
            return
        self.call.streams.add(stream_id)
        self.ingest._accepted.inc()

    def _end_call(self, reason: str) -> None:
        if self.call is None:
            return
        for track in self.call.tracks_pending():
            self._push(track)
        for stream_id in self.call.streams:
            self.ctx.registry.end(stream_id, reason, owner=self.owner)
        if not self.call.streams:
            self._all_ended.set()

    # --- outbound events -------------------------------------------------------------------------

    async def _send_events(self, alerts: EventListener, ends: EventListener) -> None:
        """Forward the call's alert events, and each stream's ``end``, to the peer."""
        try:
            async def forward(listener: EventListener, only_end: bool) -> None:
                async for event in listener:
                    if only_end and event.event != "end":
                        continue
                    await self._send(event)
                    if event.event == "end":
                        self._ended.add(event.stream_id)
                        if self.call is not None and self.stopped and self._ended >= self.call.streams:
                            self._all_ended.set()

            await asyncio.gather(forward(alerts, False), forward(ends, True))
        finally:
            alerts.close()
            ends.close()

    async def _send(self, event: WindowEvent | EndEvent) -> None:
        assert self.call is not None
        kind = "streamdet.end" if event.event == "end" else "streamdet.alert"
        track = event.stream_id.rsplit("/", 1)[-1]
        message: dict[str, Any] = {"event": kind, "stream_id": event.stream_id, "track": track,
                                   "streamdet": asdict(event)}
        if self.call.start.stream_sid:
            message["streamSid"] = self.call.start.stream_sid
        with contextlib.suppress(ConnectionError, RuntimeError):
            if not self.ws.closed:
                await self.ws.send_json(message)


def create(section: MediaWsSettings, settings: Any) -> MediaWsIngest | None:
    return MediaWsIngest(section) if section.enabled and settings.http.enabled else None


PLUGIN = IngestPlugin("media_ws", MediaWsSettings, create)
