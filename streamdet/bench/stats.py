"""Small statistics for benchmark reports: percentiles in milliseconds, medians of repeated timings."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p90, p95, p99, max and mean of latencies given in seconds, reported in milliseconds."""
    if len(seconds) == 0:
        return {"count": 0, **{f"p{q}_ms": None for q in PERCENTILES}, "max_ms": None, "mean_ms": None}
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    summary: dict[str, float | int | None] = {"count": int(ms.size)}
    for q in PERCENTILES:
        summary[f"p{q}_ms"] = round(float(np.percentile(ms, q)), 2)
    summary["max_ms"] = round(float(ms.max()), 2)
    summary["mean_ms"] = round(float(ms.mean()), 2)
    return summary


def time_calls(call: Callable[[], object], repeats: int, budget_s: float | None = None,
               min_repeats: int = 2) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls (fewer, but at least ``min_repeats``, once ``budget_s`` is spent)."""
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(repeats):
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
        if budget_s is not None and len(times) >= min_repeats and time.perf_counter() - started > budget_s:
            break
    return times


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))
