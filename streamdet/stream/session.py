"""One stream's state, synchronous and free of I/O: sequence check, edge, windows, speech, alert state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from streamdet.audio import SAMPLE_RATE
from streamdet.errors import StreamRejectedError
from streamdet.stream.edge import EdgeResampler
from streamdet.stream.policy import StreamPolicy
from streamdet.stream.speech import SpeechTracker
from streamdet.stream.windower import Window, Windower


@dataclass(eq=False)  # identity semantics: a session is a dict key in the batcher
class StreamSession:
    """A live (or ending) stream. ``pending`` counts its windows queued or being scored."""

    stream_id: str
    sample_rate: int
    channels: int
    policy: StreamPolicy
    created: float = field(default_factory=time.monotonic)
    last_arrival: float = field(default_factory=time.monotonic)
    last_seq: int | None = None
    ended: bool = False
    end_reason: str = ""
    pending: int = 0
    scored: int = 0
    dropped: int = 0
    unscored: int = 0
    """Windows given up on when the shutdown ran out of time (never scored, never dropped)."""
    end_published: bool = False
    ingest: str = ""
    """The ingest adapter the stream came in on (``zmq``, ``whip``...)."""
    owner: object | None = None
    """Who sent the first frame (the service's ``StreamOwner``); None = anyone may feed it."""
    last_audio: float | None = None
    """When a frame with samples last arrived (keep-alives do not count); None = ``created``."""

    def __post_init__(self) -> None:
        self.edge = EdgeResampler(self.sample_rate, self.channels)
        self.windower = Windower(self.policy.hop, self.policy.window, self.policy.early, self.policy.min_tail)
        self.speech = SpeechTracker()
        """The stream's samples for the VAD; judged in the scoring thread (``speech.fraction``)."""
        self.alerts = self.policy.alert_machine()

    @property
    def duration(self) -> float:
        """Media seconds received so far, at 16 kHz."""
        return self.windower.total / SAMPLE_RATE

    def check(self, seq: int | None, sample_rate: int, channels: int, max_seq_gap: int | None = None) -> None:
        """Refuse a frame that does not follow this stream's sequence or format. A ``seq`` more than
        ``max_seq_gap`` past the last one is refused too: adopting it would refuse every real frame
        that follows (a single forged ``seq`` of 2**62 would blind the stream)."""
        if self.ended:
            raise StreamRejectedError("stream_ended", f"stream {self.stream_id} has ended")
        if seq is not None and self.last_seq is not None:
            if seq == self.last_seq:
                raise StreamRejectedError("seq_repeated", f"seq {seq} already received")
            if seq < self.last_seq:
                raise StreamRejectedError("seq_out_of_order", f"seq {seq} after {self.last_seq}")
            if max_seq_gap is not None and seq - self.last_seq > max_seq_gap:
                raise StreamRejectedError("seq_gap", f"seq {seq} after {self.last_seq} (at most {max_seq_gap} ahead)")
        if (sample_rate, channels) != (self.sample_rate, self.channels):
            raise StreamRejectedError(
                "format_change",
                f"{sample_rate} Hz x{channels} after {self.sample_rate} Hz x{self.channels}",
            )

    def feed(self, samples: np.ndarray, seq: int | None, arrival: float) -> list[Window]:
        """Accept one (already checked) chunk; returns the windows it completed."""
        if seq is not None:
            self.last_seq = seq
        self.last_arrival = arrival
        if len(samples):
            self.last_audio = arrival
        return self._cut(self.edge.process(samples))

    def finish(self, reason: str) -> list[Window]:
        """End the stream: flush the resampler, return the remaining windows (tail included)."""
        self.ended = True
        self.end_reason = reason
        windows = self._cut(self.edge.flush())
        tail = self.windower.finish()
        return windows + ([tail] if tail is not None else [])

    def _cut(self, samples: np.ndarray) -> list[Window]:
        if self.policy.min_speech > 0:  # no gate, no VAD: the speech tracker is not fed
            self.speech.push(samples)
        return self.windower.push(samples)

    def speech_of(self, window: Window) -> float | None:
        """The window's speech fraction (None when the policy does not gate: the VAD does not run).
        Call for each window in order, from one thread."""
        if self.policy.min_speech <= 0:
            return None
        return self.speech.fraction(window.start, window.end)

    @property
    def done(self) -> bool:
        """Ended and nothing left in flight: time for its `end` event."""
        return self.ended and self.pending == 0
