"""Real-time pacing for the load senders: one loop, a heap of due times, every stream's frames."""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence

DEFAULT_TICK_S = 0.002
"""How often the pacing loop wakes at most. Each wake-up costs the client CPU (tens of µs on a small
shared VM, more than encoding and sending a frame), and N streams with independent starts have N
distinct due times per frame period: 100 streams of 20-ms frames would wake the loop 5,000 times a
second. Frames due within one tick leave together at its end instead: at most 500 wake-ups a second,
each frame at most 2 ms late (a tenth of a 20-ms frame; the lateness is measured, ``pacing_lag_ms``,
and latency runs from the actual send time)."""


async def paced(schedule: Mapping[int, Sequence[float]],
                tick_s: float = DEFAULT_TICK_S) -> AsyncIterator[tuple[int, int, float]]:
    """``(stream, frame, due)`` for every frame of every stream, each once its due time has passed,
    earliest first: one loop paces all streams in real time (a heap of due times). ``schedule[i][k]``
    is when frame ``k`` of stream ``i`` is due (``time.monotonic()`` seconds); every transport's
    sender uses it. The loop sleeps until the end of the ``tick_s`` grid step that holds the next due
    time (``DEFAULT_TICK_S``); ``tick_s=0`` wakes at every due time."""
    heap = [(times[0], i, 0) for i, times in schedule.items() if len(times)]
    heapq.heapify(heap)
    while heap:
        due, i, k = heap[0]
        now = time.monotonic()
        if due > now:
            wake = math.ceil(due / tick_s) * tick_s if tick_s > 0 else due
            await asyncio.sleep(max(wake, due) - now)
            continue
        heapq.heappop(heap)
        yield i, k, due
        if k + 1 < len(schedule[i]):
            heapq.heappush(heap, (schedule[i][k + 1], i, k + 1))
