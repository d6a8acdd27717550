"""Stage 4: the pooled cross-validation report, overall and per source / system, with DET curves.

Every held-out group is scored by the head of the one fold that held it out, under that fold's
threshold; the replayed streams (``offline.streaming_eval``: real speech in calls, fakes in calls of
one system) get those scores and run the service's alert machine. Pooled numbers are sums over all
held-out streams of all folds:

- real: false alerts per hour of real speech (raised events / hours), share of real windows alerting;
- fake: share of fake windows detected; share of fake calls whose first alert comes at most
  ``within_s`` after the call starts; systems all of whose calls are alerted that quickly;
- window EER of the pooled scores (each window scored by its own fold's head).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from offline.calibrate import threshold_for_false_alarm_rate
from offline.crossval.folds import Fold
from offline.crossval.folds_run import FoldScores, Replays
from offline.datasets import BONAFIDE
from offline.metrics import compute_eer
from offline.streaming_eval import StreamResult, plot_det
from streamdet.stream.policy import StreamPolicy, spoof_probability


def rescored_streams(folds: Sequence[Fold], fold_scores: Sequence[FoldScores], replays: Replays,
                     channel: str, policy: StreamPolicy) -> dict[str, list[StreamResult]]:
    """group → its held-out streams, scored by its fold's head with alerts run under its fold's policy."""
    out: dict[str, list[StreamResult]] = {}
    for fold, scores in zip(folds, fold_scores, strict=True):
        fold_policy = dataclasses.replace(policy, spoof_threshold=scores.spoof_threshold,
                                          threshold_source="crossval training fold")
        for group in sorted(fold.test_groups):
            replay = replays[channel][group]
            p = scores.scores[(channel, group)]
            streams = []
            for stream in replay.streams:
                rescored = dataclasses.replace(stream, scores=p[stream.scores.astype(np.int64)])
                rescored.run_alerts(fold_policy)
                streams.append(rescored)
            out[group] = streams
    return out


def stream_metrics(streams: Sequence[StreamResult], within: float) -> dict[str, object]:
    """The field numbers of any set of streams whose alerts have run (thresholds may differ)."""
    real = [s for s in streams if s.label == BONAFIDE]
    fake = [s for s in streams if s.label != BONAFIDE]
    out: dict[str, object] = {}
    if real:
        hours = sum(s.seconds for s in real) / 3600
        events = sum(s.raised_events for s in real)
        flags = np.concatenate([s.spoof for s in real])
        out["real"] = {"calls": len(real), "hours": hours, "windows": int(flags.size),
                       "window_alert_rate": float(flags.mean()) if flags.size else None,
                       "alerts_raised": events, "false_alerts_per_hour": events / hours if hours else None,
                       "calls_alerted": sum(s.raised_events > 0 for s in real)}
    if fake:
        flags = np.concatenate([s.spoof for s in fake])
        firsts = [s.clip_first_alerts()[0] if s.clips else None for s in fake]
        quick = [t is not None and t <= within + 1e-9 for t in firsts]
        clip_firsts = [t for s in fake for t in s.clip_first_alerts()]
        alerted = [t for t in firsts if t is not None]
        out["fake"] = {"calls": len(fake), "clips": len(clip_firsts), "hours": sum(s.seconds for s in fake) / 3600,
                       "windows": int(flags.size),
                       "window_detection_rate": float(flags.mean()) if flags.size else None,
                       "within_s": within, "calls_alerted_within": float(np.mean(quick)),
                       "calls_alerted": float(np.mean([t is not None for t in firsts])),
                       "median_call_first_alert_s": float(np.median(alerted)) if alerted else None,
                       "clips_alerted_within": float(np.mean([t is not None and t <= within + 1e-9
                                                              for t in clip_firsts]))}
    real_scores = np.concatenate([s.scores for s in real]) if real else np.zeros(0)
    fake_scores = np.concatenate([s.scores for s in fake]) if fake else np.zeros(0)
    if real_scores.size and fake_scores.size:
        out["window_eer"] = 100.0 * compute_eer(real_scores, fake_scores)[0]
    return out


def candidate_report(folds: Sequence[Fold], fold_scores: Sequence[FoldScores], replays: Replays,
                     within: float, policy: StreamPolicy) -> dict[str, object]:
    """Per channel: pooled metrics, per-group metrics, per-fold thresholds, and the pooled window scores."""
    out: dict[str, object] = {"thresholds": [s.spoof_threshold for s in fold_scores], "channels": {}}
    for channel in replays:
        by_group = rescored_streams(folds, fold_scores, replays, channel, policy)
        every = [s for streams in by_group.values() for s in streams]
        pooled = stream_metrics(every, within)
        groups = {g: stream_metrics(streams, within) for g, streams in sorted(by_group.items())}
        fake_groups = [m["fake"] for m in groups.values() if "fake" in m]
        if fake_groups:
            quick = [m["calls_alerted_within"] >= 1.0 - 1e-9 for m in fake_groups]  # type: ignore[index]
            pooled["systems_all_calls_within"] = float(np.mean(quick))
        real_p = np.concatenate([s.scores for s in every if s.label == BONAFIDE])
        fake_p = np.concatenate([s.scores for s in every if s.label != BONAFIDE])
        if real_p.size and fake_p.size:
            # Threshold-free comparison: fake windows detected at the pooled threshold that lets 1 % of
            # real windows alert (an oracle threshold: for ranking CMs, not an achievable operating point).
            oracle = threshold_for_false_alarm_rate(spoof_probability(real_p), 0.01)
            pooled["detected_at_1pct_real_windows"] = float(np.mean(spoof_probability(fake_p) >= oracle))
        out["channels"][channel] = {"pooled": pooled, "groups": groups,  # type: ignore[index]
                                    "_real": real_p, "_fake": fake_p}
    return out


def _fmt(value: object, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def markdown(reports: Mapping[str, Mapping[str, object]], folds: Sequence[Fold]) -> str:
    """The report as Markdown tables: pooled per candidate and channel, then per group."""
    lines = ["# Grouped cross-validation", "", f"{len(folds)} folds; held out per fold:", ""]
    for fold in folds:
        lines.append(f"- fold {fold.index}: {', '.join(sorted(fold.test_groups))}")
    lines += ["", "## Pooled over folds", "",
              "| CM | channel | real h | FA/h | real windows alerting | fake windows detected | "
              "fake calls alerted <= within | systems with every call alerted <= within | window EER | "
              "fake windows detected at 1 % real windows (pooled oracle threshold) |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, report in reports.items():
        for channel, data in report["channels"].items():  # type: ignore[union-attr]
            p = data["pooled"]
            r, f = p.get("real", {}), p.get("fake", {})
            lines.append(f"| {name} | {channel} | {_fmt(r.get('hours'), '{:.2f}')} | "
                         f"{_fmt(r.get('false_alerts_per_hour'), '{:.1f}')} | {_fmt(r.get('window_alert_rate'), '{:.1%}')} | "
                         f"{_fmt(f.get('window_detection_rate'), '{:.1%}')} | {_fmt(f.get('calls_alerted_within'), '{:.1%}')} | "
                         f"{_fmt(p.get('systems_all_calls_within'), '{:.0%}')} | {_fmt(p.get('window_eer'), '{:.1f} %')} | "
                         f"{_fmt(p.get('detected_at_1pct_real_windows'), '{:.1%}')} |")
    for name, report in reports.items():
        for channel, data in report["channels"].items():  # type: ignore[union-attr]
            lines += ["", f"## {name}, {channel}: per source / system", "",
                      "| group | calls | hours | FA/h | windows alerting / detected | calls alerted <= within | "
                      "median first alert |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for group, m in data["groups"].items():
                if "real" in m:
                    r = m["real"]
                    lines.append(f"| {group} (real) | {r['calls']} | {r['hours']:.3f} | "
                                 f"{_fmt(r['false_alerts_per_hour'], '{:.1f}')} | {_fmt(r['window_alert_rate'], '{:.1%}')} | | |")
                if "fake" in m:
                    f = m["fake"]
                    lines.append(f"| {group} (fake) | {f['calls']} | {f['hours']:.3f} | | "
                                 f"{_fmt(f['window_detection_rate'], '{:.1%}')} | {_fmt(f['calls_alerted_within'], '{:.0%}')} | "
                                 f"{_fmt(f['median_call_first_alert_s'], '{:.1f} s')} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, reports: Mapping[str, Mapping[str, object]], folds: Sequence[Fold]) -> list[Path]:
    """report.json, report.md and one DET plot per channel (all candidates) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)

    def public(value: object) -> object:
        if isinstance(value, dict):
            return {k: public(v) for k, v in value.items() if not str(k).startswith("_")}
        return value

    (out / "report.json").write_text(json.dumps(public(dict(reports)), indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(reports, folds), encoding="utf-8")
    written = [out / "report.json", out / "report.md"]
    channels = {c for r in reports.values() for c in r["channels"]}  # type: ignore[union-attr]
    for channel in sorted(channels):
        curves = {name: (r["channels"][channel]["_real"], r["channels"][channel]["_fake"])  # type: ignore[index]
                  for name, r in reports.items() if channel in r["channels"]}  # type: ignore[operator]
        written.append(plot_det(out / f"det-{channel}.png", curves,
                                f"pooled grouped cross-validation ({len(folds)} folds), {channel}"))
    return written
