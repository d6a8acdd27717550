"""Send audio to ``streamdet serve`` over ZeroMQ (protocol v1, see docs/protocol.md).

    result = send_file("call.wav", "tcp://127.0.0.1:5555", speed=1.0)      # real time
    await send_file_async("call.wav", endpoint, stream_id="call-42")      # inside asyncio

    async with Sender(endpoint) as sender:                               # lower level: any array
        await sender.wait_connected(timeout=10)   # optional: ConnectError if refused or not there
        await sender.send_array("mic-1", samples, 16_000, speed=1.0)

Files are sent at their native rate and channel count (the service mixes down and resamples);
``fmt="auto"`` sends s16le for 16-bit PCM files (lossless, half the bytes) and f32le otherwise.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from streamdet.audio import decode, to_mono
from streamdet.errors import ConnectError
from streamdet.service.curve import make_client
from streamdet.service.frames import CHANNELS, encode_frame

DEFAULT_INGEST = "tcp://127.0.0.1:5555"

_HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | \
    zmq.EVENT_HANDSHAKE_FAILED_AUTH

_MORE_NOWAIT, _NOWAIT = int(zmq.SNDMORE | zmq.NOBLOCK), int(zmq.NOBLOCK)

FrameCallback = Callable[[str, int, int, float], None]
"""Called after each frame is handed to ZeroMQ: (stream_id, seq, end sample (native rate), monotonic time)."""


@dataclass(frozen=True)
class SendResult:
    stream_id: str
    frames: int
    samples: int
    sample_rate: int
    channels: int
    format: str

    @property
    def duration(self) -> float:
        return self.samples / self.sample_rate


def stream_id_for(path: str | Path) -> str:
    """A valid stream id from a file name, with a short random suffix so reruns do not collide."""
    stem = re.sub(r"[^A-Za-z0-9._:@/-]", "_", Path(path).stem)[:100] or "stream"
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def file_format(path: str | Path) -> str:
    """``s16le`` for 16-bit PCM files (sent losslessly), ``f32le`` for anything else."""
    try:
        return "s16le" if sf.info(str(path)).subtype == "PCM_16" else "f32le"
    except (sf.LibsndfileError, RuntimeError):
        return "f32le"  # decoded by PyAV to float


class Sender:
    """One PUSH socket that can carry any number of streams (use one per event loop)."""

    def __init__(self, endpoint: str = DEFAULT_INGEST, *, server_key: str | Path | None = None,
                 client_secret_key: str | Path | None = None, context: zmq.asyncio.Context | None = None,
                 send_hwm: int = 1_000) -> None:
        self.endpoint = endpoint
        self._own_context = context is None
        self._context = context or zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.sndhwm = send_hwm
        self._curve = server_key is not None
        if server_key is not None:
            make_client(self._socket, server_key, client_secret_key)
        # A PUSH socket queues frames until a peer appears and retries a refused handshake forever
        # without a word; the monitor lets wait_connected tell the caller instead.
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | _HANDSHAKE_FAILED)
        self._connected = False
        self._nowait = zmq.Socket.shadow(self._socket.underlying)
        """The same socket, blocking API: a send that cannot wait (NOBLOCK) needs no asyncio future."""
        self._socket.connect(endpoint)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until the connection and its (CURVE) handshake are up. Raises ``ConnectError`` when the
        service refuses the handshake, or nothing answers within ``timeout`` seconds."""
        if self._connected:
            return

        async def handshake() -> int:
            while True:
                event = (await recv_monitor_message(self._monitor))["event"]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED or event & _HANDSHAKE_FAILED:
                    return event

        try:
            event = await asyncio.wait_for(handshake(), timeout)
        except TimeoutError:
            raise ConnectError(f"no connection to the service at {self.endpoint} within {timeout:g} s; "
                               "is streamdet serve running there?") from None
        if event != zmq.EVENT_HANDSHAKE_SUCCEEDED:
            raise ConnectError(self._refusal(event))
        self._connected = True

    def _refusal(self, event: int) -> str:
        where = f"the service at {self.endpoint}"
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (f"{where} refused this client's CURVE key: its public certificate must be in the "
                    "service's clients directory (--client-key names the secret one)")
        if not self._curve:
            return f"{where} refused the handshake: it may require CURVE (--server-key)"
        return (f"the CURVE handshake with {where} failed: is --server-key the service's public "
                "certificate, and does the service use CURVE?")

    async def send_frame(self, stream_id: str, seq: int, samples: np.ndarray, sample_rate: int,
                         fmt: str = "s16le", *, end: bool = False, ts: float | None = None,
                         token: str | None = None) -> None:
        """Send one frame; waits only if ZeroMQ's send queue is full (the service is not keeping up
        or not there). ``token``: the stream's secret (docs/protocol.md, "Who owns a stream")."""
        await self._socket.send_multipart(encode_frame(stream_id, seq, samples, sample_rate, fmt, end, ts, token))

    async def send_encoded(self, parts: list[bytes]) -> None:
        """Send one frame already encoded (``encode_frame``'s parts): handed to ZeroMQ at once when its
        send queue has room, without a future or a turn of the event loop (a load client sends
        thousands a second), else waits like ``send_frame``. Await each before the next: a send still
        waiting would be overtaken."""
        send = self._nowait.send
        try:
            send(parts[0], _MORE_NOWAIT)
        except zmq.Again:  # the queue is full: wait for room, as send_frame does
            await self._socket.send_multipart(parts)
            return
        # Part by part with plain int flags (send_multipart combines enum flags per part, a cost
        # here). Only a message's first part can find the queue full, so the rest go through.
        for part in parts[1:-1]:
            send(part, _MORE_NOWAIT)
        send(parts[-1], _NOWAIT)

    async def send_array(self, stream_id: str, samples: np.ndarray, sample_rate: int, *, fmt: str = "f32le",
                         speed: float | None = None, chunk_ms: float = 20.0,
                         on_frame: FrameCallback | None = None) -> SendResult:
        """Send float32 (frames, channels) or (frames,) audio as one stream, then end it.

        ``speed`` 1.0 paces frames in real time (a frame leaves once its last sample would have
        been captured), 2.0 twice as fast; None sends as fast as the service takes them. Every frame
        carries one random token, so that no other sender on the same address can feed or end it.
        """
        token = secrets.token_urlsafe(16)
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2 and samples.shape[1] not in CHANNELS:
            samples, fmt = to_mono(samples), "f32le"  # the protocol carries 1 or 2 channels
        channels = 1 if samples.ndim == 1 else samples.shape[1]
        chunk = max(1, round(sample_rate * chunk_ms / 1000.0))
        start = time.monotonic()
        seq = 0
        for seq, offset in enumerate(range(0, len(samples), chunk)):
            end = min(offset + chunk, len(samples))
            if speed is not None:
                delay = start + end / sample_rate / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.send_frame(stream_id, seq, samples[offset:end], sample_rate, fmt,
                                  end=end == len(samples), ts=time.time(), token=token)
            if on_frame is not None:
                on_frame(stream_id, seq, end, time.monotonic())
        frames = seq + 1
        if len(samples) == 0:  # nothing to carry: a bare end-of-stream marker
            await self.send_frame(stream_id, 0, samples.reshape(0, channels), sample_rate, fmt, end=True,
                                  token=token)
        return SendResult(stream_id, frames, len(samples), sample_rate, channels, fmt)

    async def send_file(self, path: str | Path, stream_id: str | None = None, *, fmt: str = "auto",
                        speed: float | None = None, chunk_ms: float = 20.0,
                        on_frame: FrameCallback | None = None) -> SendResult:
        """Decode ``path`` (native rate and channels) and send it as one stream."""
        samples, sample_rate = await asyncio.to_thread(decode, path)
        fmt = file_format(path) if fmt == "auto" else fmt
        return await self.send_array(stream_id or stream_id_for(path), samples, sample_rate, fmt=fmt,
                                     speed=speed, chunk_ms=chunk_ms, on_frame=on_frame)

    async def close(self, linger_s: float = 10.0) -> None:
        """Close after the queued frames are delivered (or ``linger_s`` passed). Idempotent."""
        if self._socket.closed:
            return
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=int(linger_s * 1000))
        if self._own_context:
            await asyncio.to_thread(self._context.term)

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def send_files_async(paths: list[str | Path], endpoint: str = DEFAULT_INGEST, *,
                           stream_ids: list[str | None] | None = None, connect_timeout: float | None = None,
                           **options) -> list[SendResult]:
    """Send several files at once, one stream each, over one connection. ``stream_ids``: one per
    path (None: from the file name). ``connect_timeout``: first wait that long for the connection
    (``Sender.wait_connected``); None sends at once (frames wait in ZeroMQ's queue for a peer)."""
    ids = stream_ids or [None] * len(paths)
    server_key = options.pop("server_key", None)
    client_secret_key = options.pop("client_secret_key", None)
    async with Sender(endpoint, server_key=server_key, client_secret_key=client_secret_key) as sender:
        if connect_timeout is not None:
            await sender.wait_connected(connect_timeout)
        return list(await asyncio.gather(*(sender.send_file(p, i, **options) for p, i in zip(paths, ids,
                                                                                                strict=True))))


async def send_file_async(path: str | Path, endpoint: str = DEFAULT_INGEST, *, stream_id: str | None = None,
                          **options) -> SendResult:
    """Send one file as one stream; options as ``Sender.send_file`` plus ``server_key``,
    ``client_secret_key`` and ``connect_timeout``."""
    return (await send_files_async([path], endpoint, stream_ids=[stream_id] if stream_id else None,
                                   **options))[0]


def send_file(path: str | Path, endpoint: str = DEFAULT_INGEST, **options) -> SendResult:
    """Blocking ``send_file_async`` for scripts."""
    return asyncio.run(send_file_async(path, endpoint, **options))
