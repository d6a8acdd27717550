"""The batcher: the one task that owns the scorer.

Windows of all streams wait in bounded per-stream queues. The batcher takes them round-robin (one
per stream per turn, so a busy stream cannot starve the others) as soon as ``max_batch`` are
waiting or the oldest has waited ``max_wait``, awaits ``scorer.score`` on the batch and hands each
result to ``on_result``, in order within each stream. An optional ``measure`` runs on the batch in a
worker thread while the scorer scores it (the service measures each window's speech there, off the
event loop and overlapping the model). ``submit`` never blocks: when a stream's
queue is full its oldest window is dropped and handed to ``on_drop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamdet.scoring.base import Scorer
from streamdet.stream.windower import Window

log = logging.getLogger(__name__)


@dataclass(eq=False)
class WindowJob:
    """A window waiting to be scored. ``arrival``: monotonic time its last sample arrived."""

    key: Hashable
    """Groups the jobs of one stream (the stream's session object)."""
    window: Window
    arrival: float
    enqueued: float = field(default_factory=time.monotonic)
    context: Any = None
    speech: float | None = None
    """The window's speech fraction, set by the batcher's ``measure`` (None: not measured)."""


ResultCallback = Callable[[WindowJob, float], None]
DropCallback = Callable[[WindowJob, str], None]
BatchCallback = Callable[[int, float], None]
MeasureCallback = Callable[[list[WindowJob]], None]


class Batcher:
    def __init__(
        self,
        scorer: Scorer,
        on_result: ResultCallback,
        on_drop: DropCallback,
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.01,
        max_pending_per_stream: int = 8,
        on_batch: BatchCallback | None = None,
        measure: MeasureCallback | None = None,
    ) -> None:
        self.scorer = scorer
        self.max_batch = max(1, min(max_batch, scorer.max_batch))
        self.max_wait_s = max_wait_s
        self.max_pending_per_stream = max_pending_per_stream
        self._on_result = on_result
        self._on_drop = on_drop
        self._on_batch = on_batch
        self._measure = measure
        # Insertion order is the round-robin order: a stream served goes to the back of the line.
        self._queues: dict[Hashable, deque[WindowJob]] = {}
        self._pending = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Windows waiting (not counting a batch being scored)."""
        return self._pending

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="streamdet-batcher")

    def submit(self, job: WindowJob) -> None:
        """Queue a window; drops (and reports) the stream's oldest if its queue is full."""
        queue = self._queues.get(job.key)
        if queue is None:
            queue = self._queues[job.key] = deque()
        if len(queue) >= self.max_pending_per_stream:
            self._pending -= 1
            self._call(self._on_drop, queue.popleft(), "overload")
        queue.append(job)
        self._pending += 1
        self._wake.set()

    async def close(self) -> None:
        """Score everything still queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def abandon(self) -> None:
        """Stop now (``close`` ran out of time): cancel the task and forget the queued windows. Neither
        callback is called for them, nor for the batch being scored: their submitters count them."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._queues, self._pending = {}, 0

    async def _run(self) -> None:
        while True:
            if not self._queues:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._wait_for_batch()
            await self._score(self._take())

    async def _wait_for_batch(self) -> None:
        """Until max_batch windows wait, or the oldest has waited max_wait (or we are closing)."""
        while self._pending < self.max_batch and not self._closing:
            oldest = min(queue[0].enqueued for queue in self._queues.values())
            delay = oldest + self.max_wait_s - time.monotonic()
            if delay <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                return

    def _take(self) -> list[WindowJob]:
        batch: list[WindowJob] = []
        while len(batch) < self.max_batch and self._queues:
            key = next(iter(self._queues))
            queue = self._queues.pop(key)
            batch.append(queue.popleft())
            if queue:
                self._queues[key] = queue
        self._pending -= len(batch)
        return batch

    async def _score(self, batch: list[WindowJob]) -> None:
        started = time.monotonic()
        try:
            scoring = self.scorer.score(np.stack([job.window.samples for job in batch]))
            if self._measure is not None:
                # Both finish before the next batch starts (one measuring thread at a time).
                probs, measured = await asyncio.gather(scoring, asyncio.to_thread(self._measure, batch),
                                                       return_exceptions=True)
                for outcome in (probs, measured):
                    if isinstance(outcome, BaseException):
                        raise outcome
            else:
                probs = await scoring
            probs = np.asarray(probs)
            if probs.shape != (len(batch),):
                raise ValueError(f"scorer returned shape {probs.shape} for a batch of {len(batch)}")
        except Exception:
            # A failing model must not take the service down: these windows are lost, and counted.
            log.exception("scoring a batch of %d windows failed", len(batch))
            for job in batch:
                self._call(self._on_drop, job, "error")
            return
        if self._on_batch is not None:
            self._call(self._on_batch, len(batch), time.monotonic() - started)
        for job, prob in zip(batch, probs, strict=True):
            if not 0.0 <= prob <= 1.0:  # NaN fails this too: never published, dropped and counted
                self._call(self._on_drop, job, "non_finite_score" if not np.isfinite(prob) else "score_out_of_range")
                continue
            self._call(self._on_result, job, float(prob))

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        # Callbacks publish and count; a bug in one must not stop the batcher for every stream.
        try:
            callback(*args)
        except Exception:
            log.exception("batcher callback %s failed", getattr(callback, "__name__", callback))
