"""Broadcast pull: the service reads live sources itself (``streamdet serve --source URL``).

Each source is read by PyAV (FFmpeg) in a thread of its own, since PyAV blocks: Icecast/HTTP
(MP3, AAC, Opus/Ogg), HLS, RTSP, RTMP, SRT, MPEG-TS over UDP, anything FFmpeg opens. The first
audio stream is decoded, converted by FFmpeg's resampler to 16 kHz mono float32 (so a source that
comes back in another format after a reconnect continues the same stream), and pushed to the
registry on the event loop in chunks of ``chunk_s``.

The media clock sets window times: when the timestamps of the decoded audio jump ahead (audio lost
upstream, a segment missing), the gap is filled with silence (at most ``max_gap_fill_s``), so that a
window's ``start``/``end`` stay on the source's clock; every gap is counted and published.

A connection that fails (cannot open, no audio, stalls for ``read_timeout_s``, ends) is counted in
``streamdet_ingest_rejects_total`` by reason and retried with exponential backoff and jitter,
without end. A reconnect continues the same stream id: when the outage is shorter than
``limits.idle_timeout_s`` the stream simply continues (no silence stands in for the outage, whose
length in media time is unknown); when it is longer, the registry has ended the stream
(``idle_timeout``) and the reconnect starts a new stream under the same id. Reconnects and gaps are
published as ``source`` events (topic ``source.<stream_id>``) and counted per source.
Settings: ``[ingests.broadcast]``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamdet.audio import SAMPLE_RATE
from streamdet.errors import ProtocolError
from streamdet.service.events import SourceEvent
from streamdet.service.frames import STREAM_ID_PATTERN
from streamdet.service.ingest import IngestContext, IngestPlugin
from streamdet.service.owner import StreamOwner

log = logging.getLogger(__name__)


def default_stream_id(url: str) -> str:
    """A stream id from a URL: host, port and path, without credentials or query."""
    parts = urlsplit(url)
    name = (parts.hostname or "") + (f":{parts.port}" if parts.port else "") + parts.path.rstrip("/")
    name = re.sub(r"[^A-Za-z0-9._:@/-]", "_", name).strip("/") or "source"
    return name[:128]


def redact(url: str) -> str:
    """``url`` without its password, for logs and ``/info``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


class SourceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    stream_id: str | None = None
    """The stream's id; None = derived from the URL (host, port and path)."""
    options: dict[str, str] = {}
    """FFmpeg options for this source (``av.open(options=...)``), e.g. ``{"rtsp_transport": "tcp"}``."""

    @model_validator(mode="after")
    def _valid_id(self) -> SourceSettings:
        if self.stream_id is None:
            self.stream_id = default_stream_id(self.url)
        if not STREAM_ID_PATTERN.fullmatch(self.stream_id):
            raise ValueError(f"stream_id {self.stream_id!r} is not 1-128 chars of [A-Za-z0-9._:@/-]")
        return self


class BroadcastSettings(BaseModel):
    """``[ingests.broadcast]``: live sources pulled by the service; on when ``sources`` is not empty."""

    model_config = ConfigDict(extra="forbid")

    sources: list[SourceSettings] = []
    open_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    """A source that delivers nothing for this long is dropped and reconnected."""
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    """Reconnect delays double from the initial to the maximum (each drawn from 50-100 % of that),
    and start again from the initial one after a connection that delivered audio."""
    chunk_s: float = Field(0.1, gt=0)
    """Audio pushed to the registry per call."""
    gap_tolerance_s: float = Field(0.1, ge=0)
    """Timestamp jumps up to this are jitter, not gaps."""
    max_gap_fill_s: float = Field(5.0, ge=0)
    """Longest gap filled with silence; a longer one is counted but not filled."""

    @model_validator(mode="after")
    def _distinct_ids(self) -> BroadcastSettings:
        ids = [s.stream_id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"two sources with the same stream_id: {sorted(ids)}")
        return self


def parse_source_flag(value: str) -> dict[str, str]:
    """``--source URL`` or ``--source STREAM_ID=URL``."""
    name, sep, rest = value.partition("=")
    if sep and "://" not in name and "://" in rest:
        return {"stream_id": name, "url": rest}
    return {"url": value}


@dataclass
class MediaClock:
    """Follows the timestamps of decoded audio; says how far each frame starts from where the
    previous one ended (positive: a gap, negative: the clock went back)."""

    tolerance_s: float
    expected: float | None = None

    def advance(self, start: float | None, duration: float) -> float:
        """The jump before a frame at ``start`` (0 within tolerance, or without timestamps)."""
        if start is None:
            if self.expected is not None:
                self.expected += duration
            return 0.0
        jump = 0.0 if self.expected is None else start - self.expected
        self.expected = start + duration
        return jump if abs(jump) > self.tolerance_s else 0.0


class SourceStalled(Exception):
    """Internal: the source ended or delivered nothing (mapped to a counted reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class BroadcastIngest:
    name = "broadcast"

    def __init__(self, settings: BroadcastSettings) -> None:
        self.settings = settings
        self._ctx: IngestContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    async def start(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        r = ctx.metrics.registry
        self._reconnects = Counter("streamdet_source_reconnects", "Connection attempts after a failure, per source",
                                   ["source"], registry=r)
        self._gaps = Counter("streamdet_source_gaps", "Jumps in the media clock of pulled sources",
                             ["source"], registry=r)
        self._gap_seconds = Counter("streamdet_source_gap_seconds", "Seconds of silence filled in for gaps",
                                    ["source"], registry=r)
        self._connected = Gauge("streamdet_source_connected", "1 while a pulled source delivers audio",
                                ["source"], registry=r)
        self._accepted = ctx.metrics.frames.labels(self.name)
        for source in self.settings.sources:
            for counter in (self._reconnects, self._gaps, self._gap_seconds):
                counter.labels(source.stream_id)  # every source's series exists from the start, at 0
            self._connected.labels(source.stream_id).set(0)
            thread = threading.Thread(target=self._run, args=(source,), daemon=True,
                                      name=f"streamdet-source-{source.stream_id}")
            thread.start()
            self._threads.append(thread)

    async def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + self.settings.read_timeout_s + 1.0
        for thread in self._threads:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("source thread %s still blocked in FFmpeg; leaving it", thread.name)
        self._threads = []

    def describe(self) -> dict[str, Any]:
        return {"protocol": "pull", "endpoint": " ".join(redact(s.url) for s in self.settings.sources),
                "sources": len(self.settings.sources)}

    # --- the loop side -----------------------------------------------------------------------------

    def _call(self, fn, *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop (from a source thread)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the service is gone
            self._stop.set()

    def _push(self, stream_id: str, samples: np.ndarray) -> None:
        assert self._ctx is not None
        try:
            # Its own owner: a sender on another ingest cannot feed a broadcast's stream, nor it theirs.
            self._ctx.registry.push(stream_id, samples, SAMPLE_RATE, 1, ingest=self.name,
                                    owner=StreamOwner(f"broadcast:{stream_id}"))
        except ProtocolError as exc:
            self._ctx.rejects.report(stream_id, exc, self.name)
            return
        self._accepted.inc()

    def _failed(self, stream_id: str, reason: str, detail: str) -> None:
        assert self._ctx is not None
        self._ctx.rejects.report(stream_id, ProtocolError(reason, detail), self.name)
        self._connected.labels(stream_id).set(0)
        self._reconnects.labels(stream_id).inc()  # a retry follows every failure

    def _publish(self, event: SourceEvent) -> None:
        assert self._ctx is not None
        if event.event == "gap":
            self._gaps.labels(event.stream_id).inc()
            self._gap_seconds.labels(event.stream_id).inc(event.filled_s)
        if self._ctx.publisher is not None:
            self._ctx.publisher.publish(event)  # type: ignore[arg-type]

    # --- the source threads ------------------------------------------------------------------------

    def _run(self, source: SourceSettings) -> None:
        import av

        stream_id = source.stream_id
        assert stream_id is not None
        failures = 0
        lost_at: float | None = None
        last_reason = ""
        while not self._stop.is_set():
            delivered = False
            try:
                container = av.open(source.url, timeout=(self.settings.open_timeout_s, self.settings.read_timeout_s),
                                    options=dict(source.options))
            except (av.error.ExitError, TimeoutError) as exc:
                reason, detail = "source_stalled", f"not open after {self.settings.open_timeout_s:g} s ({exc})"
            except (av.FFmpegError, OSError) as exc:
                reason, detail = "source_open_failed", str(exc)
            else:
                try:
                    with container:
                        for _ in self._read(container, source, lost_at, last_reason, failures):
                            delivered = True
                            lost_at = None
                    reason, detail = "source_ended", "end of stream"
                except SourceStalled as exc:
                    reason, detail = exc.reason, str(exc)
                except (av.error.ExitError, TimeoutError) as exc:
                    reason, detail = "source_stalled", f"nothing for {self.settings.read_timeout_s:g} s ({exc})"
                except (av.FFmpegError, OSError, ValueError) as exc:
                    reason, detail = "source_read_failed", str(exc)
            if self._stop.is_set():
                return
            failures = 1 if delivered else failures + 1
            lost_at = time.monotonic() if lost_at is None else lost_at
            last_reason = reason
            log.warning("source %s (%s): %s: %s; reconnecting", stream_id, redact(source.url), reason, detail)
            self._call(self._failed, stream_id, reason, detail)
            ceiling = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2 ** (failures - 1))
            self._stop.wait(ceiling * random.uniform(0.5, 1.0))

    def _read(self, container: Any, source: SourceSettings, lost_at: float | None, last_reason: str,
              failures: int):
        """Decode and push the first audio stream; yields after each push."""
        import av

        stream_id = source.stream_id
        audio = next((s for s in container.streams if s.type == "audio"), None)
        if audio is None:
            raise SourceStalled("source_no_audio", "no audio stream in the source")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        clock = MediaClock(self.settings.gap_tolerance_s)
        chunk = int(self.settings.chunk_s * SAMPLE_RATE)
        pending: list[np.ndarray] = []
        pending_frames = 0
        connected = False
        for packet in container.demux(audio):
            if self._stop.is_set():
                break
            for frame in packet.decode():
                jump = clock.advance(frame.time, frame.samples / frame.sample_rate)
                if jump:
                    filled = min(jump, self.settings.max_gap_fill_s) if jump > 0 else 0.0
                    if filled:
                        pending.append(np.zeros((int(filled * SAMPLE_RATE), 1), dtype=np.float32))
                        pending_frames += len(pending[-1])
                    self._call(self._publish, SourceEvent(event="gap", stream_id=stream_id, gap_s=jump,
                                                          filled_s=filled, wall_time=time.time()))
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1, 1)
                    pending.append(samples)
                    pending_frames += len(samples)
            if pending_frames >= chunk:
                if not connected:
                    connected = True
                    self._call(self._connected.labels(stream_id).set, 1)
                    if lost_at is not None:
                        self._call(self._publish, SourceEvent(
                            event="reconnect", stream_id=stream_id, reason=last_reason, attempts=failures,
                            outage_s=time.monotonic() - lost_at, wall_time=time.time()))
                self._call(self._push, stream_id, np.concatenate(pending))
                pending, pending_frames = [], 0
                yield
        if pending:
            self._call(self._push, stream_id, np.concatenate(pending))


def create(section: BroadcastSettings, settings: Any) -> BroadcastIngest | None:
    return BroadcastIngest(section) if section.sources else None


PLUGIN = IngestPlugin("broadcast", BroadcastSettings, create)
