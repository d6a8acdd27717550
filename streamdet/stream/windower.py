"""Cuts one 16 kHz sample stream into the CM's windows, counting samples, never wall-clock time.

Where the windows lie is :class:`streamdet.stream.policy.WindowGeometry`'s rule (regular windows
every ``hop`` samples, and a tail window at the end); this module produces them incrementally:

- Early windows [0, e), for the geometry's early ends e, as soon as e samples exist, tiled to W with
  ``streamdet.audio.fix_length`` (marked ``early``: the policy judges them more strictly).
- The first regular window is samples [0, W) and is emitted as soon as W samples exist.
- Then one every ``hop`` samples: [hop, hop + W), [2 hop, 2 hop + W), ...
- At end of stream, the geometry's tail window, if any; a stream shorter than W gives one window,
  tiled to W with ``streamdet.audio.fix_length`` as the paper pads short clips (its media span is
  [0, total)), if it has at least the geometry's ``min_tail`` samples.

Memory is bounded: the ring holds W samples, which is all the future windows (and the tail) need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamdet.audio import WINDOW_SAMPLES, fix_length
from streamdet.stream.policy import WindowGeometry
from streamdet.stream.ring import SampleRing


@dataclass(frozen=True)
class Window:
    """One window of a stream: ``samples`` (W float32) and its span in stream samples."""

    index: int
    start: int
    end: int
    samples: np.ndarray
    final: bool = False
    early: bool = False

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        return self.start / sample_rate, self.end / sample_rate


class Windower:
    """Push samples in, get complete windows out; ``finish`` gives the tail window."""

    def __init__(self, hop: int, window: int = WINDOW_SAMPLES, early: tuple[int, ...] = (),
                 min_tail: int = 0) -> None:
        if hop < 1 or window < 1:
            raise ValueError("hop and window must be positive")
        self.geometry = WindowGeometry(window, hop, early, min_tail)
        self._early = list(self.geometry.early)  # early ends not yet reached
        self.hop = hop
        self.window = window
        self._ring = SampleRing(window)
        self._next_start = 0
        self._count = 0
        self._last_end = 0
        self._finished = False

    @property
    def total(self) -> int:
        """Samples pushed so far."""
        return self._ring.total

    @property
    def windows_emitted(self) -> int:
        return self._count

    def push(self, samples: np.ndarray) -> list[Window]:
        if self._finished:
            raise RuntimeError("windower already finished")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        out: list[Window] = []
        ring, size, offset = self._ring, samples.size, 0
        # Feed up to each window boundary in turn, so that one large chunk cannot skip windows
        # whose start the W-sample ring would otherwise have overwritten.
        while offset < size:
            early = bool(self._early)
            boundary = self._early[0] if early else self._next_start + self.window
            take = min(boundary - ring.total, size - offset)
            if take > 0:
                # A whole chunk is the common case (a frame is far shorter than a hop): no slice view.
                ring.extend(samples if take == size else samples[offset:offset + take])
                offset += take
            if ring.total == boundary and early:
                self._early.pop(0)
                out.append(self._emit(0, fix_length(ring.latest(boundary), self.window), end=boundary,
                                      early=True))
            elif ring.total == boundary:
                out.append(self._emit(self._next_start, ring.latest(self.window)))
                self._next_start += self.hop
        return out

    def finish(self) -> Window | None:
        """The last window at end of stream, or None if there is nothing left to cover."""
        if self._finished:
            raise RuntimeError("windower already finished")
        self._finished = True
        total = self.total
        tail = self.geometry.tail_span(total, self._last_end)
        if tail is None:
            return None
        start, end = tail
        if total < self.window:
            return self._emit(start, fix_length(self._ring.latest(total), self.window), end=end, final=True)
        return self._emit(start, self._ring.latest(self.window), final=True)

    def _emit(self, start: int, samples: np.ndarray, end: int | None = None, final: bool = False,
              early: bool = False) -> Window:
        end = start + self.window if end is None else end
        window = Window(self._count, start, end, samples, final, early)
        self._count += 1
        self._last_end = end
        return window
