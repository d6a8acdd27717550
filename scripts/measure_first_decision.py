"""Measure the first-decision rule and the speech gate on field data, from one scoring pass.

    python scripts/measure_first_decision.py CM FIELD_DIR OUT.json [--calls-minutes 3] [--early 2,3]

FIELD_DIR holds ``sources.tsv`` and the clips it names (real and fake). Every stream is replayed
once through ``offline.streaming_eval.replay`` with the early windows and the speech gate on; the
variants (rule off, gate off, other first thresholds) are then re-run from the stored scores and
speech fractions with the same alert state machine (removing a variant's early windows is exactly
what a geometry without them gives: they come first and change no other window). Prints a table and
writes every number to OUT.json.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from offline.datasets import BONAFIDE, SPOOF, Utterance
from offline.streaming_eval import StreamResult, replay, summarise
from streamdet.scoring import open_scorer
from streamdet.stream.policy import StreamPolicy, early_ends, manifest_calibration


def _utterances(field_dir: Path) -> dict[str, list[Utterance]]:
    """One list per real source and one of every fake, in the index's order."""
    sets: dict[str, list[Utterance]] = {}
    with (field_dir / "sources.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            label = BONAFIDE if row["label"] == "real" else SPOOF
            name = f"real-{row['system_or_source']}" if label == BONAFIDE else "fake-all"
            path = field_dir / row["relpath"]
            sets.setdefault(name, []).append(Utterance(path.stem, path, label))
    return sets


def _without_early(stream: StreamResult) -> StreamResult:
    keep = ~stream.early
    return replace(stream, starts=stream.starts[keep], ends=stream.ends[keep], scores=stream.scores[keep],
                   speech=stream.speech[keep], early=stream.early[keep])


def _stream_first_alerts(streams: list[StreamResult]) -> list[float | None]:
    """Seconds from each stream's start to its first alert."""
    out: list[float | None] = []
    for s in streams:
        hit = np.flatnonzero(s.raised_after)
        out.append(None if hit.size == 0 else float(s.ends[hit[0]]) / 16_000)
    return out


def _variant(streams: list[StreamResult], policy: StreamPolicy, within: float) -> dict[str, object]:
    for stream in streams:
        stream.run_alerts(policy)
    summary = summarise(streams, policy, within)
    real = [s for s in streams if s.label == BONAFIDE]
    fake = [s for s in streams if s.label == SPOOF]
    fake_firsts = _stream_first_alerts(fake)
    real_firsts = _stream_first_alerts(real)
    summary["fake_streams_alerted_within"] = (sum(t is not None and t <= within + 1e-9 for t in fake_firsts)
                                              / len(fake) if fake else None)
    summary["real_streams_alerted_within"] = (sum(t is not None and t <= within + 1e-9 for t in real_firsts)
                                              / len(real) if real else None)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cm")
    parser.add_argument("field_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--calls-minutes", type=float, default=None)
    parser.add_argument("--early", type=early_ends, default=early_ends("2,3"))
    parser.add_argument("--within", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    scorer = open_scorer(args.cm, device="cpu", max_batch=args.batch_size)
    base = StreamPolicy.resolve(None, manifest_calibration(scorer.contract), early=tuple(args.early))
    calls = None if args.calls_minutes is None else 60 * args.calls_minutes
    streams: list[StreamResult] = []
    for condition, utterances in _utterances(args.field_dir).items():
        replayed, failures = replay(scorer, condition, utterances, base, calls_seconds=calls,
                                    batch_size=args.batch_size)
        streams += replayed
        if failures:
            print(f"{condition}: {len(failures)} unreadable")
    plain = [_without_early(s) for s in streams]
    t = base.spoof_threshold
    variants: dict[str, tuple[list[StreamResult], StreamPolicy]] = {
        "no early windows, no gate": (plain, replace(base, early=(), min_speech=0.0)),
        "no early windows, gate 0.3": (plain, replace(base, early=())),
    }
    for first in sorted({t, 0.99, 0.995, 0.999, 0.9999}):
        if first >= t:
            variants[f"early 2+3 s at {first:g}, gate 0.3"] = (streams, replace(base, first_spoof_threshold=first))
    results = {name: _variant(group, policy, args.within) for name, (group, policy) in variants.items()}
    report = {"cm": scorer.model_id, "spoof_threshold": t, "calls_minutes": args.calls_minutes,
              "early": list(args.early), "within_s": args.within, "variants": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{scorer.model_id}, threshold {t!r}, calls {args.calls_minutes} min")
    print("variant | real h | FA/h | real streams alerted <= 5 s | fake streams alerted <= 5 s | "
          "fake clips alerted <= 5 s | real windows gated | fake windows gated")
    for name, m in results.items():
        r, f = m.get("real", {}), m.get("fake", {})
        print(f"{name} | {r.get('hours', 0):.3f} | {r.get('false_alerts_per_hour') or 0:.1f} | "
              f"{m['real_streams_alerted_within'] or 0:.1%} | {m['fake_streams_alerted_within'] or 0:.1%} | "
              f"{f.get('alerted_within') or 0:.1%} | {r.get('windows_gated') or 0:.1%} | "
              f"{f.get('windows_gated') or 0:.1%}")


if __name__ == "__main__":
    main()
