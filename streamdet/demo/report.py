"""What one demo run saw, per stream, and the files that record it: report.json, report.md and a
score-timeline PNG per stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamdet.demo.samples import DemoSample
from streamdet.service.events import EndEvent, WindowEvent


@dataclass
class StreamRecord:
    """The events of one demo stream, in the order they were published."""

    sample: DemoSample
    scores: list[WindowEvent] = field(default_factory=list)
    alerts: list[WindowEvent] = field(default_factory=list)
    """``raised`` and ``cleared`` events."""
    end: EndEvent | None = None

    @property
    def raised(self) -> list[WindowEvent]:
        return [event for event in self.alerts if event.event == "raised"]

    @property
    def verdict(self) -> str:
        return "alert" if self.raised else "no alert"

    @property
    def correct(self) -> bool:
        return bool(self.raised) == self.sample.expect_alert

    def summary(self, timeline_png: str) -> dict[str, Any]:
        first = self.raised[0] if self.raised else None
        return {
            "stream_id": self.sample.stream_id,
            "label": self.sample.label,
            "file": self.sample.file,
            "description": self.sample.description,
            "verdict": self.verdict,
            "expected": "alert" if self.sample.expect_alert else "no alert",
            "correct": self.correct,
            "first_alert_s": None if first is None else round(first.end, 4),
            "max_p_spoof": max((event.p_spoof for event in self.scores), default=None),
            "windows": len(self.scores),
            "dropped": None if self.end is None else self.end.dropped,
            "duration_s": None if self.end is None else round(self.end.duration, 4),
            "alerts": [{"event": event.event, "time_s": round(event.end, 4), "p_spoof": event.p_spoof}
                       for event in self.alerts],
            "timeline_png": timeline_png,
        }


def plot_timeline(path: Path, record: StreamRecord, spoof_threshold: float) -> None:
    """p_spoof of every window at the window's end (media time), the threshold, alert spans shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 2.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ends = [event.end for event in record.scores]
    axes.plot(ends, [event.p_spoof for event in record.scores], marker="o", color="tab:blue", label="p_spoof")
    axes.axhline(spoof_threshold, color="tab:red", linestyle="--", linewidth=1,
                 label=f"threshold {spoof_threshold:.3f}")
    stream_end = record.end.duration if record.end is not None else (ends[-1] if ends else 0.0)
    raised_at: float | None = None
    for event in record.alerts:
        if event.event == "raised":
            raised_at = event.end
        elif raised_at is not None:
            axes.axvspan(raised_at, event.end, color="tab:red", alpha=0.15)
            raised_at = None
    if raised_at is not None:
        axes.axvspan(raised_at, stream_end, color="tab:red", alpha=0.15, label="alert raised")
    axes.set_xlim(0.0, max(stream_end, 1.0))
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("stream time (s)")
    axes.set_ylabel("p_spoof")
    axes.set_title(f"{record.sample.stream_id} ({record.sample.label}): {record.verdict}", fontsize=10)
    axes.legend(loc="center right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def write_report(out_dir: Path, records: list[StreamRecord], *, model_id: str, spoof_threshold: float,
                 alert_rule: str, page_url: str | None) -> Path:
    """Write report.json, report.md and the timelines into ``out_dir``; returns report.md's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    streams = []
    for record in records:
        png = f"{record.sample.stream_id}.png"
        plot_timeline(out_dir / png, record, spoof_threshold)
        streams.append(record.summary(png))
    report = {"model_id": model_id, "spoof_threshold": spoof_threshold, "alert_rule": alert_rule,
              "page_url": page_url, "streams": streams}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = out_dir / "report.md"
    markdown.write_text(_markdown(report))
    return markdown


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# streamdet demo",
        "",
        f"Model `{report['model_id']}`; a window is spoof evidence when p_spoof >= "
        f"{report['spoof_threshold']:.4f}; alert rule: {report['alert_rule']}.",
        "",
        "| stream | really | verdict | first alert (s) | max p_spoof | windows |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for s in report["streams"]:
        first = "–" if s["first_alert_s"] is None else f"{s['first_alert_s']:.2f}"
        top = "–" if s["max_p_spoof"] is None else f"{s['max_p_spoof']:.4f}"
        mark = "" if s["correct"] else " (wrong)"
        lines.append(f"| {s['stream_id']} | {s['label']} | {s['verdict']}{mark} | {first} | {top} | {s['windows']} |")
    lines.append("")
    for s in report["streams"]:
        lines += [f"## {s['stream_id']}", "", s["description"], "", f"![{s['stream_id']}]({s['timeline_png']})", ""]
    lines.append("The clips and their licences: streamdet/demo/samples/ATTRIBUTION.md.")
    return "\n".join(lines) + "\n"
