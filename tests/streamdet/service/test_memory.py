"""``HeapTrimmer``: the heap's freed pages go back to the system (glibc only)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamdet.service.memory import HeapTrimmer, limit_malloc_arenas

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


ARENAS_PROBE = """
import ctypes, ctypes.util, sys, tempfile, threading
from streamdet.service.memory import limit_malloc_arenas
limited = limit_malloc_arenas() if sys.argv[1] == "limit" else None
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
ready, done = threading.Barrier(9), threading.Event()
def worker():
    libc.malloc(1024)  # a thread's first malloc attaches it to an arena (a new one while allowed)
    ready.wait()
    done.wait()
threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads: t.start()
ready.wait()
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    handle = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(limited, open(out.name).read().count("<heap nr="))
done.set()
"""


@needs_glibc
def test_limiting_arenas_makes_eight_threads_share_two_heaps_instead_of_one_each() -> None:
    # In a fresh interpreter: arenas are per process, and the test session's threads have theirs.
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}

    def heaps(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", ARENAS_PROBE, mode], capture_output=True, text=True,
                             env=env, check=True, timeout=60).stdout.split()
        return out[0], int(out[1])

    assert heaps("limit") == ("True", 2)
    _, unlimited = heaps("default")
    assert unlimited >= 5  # glibc's default: a new arena per thread, up to 8 per core


@needs_glibc
def test_an_operators_malloc_arena_max_wins(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
