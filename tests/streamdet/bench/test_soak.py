"""The soak test (``scripts/soak``, ``streamdet.bench.soak``): its verdict on synthetic series, how it cuts
streams into segments and accounts for their windows, and a few seconds of it against a real service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from streamdet.audio import SAMPLE_RATE
from streamdet.bench.load import expected_windows
from streamdet.bench.soak import (
    SERIES_FIELDS,
    FrameTimes,
    Soak,
    SoakConfig,
    SoakLoad,
    block_table,
    read_series,
    summarize,
)
from streamdet.service.frames import parse_frame

ROOT = Path(__file__).resolve().parents[3]
SUMMARY_FIELDS = {"ok", "failures", "rows", "duration_s", "rss_mb", "fds", "threads", "crashes", "server_exit",
                  "windows_scored", "segments_closed", "windows_expected", "windows_scored_closed",
                  "windows_dropped", "windows_missing", "alerts_raised", "alerts_cleared", "latency_ms", "load1"}


def row(t_s: float, rss_mb: float = 500.0, fds: int = 25, *, alive: bool = True, missing: int = 0,
        expected: int = 100) -> dict:
    """One sample of a healthy service, fields overridable."""
    values = {name: 0 for name in SERIES_FIELDS}
    values.update(t_s=t_s, server_alive=alive, rss_mb=rss_mb if alive else None, fds=fds if alive else None,
                  threads=10 if alive else None, load1=1.0, load5=1.0, windows_scored=expected - missing,
                  windows_expected=expected, windows_scored_closed=expected - missing, windows_missing=missing,
                  latency_p50_ms=50.0, latency_p99_ms=120.0, latency_max_ms=150.0)
    return values


def flat_hour() -> list[dict]:
    return [row(30.0 * i, rss_mb=500.0 + (i % 3)) for i in range(1, 121)]


def test_a_flat_hour_passes_and_its_summary_is_complete():
    summary = summarize(flat_hour(), warmup_s=120)
    assert summary["ok"] and summary["failures"] == []
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["rss_mb"]["baseline_t_s"] == 120.0 and summary["rss_mb"]["max"] == 502.0
    assert abs(summary["rss_mb"]["drift_pct"]) < 1
    assert summary["fds"]["drift"] == 0 and summary["crashes"] == 0
    assert summary["windows_expected"] == 120 * 100 and summary["windows_missing"] == 0


def test_memory_growing_10_percent_after_the_warm_up_fails():
    rows = [row(30.0 * i, rss_mb=500.0 + 0.5 * i) for i in range(1, 121)]  # 502 at 120 s, 560 at the end
    summary = summarize(rows, warmup_s=120, max_rss_drift_pct=5)
    assert not summary["ok"]
    assert summary["rss_mb"]["drift_pct"] > 10
    assert any("resident memory grew" in f for f in summary["failures"])


def test_growth_during_the_warm_up_alone_passes():
    rows = [row(30.0 * i, rss_mb=300.0 if i < 4 else 500.0) for i in range(1, 121)]
    summary = summarize(rows, warmup_s=120)
    assert summary["ok"] and summary["rss_mb"]["first"] == 300.0 and summary["rss_mb"]["baseline"] == 500.0


def test_missing_windows_fail():
    rows = flat_hour()
    rows[50] = row(rows[50]["t_s"], missing=3)
    summary = summarize(rows)
    assert not summary["ok"] and summary["windows_missing"] == 3
    assert summary["failures"] == ["3 window(s) missing"]


def test_a_crash_fails_and_memory_is_judged_on_the_samples_before_it():
    rows = flat_hour()[:60] + [row(1830.0, alive=False)]
    summary = summarize(rows, server_exit=-9)
    assert not summary["ok"] and summary["crashes"] == 1
    assert summary["rss_mb"]["last"] is not None
    assert any("crashed" in f for f in summary["failures"]) and any("status -9" in f for f in summary["failures"])


def test_leaking_file_descriptors_fail():
    rows = [row(30.0 * i, fds=25 + i) for i in range(1, 121)]
    summary = summarize(rows, max_fd_drift=16)
    assert not summary["ok"] and summary["fds"]["drift"] > 16
    assert any("open files grew" in f for f in summary["failures"])


def test_no_samples_is_a_failure():
    assert summarize([])["ok"] is False


def test_the_series_reads_back_and_folds_into_five_minute_blocks(tmp_path: Path):
    import csv

    rows = [row(30.0 * i + 0.1 * i) for i in range(1, 121)]  # samples drift a little late, as they do
    rows[-1]["windows_missing"] = 2
    path = tmp_path / "series.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, SERIES_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    back = read_series(path)
    assert back == rows
    table = block_table(back, 300).splitlines()
    assert len(table) == 2 + 12  # header, rule, one line per 5 minutes
    assert table[2].split(" | ")[5:7] == ["1000", "1000"]  # ten samples of 100 expected windows each
    assert table[-1].split(" | ")[8] == "2"


def test_frame_times_are_due_when_their_last_sample_is_captured():
    times = FrameTimes(10.0, 0.02, 180_000)
    assert len(times) == 180_000 and times[0] == 10.02 and abs(times[-1] - (10.0 + 3600.0)) < 1e-6
    assert times[1:3] == [10.0 + 0.04, 10.0 + 0.06]


def test_streams_are_cut_into_staggered_segments_whose_windows_are_accounted():
    chunk = 320  # 20 ms
    clips = [np.full(SAMPLE_RATE, 0.1, np.float32), np.full(SAMPLE_RATE // 2, -0.1, np.float32)]
    load = SoakLoad(2, segment_s=5.0, chunk=chunk, hop=SAMPLE_RATE, clips=clips, prefix="t")
    per_stream: dict[int, list[tuple[str, int, bool]]] = {0: [], 1: []}
    for k in range(750):  # 15 s of each stream
        for i in (0, 1):
            segment, seq, samples, end = load.frame(i, k, k == 749)
            assert len(samples) == chunk
            segment.samples += len(samples)
            segment.sent.append(float(k))
            per_stream[i].append((segment.stream_id, seq, end))
    # Stream 0: three whole 5-s segments; stream 1 shifted by half a segment (2.5 s, 2.5 s... 5 s, 2.5 s).
    ends0 = [k for k, (_, _, end) in enumerate(per_stream[0]) if end]
    ends1 = [k for k, (_, _, end) in enumerate(per_stream[1]) if end]
    assert ends0 == [249, 499, 749] and ends1 == [124, 374, 624, 749]
    assert [seq for _, seq, _ in per_stream[1][124:127]] == [124, 0, 1]  # a new stream id restarts its seq
    assert len({sid for sid, _, _ in per_stream[1]}) == 4
    # Stream 1 starts at the second clip (the clips are looped from another one per stream).
    assert load.frame(1, 0, False)[2][0] < 0 < load.frame(0, 0, False)[2][0]

    first = load.open["t-000-00000"]
    windows = expected_windows(first.samples, SAMPLE_RATE)
    for w in range(windows - 1):  # one window never comes
        load.on_event(SimpleNamespace(event="score", stream_id=first.stream_id, end=(w + 4) * 1.0), 300.0)
    load.on_event(SimpleNamespace(event="raised", stream_id=first.stream_id), 300.0)
    load.on_event(SimpleNamespace(event="end", stream_id=first.stream_id, dropped=0), 300.0)
    interval = load.take_interval()
    assert (interval.closed, interval.expected, interval.scored_closed) == (1, windows, windows - 1)
    assert interval.missing == 1 and interval.alerts["raised"] == 1
    assert len(interval.latencies) == windows - 1 and min(interval.latencies) > 0
    assert "t-000-00000" not in load.open and load.take_interval().closed == 0


def test_a_few_seconds_against_a_real_service_write_the_series_and_a_passing_summary(mel_cm_dir: Path,
                                                                                      tmp_path: Path):
    out = tmp_path / "soak"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak"), "--engine", str(mel_cm_dir),
                           "--streams", "2", "--duration", "8", "--segment", "3", "--interval", "2",
                           "--warmup", "0", "--threads", "1", "--settle-s", "60", "--max-rss-drift-pct", "50",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    report = json.loads((out / "soak.json").read_text())
    summary = report["summary"]
    assert SUMMARY_FIELDS <= set(summary) and report["kind"] == "soak" and report["commit"]
    assert summary["crashes"] == 0 and summary["server_exit"] == 0
    # 2 streams of 8 s in 3-s segments, staggered: every segment ended and every window came.
    assert summary["segments_closed"] >= 6 and summary["windows_missing"] == 0
    assert summary["windows_expected"] == summary["windows_scored_closed"] + summary["windows_dropped"] > 0
    assert summary["rss_mb"]["max"] > 0 and summary["fds"]["first"] > 0 and summary["threads"]["first"] > 0
    series = (out / "series.csv").read_text().splitlines()
    assert series[0].split(",") == list(SERIES_FIELDS) and len(series) == summary["rows"] + 1
    assert done.returncode == (0 if summary["ok"] else 1), done.stdout + done.stderr
    assert ("soak: OK" if summary["ok"] else "soak: FAILED") in done.stdout


def test_bad_arguments_are_one_line_and_status_2(tmp_path: Path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak"), "--streams", "0", "--duration", "5",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stderr.strip().startswith("scripts/soak: error:")


async def test_the_soak_sends_every_frame_encoded_ahead_as_the_service_reads_it(tmp_path: Path):
    class Recorder:
        def __init__(self) -> None:
            self.messages: list[list[bytes]] = []

        async def send_encoded(self, parts: list[bytes]) -> None:
            self.messages.append(parts)

    clips = [np.linspace(-0.2, 0.2, SAMPLE_RATE, dtype=np.float32)]
    config = SoakConfig(streams=2, duration_s=0.3, segment_s=0.1, hop_s=0.05)  # 15 frames, 3 segments each
    soak = Soak(config, SimpleNamespace(), clips, tmp_path / "series.csv")
    sender = Recorder()
    await soak._send(sender, time.monotonic())
    frames = [parse_frame(m, 1 << 20) for m in sender.messages]
    assert len(frames) == 2 * 15 and all(len(f.samples) == 320 for f in frames)
    by_stream: dict[str, list[int]] = {}
    for frame in frames:
        by_stream.setdefault(frame.stream_id, []).append(frame.seq)
    assert all(seqs == list(range(len(seqs))) for seqs in by_stream.values())  # seq restarts per segment
    assert sum(f.end for f in frames) == len(by_stream)  # each segment ends once
    assert sum(s.samples for s in soak.load.open.values()) == 2 * 15 * 320
