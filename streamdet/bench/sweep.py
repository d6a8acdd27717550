"""Grow the number of streams until the service-level objective fails; report the largest N that met it.

Default objective: p99 end-to-end latency ≤ 500 ms and zero drops. A step also fails when
windows never came, when streams did not end within the settle time, or when the client itself could
not keep real-time pace (p99 send lag above ``max_pacing_lag_ms``): then the offered load was lower
than N real-time streams and the step proves nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_SWEEP = (4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128)


@dataclass(frozen=True)
class SLO:
    p99_ms: float = 500.0
    max_drops: int = 0
    max_pacing_lag_ms: float = 100.0

    def failures(self, step: dict[str, Any]) -> list[str]:
        """Why ``step`` misses the objective (empty when it meets it)."""
        reasons = []
        p99 = step["latency_ms"]["p99_ms"]
        if p99 is None:
            reasons.append("no window was scored")
        elif p99 > self.p99_ms:
            reasons.append(f"p99 {p99:.0f} ms > {self.p99_ms:.0f} ms")
        drops = step["drops"]["total"]
        if drops > self.max_drops:
            reasons.append(f"{drops} windows dropped or missing (max {self.max_drops})")
        if not step["settled"]:
            reasons.append(f"{step['streams'] - step['streams_ended']} streams did not end in time")
        if step.get("whip_errors"):
            reasons.append(f"{len(step['whip_errors'])} WHIP publishers failed")
        if step.get("ws_errors"):
            reasons.append(f"{len(step['ws_errors'])} WebSocket calls failed")
        lag = step["pacing_lag_ms"]["p99_ms"]
        if lag is not None and lag > self.max_pacing_lag_ms:
            reasons.append(f"client fell behind real time (p99 send lag {lag:.0f} ms)")
        return reasons

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def parse_counts(text: str) -> list[int]:
    """``"4,8,16"`` → [4, 8, 16]; positive and increasing."""
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(c < 1 for c in counts) or counts != sorted(set(counts)):
        raise ValueError(f"stream counts must be positive and increasing, got {text!r}")
    return counts


async def sweep(counts: Sequence[int], run: Callable[[int], Awaitable[dict[str, Any]]], slo: SLO,
                keep_going: bool = False, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``run(n)`` for each n in turn until a step fails the SLO (or all, with ``keep_going``)."""
    steps: list[dict[str, Any]] = []
    best: int | None = None
    first_failure: int | None = None
    for n in counts:
        step = await run(n)
        step["slo_failures"] = slo.failures(step)
        step["slo_met"] = not step["slo_failures"]
        steps.append(step)
        say(step_line(step))
        if step["slo_met"] and first_failure is None:
            best = n
        elif not step["slo_met"]:
            first_failure = n if first_failure is None else first_failure
            if not keep_going:
                break
    return {"steps": steps, "max_streams_meeting_slo": best, "first_failing_streams": first_failure,
            "slo": slo.as_dict()}


def step_line(step: dict[str, Any]) -> str:
    lat = step["latency_ms"]
    server = step["server"]
    cpu = f"{server['cpu_percent']:.0f}%" if server["cpu_percent"] is not None else "n/a"
    verdict = "OK" if step.get("slo_met", True) else "FAIL: " + "; ".join(step.get("slo_failures", []))
    fmt = lambda v: f"{v:.0f}" if v is not None else "-"  # noqa: E731
    return (f"{step['streams']:>4} streams: {step['windows_per_s']:7.2f} windows/s, latency p50/p90/p99/max "
            f"{fmt(lat['p50_ms'])}/{fmt(lat['p90_ms'])}/{fmt(lat['p99_ms'])}/{fmt(lat['max_ms'])} ms, "
            f"drops {step['drops']['total']}, server CPU {cpu}, client CPU {step['client_cpu_percent']:.0f}%, "
            f"load {step['loadavg_before'][0]:.2f} -> {step['loadavg_after'][0]:.2f}  {verdict}")
