"""Keeping the service's memory flat.

Giving memory back after a burst: glibc keeps the heap pages that freed objects leave behind (a
burst of large frames left the process gigabytes above its idle size), and only ``malloc_trim``
returns them to the system. ``HeapTrimmer`` checks the heap's free bytes every few seconds and
trims when they grew by more than a slack since its last trim.

One heap per thread: glibc gives every new thread its own arena (up to 8 per core), and a thread
that runs the model keeps the model's activations (tens of MB) as free chunks in its arena. Threads
of the default executor start on demand, so in a one-hour soak a thread started at minute 10 under a
load spike stepped resident memory up by 48 MB for good. ``limit_malloc_arenas`` caps the arenas (as
``MALLOC_ARENA_MAX`` does), so the threads share heaps and a late thread reuses what the others
freed. On a C library without these calls (musl, macOS) both do nothing."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): every field a ``size_t``."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is a glibc with ``malloc_trim`` and ``mallinfo2``; else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        libc.mallinfo2.argtypes, libc.mallinfo2.restype = [], _MallInfo2
    except (OSError, AttributeError):
        return None
    return libc


M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter for the most arenas (malloc.h)."""
MALLOC_ARENAS = 2
"""Arenas the service runs with: the main thread's and one the worker threads share (the setting
commonly used for threaded Python services); scoring threads spend their time in the model, not in
``malloc``, so they hardly wait for each other's lock."""


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``count`` (call before threads start); False without glibc, or
    when ``MALLOC_ARENA_MAX`` is set in the environment (the operator's choice wins)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(libc.mallopt(M_ARENA_MAX, count))


class HeapTrimmer:
    """``run()`` (a task): every ``interval_s``, if the heap's free bytes grew by more than
    ``slack_bytes`` since the last trim, ``malloc_trim(0)`` in a worker thread (it walks every arena;
    ctypes releases the GIL meanwhile). Trimmed pages stay counted as free chunks (only their memory
    is returned), hence "grew since": an idle heap is not trimmed again and again."""

    def __init__(self, interval_s: float = 2.0, slack_bytes: int = 32 << 20) -> None:
        self.interval_s = interval_s
        self.slack_bytes = slack_bytes
        self._libc = _glibc()
        self.trims = 0
        self._trimmed_free = 0
        """The heap's free bytes right after the last trim (or the least seen since)."""

    @property
    def available(self) -> bool:
        return self._libc is not None

    def free_bytes(self) -> int | None:
        """Bytes the heap holds free (not returned to the system), or None without glibc."""
        return None if self._libc is None else int(self._libc.mallinfo2().fordblks)

    def trim(self) -> None:
        """Return the heap's free pages to the system now (blocking)."""
        if self._libc is not None:
            self._libc.malloc_trim(0)
            self.trims += 1
            self._trimmed_free = self.free_bytes() or 0

    def trim_if_grown(self) -> bool:
        """Trim if the heap's free bytes grew by more than the slack since the last trim (blocking:
        both calls walk every arena, so ``run`` makes them in a worker thread)."""
        free = self.free_bytes() or 0
        self._trimmed_free = min(self._trimmed_free, free)  # freed chunks reused since
        if free - self._trimmed_free <= self.slack_bytes:
            return False
        self.trim()
        log.debug("heap trimmed: %.0f MiB were free", free / (1 << 20))
        return True

    async def run(self) -> None:
        if self._libc is None:
            log.debug("no glibc malloc_trim: freed heap memory stays with the process")
            return
        while True:
            await asyncio.sleep(self.interval_s)
            await asyncio.to_thread(self.trim_if_grown)
