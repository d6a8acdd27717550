"""Asterisk AudioSocket ingest: a TCP server that Asterisk's ``AudioSocket()`` dialplan application
(or its channel driver) connects to, one connection per call.

Each message is kind (1 byte), payload length (2 bytes, big-endian), payload:

| kind        | payload                                   | here                                   |
| ----------- | ----------------------------------------- | -------------------------------------- |
| 0x00        | none: hang-up                             | the stream ends (``hangup``)            |
| 0x01        | 16-byte UUID of the call                  | names the stream (``<prefix><uuid>``)   |
| 0x03        | 1 ASCII byte: a DTMF digit                | counted, skipped                        |
| 0x10        | signed linear 16-bit LE, 8 kHz, mono      | pushed                                  |
| 0x11-0x18   | the same at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz | pushed                          |
| 0xff        | error code (Asterisk: 1 byte, bit flags)  | the stream ends (``error``)             |

The UUID must come first: audio before it is refused and the connection closed. A closed socket ends
the stream too (``disconnected``), as does ``idle_timeout_s`` without a message (``idle``). Malformed
messages (a UUID not 16 bytes, audio of an odd length, an unknown kind, a second UUID) are counted in
``streamdet_ingest_rejects_total``; only the first two and audio before the UUID close the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid
from typing import Any

import numpy as np
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from streamdet.errors import ConfigError, ProtocolError
from streamdet.service.ingest import IngestContext, IngestPlugin
from streamdet.service.owner import StreamOwner

log = logging.getLogger(__name__)

ADAPTER = "audiosocket"
KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_ERROR = 0x00, 0x01, 0x03, 0xFF
AUDIO_RATES = {0x10: 8_000, 0x11: 12_000, 0x12: 16_000, 0x13: 24_000, 0x14: 32_000, 0x15: 44_100,
               0x16: 48_000, 0x17: 96_000, 0x18: 192_000}
KIND_NAMES = {KIND_HANGUP: "hangup", KIND_UUID: "uuid", KIND_DTMF: "dtmf", KIND_ERROR: "error",
              **{kind: "audio" for kind in AUDIO_RATES}}


class AudioSocketSettings(BaseModel):
    """``[ingests.audiosocket]``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=0, le=65535)
    idle_timeout_s: float = Field(5.0, gt=0)
    """A connection silent this long is closed and its stream ended."""
    max_connections: int = Field(256, ge=1)
    stream_prefix: str = Field("", pattern=r"^[A-Za-z0-9._:@/-]{0,64}$")
    """Prepended to the call's UUID to make the stream id (e.g. ``asterisk/``)."""


CLOSING_REASONS = {"audiosocket_bad_uuid", "audiosocket_no_uuid", "duplicate_stream"}
"""Refusals after which the connection's messages cannot be attributed to a stream: it is closed."""


def message(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message (for tests and senders)."""
    return struct.pack("!BH", kind, len(payload)) + payload


class AudioSocketIngest:
    name = ADAPTER

    def __init__(self, settings: AudioSocketSettings) -> None:
        self.settings = settings
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._live: set[str] = set()
        self._ctx: IngestContext | None = None

    async def start(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        self._messages = Counter("streamdet_audiosocket_messages", "AudioSocket messages received, by kind",
                                 ["kind"], registry=ctx.metrics.registry)
        self._accepted = ctx.metrics.frames.labels(ADAPTER)
        try:
            self._server = await asyncio.start_server(self._serve, self.settings.host, self.settings.port)
        except OSError as exc:
            raise ConfigError(f"cannot bind AudioSocket to {self.settings.host}:{self.settings.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("AudioSocket ingest listening on %s:%d", self.settings.host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()
        self._server = None

    def describe(self) -> dict[str, Any]:
        return {"protocol": "audiosocket", "endpoint": f"tcp://{self.settings.host}:{self.port}"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._ctx is not None
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.settings.max_connections:
            self._ctx.rejects.report("?", ProtocolError("max_connections", "AudioSocket connections"), ADAPTER)
            writer.close()
            return
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        call = _Call(self, reader, StreamOwner(f"audiosocket:{peer[0] if peer else '?'}", f"{id(task):x}"))
        reason = "shutdown"
        try:
            reason = await call.run()
        finally:
            self._connections.discard(task)
            if call.stream_id is not None:
                self._live.discard(call.stream_id)
                self._ctx.registry.end(call.stream_id, reason, owner=call.owner)
            writer.close()


class _Call:
    """One connection's messages, read until it ends; ``run`` returns the end reason."""

    def __init__(self, ingest: AudioSocketIngest, reader: asyncio.StreamReader, owner: StreamOwner) -> None:
        self.ingest = ingest
        self.reader = reader
        self.owner = owner
        """This connection: a stream of the same id from elsewhere (another ingest) is not its to feed."""
        self.stream_id: str | None = None

    async def run(self) -> str:
        ingest = self.ingest
        ctx = ingest._ctx
        assert ctx is not None
        while True:
            try:
                header = await asyncio.wait_for(self.reader.readexactly(3), ingest.settings.idle_timeout_s)
                kind, length = struct.unpack("!BH", header)
                payload = await asyncio.wait_for(self.reader.readexactly(length), ingest.settings.idle_timeout_s)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    ctx.rejects.report(self.stream_id or "?", ProtocolError(
                        "audiosocket_truncated", f"connection closed inside a message ({len(exc.partial)} bytes)"),
                        ADAPTER)
                return "disconnected"
            except TimeoutError:
                return "idle"
            ingest._messages.labels(KIND_NAMES.get(kind, "unknown")).inc()
            try:
                if kind == KIND_HANGUP:
                    return "hangup"
                if kind == KIND_ERROR:
                    log.warning("AudioSocket stream %s: error from the sender (code %s)", self.stream_id,
                                payload.hex() or "none")
                    return "error"
                self._handle(kind, payload)
            except ProtocolError as exc:
                ctx.rejects.report(self.stream_id or "?", exc, ADAPTER)
                if exc.reason in CLOSING_REASONS:
                    return "rejected"

    def _handle(self, kind: int, payload: bytes) -> None:
        ingest = self.ingest
        assert ingest._ctx is not None
        if kind == KIND_UUID:
            if len(payload) != 16:
                raise ProtocolError("audiosocket_bad_uuid", f"a UUID is 16 bytes, got {len(payload)}")
            if self.stream_id is not None:
                raise ProtocolError("audiosocket_uuid_repeated", "the call already has its UUID")
            stream_id = ingest.settings.stream_prefix + str(uuid.UUID(bytes=payload))
            if stream_id in ingest._live:
                raise ProtocolError("duplicate_stream", f"stream {stream_id} is already connected")
            ingest._live.add(stream_id)
            self.stream_id = stream_id
            log.info("AudioSocket call %s connected", stream_id)
        elif kind in AUDIO_RATES:
            if self.stream_id is None:
                raise ProtocolError("audiosocket_no_uuid", "audio before the UUID message")
            if len(payload) % 2:
                raise ProtocolError("audiosocket_audio_size", f"{len(payload)} bytes is not 16-bit samples")
            samples = np.frombuffer(payload, dtype="<i2").astype(np.float32).reshape(-1, 1) / np.float32(32768.0)
            ingest._ctx.registry.push(self.stream_id, samples, AUDIO_RATES[kind], 1, ingest=ADAPTER, owner=self.owner)
            ingest._accepted.inc()
        elif kind != KIND_DTMF:
            raise ProtocolError("audiosocket_unknown_kind", f"message kind 0x{kind:02x}")


def create(section: AudioSocketSettings, settings: Any) -> AudioSocketIngest | None:
    return AudioSocketIngest(section) if section.enabled else None


PLUGIN = IngestPlugin("audiosocket", AudioSocketSettings, create)
