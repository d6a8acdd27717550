"""A thousand streams in trouble at once cost a few log lines per reason, not a thousand: dropped
windows (``StreamRegistry.on_drop``) and rejected frames (``RejectReporter``) are logged at most once
a second per reason across all streams, and counted each. Before, each dropped window logged its own
line (a burst of 1 MiB frames logged 95k-194k lines), and rejects once per (stream, reason)."""

from __future__ import annotations

import logging
import time

import numpy as np

from streamdet.errors import ProtocolError
from streamdet.service.ingest import RejectReporter
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.registry import StreamRegistry
from streamdet.stream.policy import StreamPolicy

STREAMS = 1_000


def most_lines(elapsed_s: float) -> int:
    """Lines one reason may log in ``elapsed_s`` at one a second (the first at once)."""
    return 1 + int(elapsed_s) + 1


def test_1000_streams_each_dropping_a_window_log_at_most_one_line_per_second(caplog) -> None:
    metrics = ServiceMetrics()
    registry: StreamRegistry

    def drop_at_once(job) -> None:  # a batcher with no room: every window is dropped
        registry.on_drop(job, "overload")

    registry = StreamRegistry(StreamPolicy(), drop_at_once, publisher=None, metrics=metrics,  # type: ignore[arg-type]
                              model_id="m", max_streams=STREAMS)
    audio = np.zeros((70_000, 1), np.float32)  # 4.4 s: at least one window each
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "streamdet.service.registry"):
        for i in range(STREAMS):
            registry.push(f"s{i}", audio, 16_000, 1)
    elapsed = time.monotonic() - started
    dropped = metrics.windows_dropped.labels("overload")._value.get()
    lines = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped >= STREAMS
    assert 1 <= len(lines) <= most_lines(elapsed), (len(lines), elapsed)


def test_1000_streams_each_sending_a_bad_frame_log_at_most_one_line_per_second(caplog) -> None:
    metrics = ServiceMetrics()
    rejects = RejectReporter(metrics)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "streamdet.service.ingest"):
        for i in range(STREAMS):
            rejects.report(f"s{i}", ProtocolError("oversize", "2 MiB"), "zmq")
    elapsed = time.monotonic() - started
    assert metrics.rejects.labels("oversize")._value.get() == STREAMS
    assert 1 <= len(caplog.records) <= most_lines(elapsed), (len(caplog.records), elapsed)
    assert "stream=s0 reason=oversize" in caplog.records[0].getMessage()
