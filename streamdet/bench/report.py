"""Console tables, JSON files and the sweep plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPORT_VERSION = 1


def write_json(path: str | Path, report: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": REPORT_VERSION, **report}, indent=2, default=str) + "\n")
    return path


def model_only_table(rows: Sequence[dict[str, Any]]) -> str:
    """windows/s, one line per (label, threads), one column per batch size."""
    batches = sorted({r["batch_size"] for r in rows})
    keys: list[tuple[str, Any]] = []
    for r in rows:
        if (r["label"], r["threads"]) not in keys:
            keys.append((r["label"], r["threads"]))
    head = f"{'scorer':<32} {'threads':>7} " + " ".join(f"{'b=' + str(b):>9}" for b in batches)
    lines = [head, "-" * len(head)]
    for label, threads in keys:
        cells = []
        for b in batches:
            match = [r for r in rows if r["label"] == label and r["threads"] == threads and r["batch_size"] == b]
            cells.append(f"{match[0]['windows_per_s']:>9.2f}" if match else f"{'':>9}")
        lines.append(f"{label:<32} {str(threads or 'default'):>7} " + " ".join(cells))
    return "\n".join(lines) + "\n(windows/s, median of repeats)"


def comparison_table(result: dict[str, Any]) -> str:
    head = f"{'way':<24} {'batch':>5} {'threads':>7} {'windows/s':>10} {'s/window':>9} {'speedup':>8} {'max|dp|':>9}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        lines.append(f"{r['label']:<24} {r.get('batch', '-'):>5} {str(r['threads'] or '-'):>7} "
                     f"{r['windows_per_s']:>10.3f} {r['seconds_per_window']:>9.4f} "
                     f"{r['speedup_vs_reference']:>7.2f}x {r['max_abs_prob_diff']:>9.1e}")
    return "\n".join(lines)


def plot_sweep(steps: Sequence[dict[str, Any]], path: str | Path, slo_p99_ms: float | None = None,
               title: str = "streamdet service load") -> Path:
    """Latency percentiles (left axis, ms) and server CPU (right axis, % of one core) against streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = [s["streams"] for s in steps]
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for key, style in (("p50_ms", "-o"), ("p90_ms", "-s"), ("p99_ms", "-^"), ("max_ms", ":x")):
        values = [s["latency_ms"][key] if s["latency_ms"][key] is not None else float("nan") for s in steps]
        ax.plot(n, values, style, label=key.replace("_ms", ""))
    if slo_p99_ms is not None:
        ax.axhline(slo_p99_ms, color="red", linestyle="--", linewidth=1, label=f"SLO p99 {slo_p99_ms:.0f} ms")
    failed = [s["streams"] for s in steps if not s.get("slo_met", True)]
    for x in failed:
        ax.axvline(x, color="red", alpha=0.15, linewidth=8)
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    cpu = [s["server"]["cpu_percent"] for s in steps]
    if any(c is not None for c in cpu):
        ax2 = ax.twinx()
        ax2.plot(n, [c if c is not None else float("nan") for c in cpu], "--d", color="gray", label="server CPU")  # a marker: one step is one point
        ax2.set_ylabel("server CPU (% of one core)")
        ax2.set_ylim(bottom=0)
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
