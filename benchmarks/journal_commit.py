"""What one journal commit costs: ``Journal.append`` of batches of real-sized events, with SQLite's
``synchronous`` at NORMAL and at FULL (WAL mode both), on the disk under ``--dir``.

    python benchmarks/journal_commit.py --dir runs/bench/work/journal --out runs/bench/docs/journal-commit.json

Prints, per setting and batch size, the median and p99 of a commit and the cost per event, with the
load average before and after (the machine is shared). The writer runs in its own thread in the
service, so this is time the event loop does not spend, but it is the floor of the delay the journal
adds before an event goes out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from streamdet.service.events import WindowEvent, encode_event
from streamdet.service.journal import Journal


def event(seq: int) -> WindowEvent:
    return WindowEvent(event="score", stream_id=f"call-{seq % 40}", window=seq, start=float(seq), end=seq + 4.0375,
                       wall_time=time.time(), p_spoof=0.123456789, p_bonafide=0.876543211, spoof_threshold=0.98,
                       threshold=0.98, spoof=False, alert=False, final=False, model_id="telephone_mellcnn@0123456789ab",
                       latency_ms=31.4, node="bench-0a1b2c", seq=seq, stream_seq=seq, event_id=f"bench-0a1b2c-{seq}")


def measure(directory: Path, synchronous: str, batch: int, commits: int) -> dict:
    path = directory / f"{synchronous}-{batch}.sqlite"
    journal = Journal.open(path, retention_s=1e9, retention_bytes=1 << 30, synchronous=synchronous)  # type: ignore[arg-type]
    seq, times = 0, []
    for _ in range(commits):
        rows = []
        for _ in range(batch):
            seq += 1
            e = event(seq)
            rows.append((seq, e.wall_time, e.topic, encode_event(e)[1]))
        start = time.perf_counter()
        journal.append(rows)
        times.append(time.perf_counter() - start)
    journal.close()
    times.sort()
    median = statistics.median(times)
    return {"synchronous": synchronous, "batch": batch, "commits": commits,
            "median_ms": median * 1e3, "p99_ms": times[int(0.99 * (len(times) - 1))] * 1e3,
            "us_per_event": median / batch * 1e6, "event_bytes": len(rows[0][3])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("runs/bench/work/journal"))
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        for synchronous in ("normal", "full"):
            for batch in (int(b) for b in args.batches.split(",")):
                results.append(measure(Path(work), synchronous, batch, args.commits))
                r = results[-1]
                print(f"{synchronous:6} batch {batch:3}: commit median {r['median_ms']:.3f} ms, "
                      f"p99 {r['p99_ms']:.3f} ms, {r['us_per_event']:.1f} us/event")
    report = {"load_before": load_before, "load_after": os.getloadavg(), "results": results}
    print(f"load average before {load_before[0]:.2f}, after {report['load_after'][0]:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
