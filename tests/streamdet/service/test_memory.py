"""``HeapTrimmer``: the heap's freed pages go back to the system (glibc only)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamdet.service.memory import HeapTrimmer

MIB = 1 << 20
needs_glibc = pytest.mark.skipif(not HeapTrimmer().available or not Path("/proc/self/statm").exists(),
                                 reason="needs glibc (malloc_trim, mallinfo2) and /proc")


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def leave_freed_heap(total: int = 64 * MIB) -> bytearray:
    """Fill ``total`` bytes of heap with 16 KiB blocks (below glibc's mmap threshold), free all but
    the last (which pins the heap's top, so that free() alone cannot shrink it); returns the last."""
    blocks = [bytearray(b"\1" * (16 << 10)) for _ in range(total // (16 << 10))]
    last = blocks.pop()
    blocks.clear()
    return last


@needs_glibc
def test_trim_returns_64mib_of_freed_heap_to_the_system() -> None:
    trimmer = HeapTrimmer()
    pin = leave_freed_heap()
    free = trimmer.free_bytes()
    before = rss()
    trimmer.trim()
    after = rss()
    assert free is not None and free >= 48 * MIB
    assert before - after >= 48 * MIB, (before / MIB, after / MIB)
    del pin


SCENARIO = """
import asyncio
from streamdet.service.memory import HeapTrimmer

def leave_freed_heap(total=64 << 20):
    blocks = [bytearray(b"\\1" * (16 << 10)) for _ in range(total // (16 << 10))]
    last = blocks.pop()
    blocks.clear()
    return last

async def main():
    trimmer = HeapTrimmer(interval_s=0.01, slack_bytes=32 << 20)
    task = asyncio.create_task(trimmer.run())
    trimmer.trim()  # start from a trimmed heap
    counts = [trimmer.trims]
    await asyncio.sleep(0.2)
    counts.append(trimmer.trims)  # nothing freed: nothing to do
    pin = leave_freed_heap()
    for _ in range(3000):  # up to 30 s: a loaded machine may starve the trimmer's thread for a while
        await asyncio.sleep(0.01)
        if trimmer.trims > counts[0]:
            break
    counts.append(trimmer.trims)
    await asyncio.sleep(0.2)
    counts.append(trimmer.trims)  # the freed chunks are still free, but already trimmed
    del pin
    task.cancel()
    print(*counts)

asyncio.run(main())
"""


@needs_glibc
def test_run_trims_once_after_a_64mib_burst_is_freed_not_again_while_idle() -> None:
    # In a fresh interpreter: in a long test session the heap already holds freed fragments that a
    # burst reuses, so "free bytes grew since the last trim" depends on what ran before.
    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120, check=True)
    first, idle, burst, idle_again = map(int, done.stdout.split())
    assert idle == first, "nothing freed: nothing to trim"
    assert burst == first + 1, "the freed 64 MiB trimmed once"
    assert idle_again == first + 1, "already trimmed: not again while idle"


async def test_without_glibc_the_trimmer_does_nothing_and_run_returns(monkeypatch) -> None:
    monkeypatch.setattr("streamdet.service.memory._glibc", lambda: None)
    trimmer = HeapTrimmer(interval_s=0.01)
    assert not trimmer.available and trimmer.free_bytes() is None
    trimmer.trim()
    await asyncio.wait_for(trimmer.run(), 5)
    assert trimmer.trims == 0
