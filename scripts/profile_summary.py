"""Where a profiled service's samples go: py-spy's raw (collapsed-stack) output, one line per
category, as a Markdown table (docs/benchmarks.md, "Profile (before host-path work)").

    py-spy record --pid PID --rate 50 --duration 60 --nonblocking --format raw -o service.raw
    python scripts/profile_summary.py service.raw

Each sample goes to the category of its deepest streamdet frame (the code that asked for the
work: a torch convolution under ``LCNN.forward`` is model time, a pyzmq call under the ZeroMQ
ingest is ingest time); samples with no streamdet frame below the event loop or the thread pool go
to the library they are in.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

# (substring of a frame, category), first match wins; streamdet frames are tried first.
STREAMDET_RULES: tuple[tuple[str, str], ...] = (
    ("streamdet/models/mel.py", "mel front-end (torch)"),
    ("streamdet/models/", "model forward (LCNN, torch)"),
    # A traced CM runs no Python below the scorer: its samples end in the scorer's _forward.
    ("_forward (streamdet/scoring/torch_scorer.py", "model forward (traced CM: mel + LCNN)"),
    ("streamdet/scoring/", "scorer glue (tensors in/out)"),
    ("streamdet/stream/speech.py", "VAD (Silero, ONNX Runtime)"),
    ("streamdet/stream/edge.py", "mixdown + resampling (soxr)"),
    ("streamdet/stream/ring.py", "ring / windowing / session"),
    ("streamdet/stream/windower.py", "ring / windowing / session"),
    ("streamdet/stream/session.py", "ring / windowing / session"),
    ("streamdet/stream/", "alerts / policy"),
    ("streamdet/service/frames.py", "frame header + payload parsing"),
    ("streamdet/service/ingest/", "ZeroMQ ingest loop (recv, per-frame dispatch)"),
    ("streamdet/service/publisher.py", "event publishing (JSON, PUB, journal)"),
    ("streamdet/service/events.py", "event publishing (JSON, PUB, journal)"),
    ("streamdet/service/journal.py", "event publishing (JSON, PUB, journal)"),
    ("streamdet/service/batcher.py", "batcher"),
    ("streamdet/service/registry.py", "registry"),
    ("streamdet/service/http.py", "HTTP / metrics"),
)
WAITS = ("wait: event loop in epoll", "wait: idle worker thread")
"""Blocked, not computing: py-spy's idle filter does not catch these under --nonblocking."""
IDLE_WORKER_LEAF = "_worker (concurrent/futures/thread.py:81)"  # work_queue.get(block=True)
LIBRARY_RULES: tuple[tuple[str, str], ...] = (
    ("selectors.py", WAITS[0]),
    ("zmq/", "pyzmq asyncio glue"),
    ("concurrent/futures/", "thread-pool hand-off"),
    ("asyncio/threads.py", "thread-pool hand-off"),
    ("asyncio/", "asyncio loop"),
    ("threading.py", "thread-pool hand-off"),
)
ENTRY_POINTS = ("streamdet/commands/serve.py", "streamdet/cli.py", "streamdet/cmdline.py", "streamdet/__main__.py")


def category(frames: list[str]) -> str:
    """The category of one sample's stack (root first, as py-spy writes it)."""
    for frame in reversed(frames):
        if "streamdet/" in frame and not any(entry in frame for entry in ENTRY_POINTS):
            for pattern, name in STREAMDET_RULES:
                if pattern in frame:
                    return name
            return "other streamdet"
    if frames[-1] == IDLE_WORKER_LEAF:
        return WAITS[1]
    for frame in reversed(frames):
        for pattern, name in LIBRARY_RULES:
            if pattern in frame:
                return name
    return "other"


def summarise(path: Path) -> tuple[collections.Counter[str], int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        counts[category(stack.split(";"))] += int(count)
    return counts, sum(counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="py-spy record --format raw output")
    args = parser.parse_args()
    counts, total = summarise(args.raw)
    waiting = sum(counts.get(name, 0) for name in WAITS)
    print("| category | samples | % of samples | % of busy samples |\n| --- | ---: | ---: | ---: |")
    for name, n in counts.most_common():
        busy = "-" if name in WAITS else f"{100 * n / (total - waiting):.1f}"
        print(f"| {name} | {n} | {100 * n / total:.1f} | {busy} |")
    print(f"| total | {total} | 100.0 | |")


if __name__ == "__main__":
    main()
