"""Real-time pacing for the load senders: one loop, a heap of due times, every stream's frames."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator, Mapping, Sequence


async def paced(schedule: Mapping[int, Sequence[float]]) -> AsyncIterator[tuple[int, int, float]]:
    """``(stream, frame, due)`` for every frame of every stream, each at its due time, earliest first:
    one loop paces all streams in real time (a heap of due times). ``schedule[i][k]`` is when frame
    ``k`` of stream ``i`` is due (``time.monotonic()`` seconds); every transport's sender uses it."""
    heap = [(times[0], i, 0) for i, times in schedule.items() if len(times)]
    heapq.heapify(heap)
    while heap:
        due, i, k = heap[0]
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
            continue
        heapq.heappop(heap)
        yield i, k, due
        if k + 1 < len(schedule[i]):
            heapq.heappush(heap, (schedule[i][k + 1], i, k + 1))
