"""One WHIP publisher: its peer connection, the task that reads its audio into the registry, its end.

A session ends exactly once, for the first of these reasons (the ``end`` event's ``reason``):

| reason            | cause                                                                   |
| ----------------- | ----------------------------------------------------------------------- |
| ``end``           | the publisher sent ``DELETE`` on its resource                           |
| ``shutdown``      | the service is stopping                                                 |
| ``track_ended``   | the publisher stopped its track (RTCP BYE)                              |
| ``silence_timeout`` | no audio frame for ``whip.silence_timeout_s``                         |
| ``connect_timeout`` | no first audio frame ``whip.connect_timeout_s`` after the answer      |
| ``peer_failed`` / ``peer_closed`` | ICE or DTLS failed, or the publisher closed the connection |
| ``rejected``      | the registry refused the audio (e.g. ``max_streams``; counted there)    |

Ending closes the peer connection first, then pushes what the decoder still held, then ends the
registry stream (its tail window is scored, its ``end`` event published, its state freed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from streamdet.errors import ProtocolError
from streamdet.service.ingest import IngestContext
from streamdet.service.ingest.av_frames import frame_to_samples
from streamdet.service.owner import StreamOwner

log = logging.getLogger(__name__)

ADAPTER = "whip"
DRAIN_TIMEOUT_S = 2.0
"""How long closing waits for the frames the decoder still holds (it hands them over in milliseconds)."""
MAX_CONCEAL_S = 1.0
"""Longest RTP timestamp gap filled with silence; longer ones are pauses (DTX, a paused sender)."""


class WhipSession:
    """A publisher's peer connection; ``start_reading`` once negotiated, ``close`` to end it."""

    def __init__(self, stream_id: str, session_id: str, pc: RTCPeerConnection, ctx: IngestContext, *,
                 silence_timeout_s: float, connect_timeout_s: float,
                 on_closed: Callable[[WhipSession], None], remote: str = "") -> None:
        self.stream_id = stream_id
        self.remote = remote
        """The publisher's address as the HTTP server saw it (limits pending offers per address)."""
        self.session_id = session_id
        self.owner = StreamOwner(f"whip:{remote}", session_id)
        """The stream is this session's alone: no other publisher or ingest can feed or end it."""
        self.pc = pc
        self.reason: str | None = None
        """Why the session ended (None while live)."""
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self.frames = 0
        self._ctx = ctx
        self._silence_timeout_s = silence_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._on_closed = on_closed
        self._reader: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._next_sample: int | None = None
        self._accepted = ctx.metrics.frames.labels(ADAPTER)
        pc.on("connectionstatechange", self._on_state)

    @property
    def pending(self) -> bool:
        """Answered, but no audio yet (still connecting, or abandoned) and not closing."""
        return self.frames == 0 and self._closing is None

    @property
    def resource(self) -> str:
        """The session's URL path (the ``Location`` of the 201)."""
        return f"/whip/{self.stream_id}/{self.session_id}"

    def start_reading(self, track: MediaStreamTrack) -> None:
        self._reader = asyncio.create_task(self._read(track), name=f"streamdet-whip-{self.stream_id}")

    def close(self, reason: str) -> asyncio.Task[None]:
        """End the session (idempotent: the first reason wins); await the task to wait for the end."""
        if self._closing is None:
            self.reason = reason
            self._closing = asyncio.create_task(self._close(), name=f"streamdet-whip-close-{self.stream_id}")
        return self._closing

    # --- internals -------------------------------------------------------------------------------

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "failed":
            self.close("peer_failed")
        elif state == "closed":
            self.close("peer_closed")  # a no-op when we closed it ourselves

    async def _read(self, track: MediaStreamTrack) -> None:
        # The first frame needs ICE and DTLS first, so it gets the connect timeout.
        timeout, reason = self._connect_timeout_s, "connect_timeout"
        while True:
            try:
                frame = await asyncio.wait_for(track.recv(), timeout)
            except TimeoutError:
                self.close(reason)
                return
            except MediaStreamError:  # the track ended: BYE from the publisher, or our own close
                self.close("track_ended")
                return
            timeout, reason = self._silence_timeout_s, "silence_timeout"
            if not self._push(frame):
                self.close("rejected")
                return

    def _push(self, frame: av.AudioFrame) -> bool:
        """Push one decoded frame (after the silence that fills a timestamp gap); False if refused."""
        samples = frame_to_samples(frame)
        rate, channels = frame.sample_rate, samples.shape[1]
        gap = self._gap(frame, rate)
        registry = self._ctx.registry
        try:
            if gap:
                # Keep media time equal to the publisher's: lost packets become silence, as a
                # telephone network's concealment would, rather than shifting later windows.
                registry.push(self.stream_id, np.zeros((gap, channels), np.float32), rate, channels, ingest=ADAPTER,
                              owner=self.owner)
                self._ctx.metrics.whip_concealed.inc(gap / rate)
            registry.push(self.stream_id, samples, rate, channels, ingest=ADAPTER, owner=self.owner)
        except ProtocolError as exc:
            self._ctx.rejects.report(self.stream_id, exc, ADAPTER)
            return False
        except Exception:
            log.exception("WHIP stream %s: frame failed", self.stream_id)
            self._ctx.metrics.rejects.labels("internal_error").inc()
            return False
        self.sample_rate, self.channels = rate, channels
        self.frames += 1
        self._accepted.inc()
        return True

    def _gap(self, frame: av.AudioFrame, rate: int) -> int:
        """Samples missing between the previous frame and this one, by their RTP timestamps."""
        if frame.pts is None or frame.time_base is None:
            return 0
        start = round(Fraction(frame.pts) * frame.time_base * rate)
        expected, self._next_sample = self._next_sample, start + frame.samples
        if expected is None:
            return 0
        gap = start - expected
        return gap if 0 < gap <= MAX_CONCEAL_S * rate else 0

    async def _close(self) -> None:
        try:
            # Closing stops the receiver: its decoder thread hands over the frames it holds, then
            # ends the track, so the reader drains them and stops on its own.
            await self.pc.close()
        except Exception:
            log.exception("WHIP stream %s: closing the peer connection failed", self.stream_id)
        if self._reader is not None and not self._reader.done():
            # A publisher that never sent a frame never started a decoder: nothing to drain.
            if self.frames:
                await asyncio.wait({self._reader}, timeout=DRAIN_TIMEOUT_S)
            self._reader.cancel()
        reason = self.reason or "end"
        self._ctx.registry.end(self.stream_id, reason, owner=self.owner)
        self._ctx.metrics.whip_closed.labels(reason).inc()
        log.info("WHIP session %s of stream %s closed (%s) after %d frame(s)", self.session_id[:8],
                 self.stream_id, reason, self.frames)
        self._on_closed(self)
