"""The stream registry: what every ingest adapter feeds, and where scored windows come back.

Adapters call ``push(stream_id, samples, sample_rate, channels, seq=..., end=...)`` and ``end``;
they know nothing of models. The registry keeps one ``StreamSession`` per live stream, enforces the
limits (maximum streams, per sender too, sequence order and jumps, stream ownership, idle and
audio timeouts), hands complete windows to the batcher, and
turns each scored window into events (score, alert transitions, and ``end`` once a stream is over,
with ``ended`` on the alert topic if it was raised). ``snapshot()`` is the state of the live streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from streamdet.audio import SAMPLE_RATE
from streamdet.errors import StreamRejectedError
from streamdet.service.batcher import WindowJob
from streamdet.service.events import EndEvent, WindowEvent
from streamdet.service.logs import LogThrottle
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.owner import StreamOwner
from streamdet.service.publisher import EventPublisher
from streamdet.stream.policy import StreamPolicy, spoof_probability
from streamdet.stream.session import StreamSession
from streamdet.stream.windower import Window

log = logging.getLogger(__name__)
_drops_log = LogThrottle(log)
"""Dropped windows: one line per reason a second across all streams (the metrics count each)."""

ENDED_MEMORY = 4_096
"""How many ended stream ids are remembered, to reject late frames of a stream that is over."""


class StreamRegistry:
    def __init__(
        self,
        policy: StreamPolicy,
        submit: Callable[[WindowJob], None],
        publisher: EventPublisher,
        metrics: ServiceMetrics,
        *,
        model_id: str,
        max_streams: int = 256,
        idle_timeout_s: float = 10.0,
        split_ingests: set[str] | None = None,
        max_streams_per_sender: int | None = None,
        max_seq_gap: int | None = None,
        audio_timeout_s: float | None = None,
        overloaded: Callable[[], str | None] | None = None,
        score_events: bool = True,
    ) -> None:
        self.policy = policy
        self.model_id = model_id
        self.max_streams = max_streams
        self.idle_timeout_s = idle_timeout_s
        self._submit = submit
        self._publisher = publisher
        self._metrics = metrics
        self._active: dict[str, StreamSession] = {}
        self._ended: OrderedDict[str, StreamOwner | None] = OrderedDict()
        """Ended stream ids → their owners: late frames of that owner are refused."""
        self._last_score: dict[StreamSession, WindowEvent] = {}
        self._ending: set[StreamSession] = set()
        """Ended streams whose ``end`` event is not out yet (windows still in flight)."""
        self.accepting = True
        self.split_ingests: set[str] = split_ingests or set()
        """Ingests whose multi-channel streams are scored channel by channel (``split_channels``)."""
        self._split: dict[str, int] = {}
        """Live split streams: the id the sender uses → its channel count."""
        self.max_streams_per_sender = max_streams_per_sender
        """Most live streams one ``StreamOwner.sender`` may hold (None: no quota)."""
        self.max_seq_gap = max_seq_gap
        """Largest forward jump of ``seq`` accepted within a stream (None: any)."""
        self.audio_timeout_s = audio_timeout_s
        """A stream with no samples (keep-alives only) for this long is ended (None: never)."""
        self._overloaded = overloaded
        """Why scoring is over capacity (the batcher's ``overloaded``), or None: new streams are
        refused (``overloaded``) while it says so; live streams keep being served."""
        self.score_events = score_events
        """Publish a ``score`` event per window (False: alert transitions and ``end`` only)."""

    # --- the adapter side ------------------------------------------------------------------------

    @property
    def active(self) -> int:
        return len(self._active)

    def overloaded(self) -> str | None:
        """Why scoring is over capacity (``over_budget``, ``over_latency``), or None."""
        return self._overloaded() if self._overloaded is not None else None

    def get(self, stream_id: str) -> StreamSession | None:
        """The live stream of that id, if any."""
        return self._active.get(stream_id)

    def push(
        self,
        stream_id: str,
        samples: np.ndarray,
        sample_rate: int,
        channels: int,
        *,
        seq: int | None = None,
        end: bool = False,
        arrival: float | None = None,
        ingest: str = "",
        owner: StreamOwner | None = None,
    ) -> None:
        """Accept one chunk of float32 (frames, channels) audio; raises StreamRejectedError.

        ``seq`` (optional) must increase strictly within a stream. An ended stream's id is
        refused until a sender starts it again with seq 0 (adapters without sequence numbers,
        ``seq=None``, may reuse an id at once). ``ingest`` names the adapter, for ``snapshot``.
        When that ingest splits channels (``split_ingests``), each channel of a multi-channel stream
        is its own mono stream ``<stream_id>/<channel>``: a call's two parties scored apart, so that
        a genuine voice mixed in cannot dilute a cloned one.

        ``owner`` (optional) is who sent the frame: the first frame's owner binds the stream, and a
        frame of another owner is refused (``not_owner``) before it can end the stream, move its
        ``seq`` or change its format. None skips the check (an ingest that cannot tell senders apart).
        """
        arrival = time.monotonic() if arrival is None else arrival
        if stream_id in self._split or (channels > 1 and ingest in self.split_ingests):
            self._push_split(stream_id, samples, sample_rate, channels, seq, end, arrival, ingest, owner)
            return
        if not self.accepting:
            raise StreamRejectedError("shutting_down", "the service is shutting down")
        session = self._active.get(stream_id)
        if session is None:
            session = self._open(stream_id, seq, sample_rate, channels, arrival, owner)
            session.ingest = ingest
        elif owner is not None and session.owner is not owner and session.owner != owner:
            # (``is not`` first: ingests reuse one owner instance per sender, and comparing two
            # dataclasses builds and compares tuples on every frame)
            raise StreamRejectedError("not_owner", f"stream {stream_id} belongs to {session.owner}, not {owner}")
        session.check(seq, sample_rate, channels, self.max_seq_gap)
        self._enqueue(session, session.feed(samples, seq, arrival), arrival)
        if end:
            self.end(stream_id, "end")

    def _push_split(self, stream_id: str, samples: np.ndarray, sample_rate: int, channels: int,
                    seq: int | None, end: bool, arrival: float, ingest: str,
                    owner: StreamOwner | None = None) -> None:
        known = self._split.get(stream_id)
        if known is not None and known != channels:
            raise StreamRejectedError("format_change", f"{channels} channels after {known} (split stream)")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1, channels)
        for channel in range(channels):
            self.push(f"{stream_id}/{channel}", samples[:, channel:channel + 1], sample_rate, 1,
                      seq=seq, arrival=arrival, ingest=ingest, owner=owner)
            self._split[stream_id] = channels
        if end:
            self.end(stream_id, "end")

    def end(self, stream_id: str, reason: str = "end", owner: StreamOwner | None = None) -> None:
        """End a live stream: its tail window is scored and its ``end`` event follows the last score.
        The id of a split stream ends each of its channels' streams. With ``owner``, only a stream
        of that owner is ended (a connection closing never ends another sender's stream of that id)."""
        if owner is not None:
            session = self._active.get(stream_id) or self._active.get(f"{stream_id}/0")  # plain or split
            if session is not None and session.owner != owner:
                return
        channels = self._split.pop(stream_id, None)
        if channels is not None:
            for channel in range(channels):
                self.end(f"{stream_id}/{channel}", reason)
            return
        session = self._active.pop(stream_id, None)
        if session is None:
            return
        self._ended[stream_id] = session.owner if isinstance(session.owner, StreamOwner) else None
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)
        self._metrics.active_streams.set(len(self._active))
        self._metrics.streams_ended.labels(reason).inc()
        log.info("stream %s ended (%s) after %.2f s", stream_id, reason, session.duration)
        self._ending.add(session)
        # The tail's latency runs from the end signal: the moment we knew no more samples would come.
        self._enqueue(session, session.finish(reason), time.monotonic())
        self._finish_if_done(session)

    def abandon(self) -> int:
        """The shutdown ran out of time and the batcher has stopped (``Batcher.abandon``): every ended
        stream still waiting for windows gets its ``end`` now, reason ``unscored``, with the count of
        its windows in flight in ``unscored`` (and ``ended`` if raised). Returns the windows given up on."""
        waiting = list(self._ending)
        total = sum(session.pending for session in waiting)
        self._metrics.windows_unscored.inc(total)
        log.error("shutdown out of time: %d window(s) of %d stream(s) left unscored", total, len(waiting))
        for session in waiting:  # (streamdet_streams_ended counted them at ``end``, as ``shutdown``)
            session.unscored, session.pending = session.pending, 0
            session.end_reason = "unscored"
            self._finish_if_done(session)
        return total

    def snapshot(self) -> list[dict[str, Any]]:
        """The live streams' state, oldest first, as JSON-ready dicts (``GET /streams``)."""
        streams = []
        for session in self._active.values():
            last = self._last_score.get(session)
            streams.append({
                "stream_id": session.stream_id, "ingest": session.ingest, "sample_rate": session.sample_rate,
                "channels": session.channels, "duration": session.duration, "windows": session.scored,
                "dropped": session.dropped, "pending": session.pending, "alert": session.alerts.raised,
                "last_window": None if last is None else {
                    "window": last.window, "start": last.start, "end": last.end, "p_spoof": last.p_spoof, "spoof": last.spoof,
                    "wall_time": last.wall_time},
            })
        return streams

    def end_all(self, reason: str) -> None:
        for stream_id in list(self._active):
            self.end(stream_id, reason)

    def end_idle(self, now: float | None = None) -> list[str]:
        """End the streams that sent nothing for ``idle_timeout_s``, and those that sent no samples
        (keep-alives only) for ``audio_timeout_s``; returns their ids."""
        now = time.monotonic() if now is None else now
        idle = [sid for sid, s in self._active.items() if now - s.last_arrival >= self.idle_timeout_s]
        for stream_id in idle:
            self._metrics.rejects.labels("idle_timeout").inc()
            log.warning("stream %s idle for %.1f s: ending it", stream_id, self.idle_timeout_s)
            self.end(stream_id, "idle_timeout")
        if self.audio_timeout_s is not None:
            # Keep-alives hold a slot without costing the sender anything: a stream is for audio.
            silent = [sid for sid, s in self._active.items()
                      if now - (s.created if s.last_audio is None else s.last_audio) >= self.audio_timeout_s]
            for stream_id in silent:
                self._metrics.rejects.labels("audio_timeout").inc()
                log.warning("stream %s sent no audio for %.1f s: ending it", stream_id, self.audio_timeout_s)
                self.end(stream_id, "audio_timeout")
            idle += silent
        for parent, channels in list(self._split.items()):  # forget split streams with no channel left
            if not any(f"{parent}/{c}" in self._active for c in range(channels)):
                del self._split[parent]
        return idle

    async def run_idle_reaper(self) -> None:
        """Check for idle streams a few times per timeout, forever (cancel to stop)."""
        interval = min(1.0, self.idle_timeout_s / 4, (self.audio_timeout_s or 4.0) / 4)
        while True:
            await asyncio.sleep(interval)
            self.end_idle()

    def _open(self, stream_id: str, seq: int | None, sample_rate: int, channels: int,
              arrival: float, owner: StreamOwner | None = None) -> StreamSession:
        if stream_id in self._ended:
            # Only the ended stream's own late frames are refused: another sender is starting a new
            # stream (and a real sender kept out by a squatter gets its id back once the squatter stops).
            former = self._ended[stream_id]
            if seq not in (None, 0) and (owner is None or former is None or former == owner):
                raise StreamRejectedError("stream_ended", f"stream {stream_id} has ended")
            del self._ended[stream_id]  # a sender starting the id again from seq 0
        if len(self._active) >= self.max_streams:
            raise StreamRejectedError("max_streams", f"{self.max_streams} streams already active")
        if owner is not None and self.max_streams_per_sender is not None:
            # A scan, not a counter: it runs only when a stream starts, over at most max_streams.
            held = sum(1 for s in self._active.values()
                       if isinstance(s.owner, StreamOwner) and s.owner.sender == owner.sender)
            if held >= self.max_streams_per_sender:
                raise StreamRejectedError("max_streams_per_sender",
                                          f"{owner.sender} already has {held} streams active")
        why = self.overloaded()
        if why is not None:
            raise StreamRejectedError("overloaded", f"scoring is over capacity ({why}): no new streams until "
                                      "it catches up")
        session = StreamSession(stream_id, sample_rate, channels, self.policy, created=arrival,
                                last_arrival=arrival, owner=owner)
        self._active[stream_id] = session
        self._metrics.streams_started.inc()
        self._metrics.active_streams.set(len(self._active))
        log.info("stream %s started: %d Hz, %d channel(s)", stream_id, sample_rate, channels)
        return session

    def _enqueue(self, session: StreamSession, windows: list[Window], arrival: float) -> None:
        for window in windows:
            session.pending += 1
            self._submit(WindowJob(session, window, arrival))

    # --- the batcher side ------------------------------------------------------------------------

    @staticmethod
    def measure_speech(batch: list[WindowJob]) -> None:
        """The batcher's ``measure``: each window's speech fraction, in the batcher's worker thread."""
        for job in batch:
            session: StreamSession = job.key  # type: ignore[assignment]
            job.speech = session.speech_of(job.window)

    def on_result(self, job: WindowJob, p_bonafide: float) -> None:
        """Publish a scored window, and the alert transition it causes."""
        session: StreamSession = job.key  # type: ignore[assignment]
        session.pending -= 1
        session.scored += 1
        p_spoof = spoof_probability(p_bonafide)
        spoof, gated = self.policy.judge(p_spoof, job.speech, job.window.early)
        transition = session.alerts.update(spoof, gated)
        latency = time.monotonic() - job.arrival
        start, end = job.window.seconds(SAMPLE_RATE)
        threshold = self.policy.threshold_for(job.window.early)
        fields = dict(
            stream_id=session.stream_id, window=job.window.index, start=start, end=end,
            wall_time=time.time(), p_spoof=p_spoof, p_bonafide=p_bonafide, spoof_threshold=threshold,
            threshold=threshold, spoof=spoof, alert=session.alerts.raised, final=job.window.final,
            model_id=self.model_id, latency_ms=latency * 1000.0, speech=job.speech, gated=gated,
            early=job.window.early,
        )
        score = WindowEvent(event="score", **fields)
        self._last_score[session] = score
        if self.score_events:
            self._publisher.publish(score)
        self._metrics.windows_scored.inc()
        self._metrics.latency.observe(latency)
        if transition is not None:
            self._metrics.alerts.labels(transition).inc()
            log.info("alert %s on stream %s at %.2f-%.2f s (p_spoof %.3f)", transition,
                     session.stream_id, start, end, p_spoof)
            self._publisher.publish(WindowEvent(event=transition, **fields))
        self._finish_if_done(session)

    def on_drop(self, job: WindowJob, reason: str) -> None:
        session: StreamSession = job.key  # type: ignore[assignment]
        session.pending -= 1
        session.dropped += 1
        self._metrics.windows_dropped.labels(reason).inc()
        _drops_log.warning(reason, "stream %s: window %d dropped (%s)", session.stream_id, job.window.index, reason)
        self._finish_if_done(session)

    def _finish_if_done(self, session: StreamSession) -> None:
        if not session.done or session.end_published:
            return
        session.end_published = True
        self._ending.discard(session)
        self._last_score.pop(session, None)
        end = EndEvent(
            stream_id=session.stream_id, reason=session.end_reason, duration=session.duration,
            windows=session.scored, dropped=session.dropped, alert=session.alerts.raised,
            wall_time=time.time(), model_id=self.model_id, unscored=session.unscored,
        )
        self._publisher.publish(end)
        if end.alert:  # close the raise for consumers of the alert topic alone
            self._metrics.alerts.labels("ended").inc()
            self._publisher.publish(replace(end, event="ended"))
