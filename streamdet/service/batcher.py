"""The batcher: the one task that owns the scorer.

Windows of all streams wait in bounded per-stream queues. The batcher takes them round-robin (one
per stream per turn, so a busy stream cannot starve the others) as soon as ``max_batch`` are
waiting or the oldest has waited ``max_wait``, has the batch scored and hands each result to
``on_result``, in order within each stream. An optional ``measure`` runs on each batch off the event
loop before its results are handed on (the service measures each window's speech there). ``submit``
never blocks: when a stream's queue is full its oldest window is dropped and handed to ``on_drop``.

A scorer that runs in-process (one that keeps the base ``Scorer.score``) is run in the batcher's own
``lanes`` threads, each scoring a whole batch: ``measure`` and then the model, in the same thread,
so a batch costs one hand-off between threads each way (on a small VM every wake-up of a thread costs
the model time, docs/benchmarks.md). A scorer with its own ``score`` coroutine (a remote server) is
awaited, concurrently with ``measure`` in a thread.

Up to ``max_in_flight`` batches are handed to scoring at once (1: one after the other). With one
more than there are lanes, a batch is always formed and waiting when a lane finishes, so no lane
waits for the event loop between batches (on a 2-core CPU that gap left a core idle about a sixth of
the time). A stream has windows in at most one batch in flight, so its results still come in order.

Overload is shed, not queued, so that an overloaded service stays near real time (each window
shed goes to ``on_drop`` with its reason; a stream's newest window is never shed, so every stream
keeps being scored):

- ``over_budget``: all streams together may hold ``max_pending_windows`` windows, or
  ``max_pending_bytes`` bytes of window audio; beyond either, the oldest window of the stream with
  the most waiting is shed (fair: the stream that floods loses its backlog, not the others).
- ``over_latency``: before each batch, windows that arrived more than ``max_latency_s`` ago are
  shed, so a score published late is at most about ``max_latency_s`` + one batch behind.

:meth:`overloaded` says why the batcher is over capacity (None when it is not): the service
answers ``/readyz`` with 503 and refuses new streams while it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
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

OVER_BUDGET, OVER_LATENCY = "over_budget", "over_latency"
"""Reasons a window is shed (``on_drop``), and why :meth:`Batcher.overloaded` says it is over capacity."""


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
        max_pending_windows: int | None = None,
        max_pending_bytes: int | None = None,
        max_latency_s: float | None = None,
        on_batch: BatchCallback | None = None,
        measure: MeasureCallback | None = None,
        lanes: int = 1,
        max_in_flight: int = 1,
    ) -> None:
        """``max_pending_windows``, ``max_pending_bytes``, ``max_latency_s``: the shedding bounds
        (module docstring); None = unbounded. ``lanes``: threads scoring batches of an in-process
        scorer; ``max_in_flight``: batches handed to scoring at once."""
        self.scorer = scorer
        self.max_batch = max(1, min(max_batch, scorer.max_batch))
        self.max_wait_s = max_wait_s
        self.max_pending_per_stream = max_pending_per_stream
        self.max_pending_windows = max_pending_windows
        self.max_pending_bytes = max_pending_bytes
        self.max_latency_s = max_latency_s
        if max_in_flight < 1 or lanes < 1:
            raise ValueError(f"lanes and max_in_flight must be at least 1, got {lanes} and {max_in_flight}")
        self.lanes = lanes
        self.max_in_flight = max_in_flight
        self._in_process = type(scorer).score is Scorer.score
        """The scorer runs here (its ``score_batch`` in our lanes), not behind its own ``score`` coroutine."""
        self._lanes: ThreadPoolExecutor | None = None
        self._on_result = on_result
        self._on_drop = on_drop
        self._on_batch = on_batch
        self._measure = measure
        # Insertion order is the round-robin order: a stream served goes to the back of the line.
        self._queues: dict[Hashable, deque[WindowJob]] = {}
        self._pending = 0
        self._pending_bytes = 0
        self._last_shed: tuple[float, str] | None = None
        """When a window was last shed (monotonic), and why."""
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._busy: set[Hashable] = set()
        """Streams with windows in a batch being scored: the next batch takes none of theirs."""

    @property
    def pending(self) -> int:
        """Windows waiting (not counting a batch being scored)."""
        return self._pending

    @property
    def pending_bytes(self) -> int:
        """Bytes of window audio waiting (not counting a batch being scored)."""
        return self._pending_bytes

    def overloaded(self, now: float | None = None) -> str | None:
        """Why the batcher is over capacity, or None: ``over_budget`` while the pending windows (or
        bytes) are at their budget, ``over_latency`` while the oldest waiting window is older than
        ``max_latency_s``; either also for ``max_latency_s`` after a window was shed for it, so that
        readiness does not flicker between batches of a service that keeps falling behind."""
        now = time.monotonic() if now is None else now
        if self._at_budget():
            return OVER_BUDGET
        if self.max_latency_s is None:
            return None
        if self._queues and now - min(q[0].arrival for q in self._queues.values()) > self.max_latency_s:
            return OVER_LATENCY
        if self._last_shed is not None and now - self._last_shed[0] <= self.max_latency_s:
            return self._last_shed[1]
        return None

    def start(self) -> None:
        if self._in_process:
            self._lanes = ThreadPoolExecutor(self.lanes, thread_name_prefix="streamdet-scoring")
        self._task = asyncio.create_task(self._run(), name="streamdet-batcher")

    def submit(self, job: WindowJob) -> None:
        """Queue a window; drops (and reports) the stream's oldest if its queue is full."""
        queue = self._queues.get(job.key)
        if queue is None:
            queue = self._queues[job.key] = deque()
        if len(queue) >= self.max_pending_per_stream:
            self._call(self._on_drop, self._pop_oldest(queue), "overload")
        queue.append(job)
        self._pending += 1
        self._pending_bytes += job.window.samples.nbytes
        self._shed_over_budget()
        self._wake.set()

    def shed_stale(self, now: float | None = None) -> int:
        """Shed every window that arrived more than ``max_latency_s`` before ``now``, except each
        stream's newest; returns how many. The batcher calls it before taking each batch."""
        if self.max_latency_s is None:
            return 0
        now = time.monotonic() if now is None else now
        shed = 0
        for queue in self._queues.values():
            while len(queue) > 1 and now - queue[0].arrival > self.max_latency_s:
                self._shed(queue, OVER_LATENCY, now)
                shed += 1
        return shed

    def _at_budget(self) -> bool:
        """Whether the pending windows (or bytes) have reached their budget: no room for a new stream."""
        return ((self.max_pending_windows is not None and self._pending >= self.max_pending_windows)
                or (self.max_pending_bytes is not None and self._pending_bytes >= self.max_pending_bytes))

    def _beyond_budget(self) -> bool:
        return ((self.max_pending_windows is not None and self._pending > self.max_pending_windows)
                or (self.max_pending_bytes is not None and self._pending_bytes > self.max_pending_bytes))

    def _shed_over_budget(self) -> None:
        # The stream with the most waiting loses its oldest, until within budget or every stream is
        # down to its newest window (admission control then keeps new streams out).
        while self._beyond_budget():
            queue = max(self._queues.values(), key=len)
            if len(queue) <= 1:
                return
            self._shed(queue, OVER_BUDGET, time.monotonic())

    def _shed(self, queue: deque[WindowJob], reason: str, now: float) -> None:
        self._last_shed = (now, reason)
        self._call(self._on_drop, self._pop_oldest(queue), reason)

    def _pop_oldest(self, queue: deque[WindowJob]) -> WindowJob:
        job = queue.popleft()
        self._pending -= 1
        self._pending_bytes -= job.window.samples.nbytes
        return job

    async def close(self) -> None:
        """Score everything still queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._stop_lanes()

    async def abandon(self) -> None:
        """Stop now (``close`` ran out of time): cancel the task and forget the queued windows. Neither
        callback is called for them, nor for the batch being scored: their submitters count them."""
        self._closing = True
        for task in (self._task, *self._in_flight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._queues, self._pending, self._pending_bytes = {}, 0, 0
        self._stop_lanes()

    def _stop_lanes(self) -> None:
        # Without waiting: a batch abandoned mid-model finishes in its thread, and nobody reads it.
        if self._lanes is not None:
            self._lanes.shutdown(wait=False, cancel_futures=True)
            self._lanes = None

    async def _run(self) -> None:
        while True:
            if not self._queues:
                if self._closing:
                    break
                await self._sleep()
                continue
            if len(self._in_flight) >= self.max_in_flight or not self._available():
                await self._sleep()  # a batch finishing (or a new window) wakes us
                continue
            await self._wait_for_batch()
            if not self._closing:  # closing scores everything still queued
                self.shed_stale()
            batch = self._take()
            if batch:
                self._busy.update(job.key for job in batch)
                task = asyncio.create_task(self._score(batch), name="streamdet-batch")
                self._in_flight.add(task)
                task.add_done_callback(self._batch_done)
        if self._in_flight:
            await asyncio.gather(*self._in_flight)

    async def _sleep(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    def _available(self) -> int:
        """Windows waiting that the next batch may take (none of a stream in a batch being scored)."""
        if not self._busy:
            return self._pending
        return sum(len(queue) for key, queue in self._queues.items() if key not in self._busy)

    async def _wait_for_batch(self) -> None:
        """Until max_batch windows wait, or the oldest has waited max_wait (or we are closing)."""
        while self._available() < self.max_batch and not self._closing:
            oldest = min((queue[0].enqueued for key, queue in self._queues.items() if key not in self._busy),
                         default=-math.inf)
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
        while len(batch) < self.max_batch:
            key = next((key for key in self._queues if key not in self._busy), None)
            if key is None:
                break
            queue = self._queues.pop(key)
            batch.append(self._pop_oldest(queue))
            if queue:
                self._queues[key] = queue
        return batch

    async def _score(self, batch: list[WindowJob]) -> None:
        try:
            await self._score_and_report(batch)
        finally:
            self._busy.difference_update(job.key for job in batch)

    async def _score_and_report(self, batch: list[WindowJob]) -> None:
        started = time.monotonic()
        try:
            if self._lanes is not None:
                probs = await asyncio.get_running_loop().run_in_executor(self._lanes, self._measure_and_score, batch)
            else:
                probs = await self._score_remotely(batch)
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

    def _measure_and_score(self, batch: list[WindowJob]) -> np.ndarray:
        """In a lane: the batch's speech, then its scores. Both finish before this batch's streams can
        be in another (a stream's speech is measured by one thread at a time)."""
        if self._measure is not None:
            self._measure(batch)
        return self.scorer.score_batch(np.stack([job.window.samples for job in batch]))

    async def _score_remotely(self, batch: list[WindowJob]) -> np.ndarray:
        """The scorer's own ``score`` coroutine, with ``measure`` in a thread meanwhile."""
        scoring = self.scorer.score(np.stack([job.window.samples for job in batch]))
        if self._measure is None:
            return await scoring
        probs, measured = await asyncio.gather(scoring, asyncio.to_thread(self._measure, batch),
                                               return_exceptions=True)
        for outcome in (probs, measured):
            if isinstance(outcome, BaseException):
                raise outcome
        return probs

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        # Callbacks publish and count; a bug in one must not stop the batcher for every stream.
        try:
            callback(*args)
        except Exception:
            log.exception("batcher callback %s failed", getattr(callback, "__name__", callback))
