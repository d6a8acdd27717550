"""Publish audio to ``streamdet serve`` over WebRTC with WHIP (RFC 9725), paced in real time.

    result = publish_file("call.wav", "http://127.0.0.1:8080", stream_id="call-42")     # blocking
    result = await publish_file_async("call.wav", url, token="s3cret", on_frame=callback)

    async with WhipPublisher(url, token=...) as publisher:        # lower level: any aiortc track
        await publisher.publish(track)
        ...                                                       # leaving DELETEs the resource

``url`` is the service's HTTP base (``http://host:8080``, the stream id is appended as
``/whip/<stream_id>``) or a full WHIP endpoint URL. The file is decoded at its native rate and
channels (``streamdet.audio.decode``) and handed to aiortc in 20 ms frames; aiortc resamples to the
negotiated codec (Opus, 48 kHz, by default) as a browser would. Only host ICE candidates are used
(no STUN); ``ice_addresses`` chooses them (``["127.0.0.1"]`` on one machine).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc import sdp as aiortc_sdp

from streamdet.audio import decode, to_mono
from streamdet.client.sender import stream_id_for
from streamdet.errors import WhipClientError
from streamdet.service.ingest.whip_ice import rtc_configuration, use_host_addresses

DEFAULT_URL = "http://127.0.0.1:8080"
FRAME_MS = 20
TAIL_PADDING_MS = 4 * FRAME_MS
"""Silence sent after the file: aiortc's receiver releases an audio packet only once 4 newer ones
have arrived (its jitter buffer's prefetch), so without it the file's last 80 ms would never be
decoded; with it the service receives the whole file and (almost) nothing more."""

FrameCallback = Callable[[int, float], None]
"""Called as each frame is handed to the encoder: (end sample at the file's rate, monotonic time)."""


@dataclass(frozen=True)
class WhipResult:
    stream_id: str
    resource: str
    """The session's URL (the ``Location`` of the 201)."""
    codec: str
    frames: int
    samples: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.samples / self.sample_rate


def endpoint_url(url: str, stream_id: str) -> str:
    """The WHIP endpoint for ``stream_id``: ``url`` itself if it names a path other than ``/`` or
    ``/whip``, else ``<url>/whip/<stream_id>``."""
    path = urlsplit(url).path.rstrip("/")
    if path in ("", "/whip"):
        return url.rstrip("/") + ("/" if path else "/whip/") + stream_id
    return url


class FileAudioTrack(MediaStreamTrack):
    """An audio track that plays float32 (frames, channels) samples once, in real time.

    A frame is returned once its last sample "would have been captured" (``speed`` 1.0), as from a
    microphone. After the last frame and ``TAIL_PADDING_MS`` of silence, ``finished`` is set and
    ``recv`` waits (the track stays open until the publisher ends the session).
    """

    kind = "audio"

    def __init__(self, samples: np.ndarray, sample_rate: int, *, speed: float = 1.0,
                 on_frame: FrameCallback | None = None) -> None:
        super().__init__()
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.shape[1] > 2:  # Opus carries at most two channels
            samples = to_mono(samples)[:, None]
        self.samples = samples
        self.sample_rate = sample_rate
        self.speed = speed
        self.finished = asyncio.Event()
        self.frames_sent = 0
        self._int16 = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
        self._frame = max(1, sample_rate * FRAME_MS // 1000)
        self._total = len(samples) + sample_rate * TAIL_PADDING_MS // 1000
        self._position = 0
        self._start: float | None = None
        self._on_frame = on_frame

    async def recv(self) -> av.AudioFrame:
        if self._position >= self._total:
            self.finished.set()
            await asyncio.Event().wait()  # until the session is closed (which cancels us)
        if self._start is None:
            self._start = time.monotonic()
        begin, end = self._position, min(self._position + self._frame, self._total)
        delay = self._start + end / self.sample_rate / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = self._int16[begin:end]
        if len(chunk) < end - begin:  # the tail padding
            chunk = np.concatenate([chunk, np.zeros((end - begin - len(chunk), chunk.shape[1]), np.int16)])
        channels = chunk.shape[1]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16",
                                           layout="mono" if channels == 1 else "stereo")
        frame.sample_rate = self.sample_rate
        frame.pts = begin
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self._position = end
        self.frames_sent += 1
        if self._on_frame is not None:
            self._on_frame(min(end, len(self.samples)), time.monotonic())
        return frame


class WhipPublisher:
    """One WHIP session: ``publish`` POSTs the offer and applies the answer; ``stop`` DELETEs."""

    def __init__(self, url: str, *, token: str | None = None, ice_addresses: Sequence[str] | None = None,
                 timeout_s: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.timeout_s = timeout_s
        self.resource: str | None = None
        self.codec = ""
        if ice_addresses:
            use_host_addresses(ice_addresses)
        self.pc = RTCPeerConnection(rtc_configuration())
        self._failed = asyncio.Event()
        self.pc.on("connectionstatechange", self._on_state)

    def _headers(self, **extra: str) -> dict[str, str]:
        return {**extra, **({"Authorization": f"Bearer {self.token}"} if self.token else {})}

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._failed.set()

    async def publish(self, track: MediaStreamTrack, codec: str | None = None) -> str:
        """Offer ``track`` (optionally one codec only: ``opus``, ``PCMU``, ``PCMA``, ``G722``); returns
        the resource URL. Raises ``WhipClientError`` if the endpoint refuses."""
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        if codec is not None:
            wanted = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                      if c.mimeType.lower() == f"audio/{codec}".lower()]
            if not wanted:
                raise ValueError(f"aiortc cannot send {codec}")
            transceiver.setCodecPreferences(wanted)
        # aiortc gathers every candidate inside setLocalDescription: the offer is complete.
        await self.pc.setLocalDescription(await self.pc.createOffer())
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                self.url, data=self.pc.localDescription.sdp.encode(),
                headers=self._headers(**{"Content-Type": "application/sdp"})) as response:
            body = await response.text()
            if response.status != 201:
                await self.pc.close()
                raise _client_error(response.status, body)
            self.resource = urljoin(self.url, response.headers["Location"])
        answer = aiortc_sdp.SessionDescription.parse(body)
        audio = next((m for m in answer.media if m.kind == "audio" and m.rtp.codecs), None)
        self.codec = audio.rtp.codecs[0].mimeType.split("/", 1)[1] if audio else ""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return self.resource

    async def wait_failed(self) -> None:
        """Returns if the connection fails or closes (use in ``asyncio.wait`` next to the media)."""
        await self._failed.wait()

    async def stop(self) -> None:
        """DELETE the resource (the service ends the stream) and close the connection. Idempotent."""
        resource, self.resource = self.resource, None
        try:
            if resource is not None:
                timeout = aiohttp.ClientTimeout(total=self.timeout_s)
                async with aiohttp.ClientSession(timeout=timeout) as http, http.delete(
                        resource, headers=self._headers()) as response:
                    # 404: the service ended the session already (it timed out, or shut down).
                    if response.status not in (200, 204, 404):
                        raise _client_error(response.status, await response.text())
        finally:
            await self.pc.close()

    async def __aenter__(self) -> WhipPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _client_error(status: int, body: str) -> WhipClientError:
    try:
        problem = json.loads(body)
        return WhipClientError(status, str(problem.get("title", "")), str(problem.get("detail", "")))
    except (ValueError, AttributeError):
        return WhipClientError(status, "", body[:200])


async def publish_array_async(samples: np.ndarray, sample_rate: int, url: str = DEFAULT_URL, *,
                              stream_id: str, token: str | None = None, speed: float = 1.0,
                              codec: str | None = None, ice_addresses: Sequence[str] | None = None,
                              on_frame: FrameCallback | None = None,
                              stop: asyncio.Event | None = None) -> WhipResult:
    """Publish float32 audio as one stream, then DELETE; ``stop`` set early ends it sooner."""
    track = FileAudioTrack(samples, sample_rate, speed=speed, on_frame=on_frame)
    async with WhipPublisher(endpoint_url(url, stream_id), token=token, ice_addresses=ice_addresses) as publisher:
        resource = await publisher.publish(track, codec)
        waits = {asyncio.ensure_future(track.finished.wait()), asyncio.ensure_future(publisher.wait_failed())}
        if stop is not None:
            waits.add(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        state = publisher.pc.connectionState
        if state in ("failed", "closed"):
            publisher.resource = None  # the session is over on the service's side: nothing to DELETE
            detail = ("ICE or DTLS failed: no media path to the service" if state == "failed"
                      else "the service closed the connection (timeout, or shutting down)")
            raise WhipClientError(0, f"connection_{state}", detail)
        # The last frame has just gone to the encoder: give it time to leave before the DELETE.
        await asyncio.sleep(0.1)
    return WhipResult(stream_id, resource, publisher.codec, track.frames_sent, len(track.samples), sample_rate,
                      track.samples.shape[1])


async def publish_file_async(path: str | Path, url: str = DEFAULT_URL, *, stream_id: str | None = None,
                             **options) -> WhipResult:
    """Decode ``path`` and publish it in real time; options as ``publish_array_async``."""
    samples, sample_rate = await asyncio.to_thread(decode, path)
    return await publish_array_async(samples, sample_rate, url, stream_id=stream_id or stream_id_for(path),
                                     **options)


def publish_file(path: str | Path, url: str = DEFAULT_URL, **options) -> WhipResult:
    """Blocking ``publish_file_async`` for scripts."""
    return asyncio.run(publish_file_async(path, url, **options))
