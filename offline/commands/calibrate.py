"""``offline calibrate``: pick a CM's operating point on real/fake lists and store it in its manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from offline import datasets
from offline.calibrate import (
    DEFAULT_HOP,
    WindowScores,
    alert_rate,
    calibrate,
    score_windows,
    write_calibration,
)
from offline.channels import CHANNELS, get_channel
from offline.datasets import BONAFIDE, SPOOF, Utterance
from streamdet.cm import read_cm_manifest
from streamdet.errors import ConfigError, DatasetError
from streamdet.scoring import open_scorer
from streamdet.stream.policy import PAPER_SPOOF_THRESHOLD, StreamPolicy, spoof_probability


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="choose a CM's threshold on real/fake speech and write it into its manifest",
        description="Score every window (64,600 samples, every --hop samples; shorter clips tiled) of "
        "the real and fake clips (and each clip's tail window), optionally through a telephone channel, and "
        "store the spoof threshold (a window alerts when p_spoof >= it) for a target false-alarm rate "
        "per real window (--target-far) or "
        "at the EER (--at-eer) in the CM's manifest.json. The weights are not touched.",
    )
    p.add_argument("cm", type=Path, help="CM directory (model.safetensors + manifest.json)")
    p.add_argument("--real", nargs="+", type=Path, required=True, metavar="LIST",
                   help="list files of real speech ('path real' lines)")
    p.add_argument("--fake", nargs="+", type=Path, default=[], metavar="LIST",
                   help="list files of fake speech ('path fake' lines)")
    criterion = p.add_mutually_exclusive_group()
    criterion.add_argument("--target-far", type=float, metavar="RATE",
                           help="false-alarm rate per real window to aim for (default 0.01)")
    criterion.add_argument("--at-eer", action="store_true", help="use the EER point of real vs fake windows")
    p.add_argument("--channel", default="wideband", metavar="NAME",
                   help=f"channel applied to every clip first (default wideband): {', '.join(CHANNELS)}, "
                   "or a '+' chain of them")
    p.add_argument("--seed", type=int, default=0, help="seed of the channel's randomness (packet loss)")
    p.add_argument("--hop", type=int, default=DEFAULT_HOP, help=f"samples between windows (default {DEFAULT_HOP})")
    p.add_argument("--first-window", action="store_true",
                   help="score only each clip's first window, as the paper's protocol")
    p.add_argument("--dry-run", action="store_true", help="report, but do not write the manifest")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--w2v2-source", help="hub id or local directory of XLS-R (W2V2 CMs)")
    p.set_defaults(func=run)


def _read_lists(paths: list[Path], label: int) -> list[Utterance]:
    utterances: list[Utterance] = []
    for path in paths:
        listed = datasets.list_file(path)
        wrong = [u.utt_id for u in listed if u.label != label]
        if wrong:
            expected = "real" if label == BONAFIDE else "fake"
            raise DatasetError(f"{path}: {len(wrong)} clip(s) not labelled {expected}, e.g. {wrong[0]}")
        utterances.extend(listed)
    return utterances


def _summary(scores: WindowScores) -> dict[str, object]:
    paper = StreamPolicy(PAPER_SPOOF_THRESHOLD)
    first = spoof_probability(np.array([s[0] for s in scores.clip_scores if s.size], dtype=np.float64))
    return {
        "clips": len(scores.utterances),
        "windows": int(scores.scores.size),
        "flagged_windows_at_0.5": alert_rate(spoof_probability(scores.scores), PAPER_SPOOF_THRESHOLD),
        "flagged_clips_at_0.5_first_window": alert_rate(first, PAPER_SPOOF_THRESHOLD),
        "flagged_clips_at_0.5_first_window_count": int(np.count_nonzero(paper.are_spoof(first))),
    }


def run(args: argparse.Namespace) -> int:
    # Clear errors before any scoring: no CM directory, unknown channel.
    read_cm_manifest(args.cm)
    get_channel(args.channel)
    target_far = args.target_far
    if not args.at_eer and target_far is None:
        target_far = 0.01
    if args.at_eer and not args.fake:
        raise ConfigError("--at-eer needs fake speech (--fake LIST...)")
    real_utts = _read_lists(args.real, BONAFIDE)
    fake_utts = _read_lists(args.fake, SPOOF)
    if not real_utts:
        raise DatasetError("the --real lists hold no clips")
    hop = None if args.first_window else args.hop
    scorer = open_scorer(args.cm, device=args.device, w2v2_source=args.w2v2_source, max_batch=args.batch_size)
    scored: dict[str, WindowScores] = {}
    with tqdm(total=len(real_utts) + len(fake_utts), unit="clip", desc="scoring", disable=None) as bar:
        for name, utts in (("real", real_utts), ("fake", fake_utts)):
            if utts:
                scored[name] = score_windows(scorer, utts, args.channel, args.seed, hop, args.batch_size,
                                             on_progress=bar.update)
    data = "real " + ", ".join(map(str, args.real)) + (("; fake " + ", ".join(map(str, args.fake))) if args.fake else "")
    result = calibrate(scored["real"], scored.get("fake"), target_far=target_far, at_eer=args.at_eer, data=data,
                       channel=args.channel, hop=hop, seed=args.seed)
    failures = {p: r for s in scored.values() for p, r in s.failures.items()}
    # A threshold from a silently shrunken data set is not written: fix or drop the files first.
    written = not args.dry_run and not failures
    if written:
        write_calibration(args.cm, result.calibration)
    report = {
        "cm": scorer.model_id,
        "channel": args.channel,
        "calibration": result.calibration.model_dump(),
        "written": written,
        "false_alarm_rate": result.false_alarm_rate,
        "detection_rate": result.detection_rate if "fake" in scored else None,
        **{name: _summary(s) for name, s in scored.items()},
        "failures": failures,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = result.calibration
        print(f"{scorer.model_id}, channel {args.channel}: spoof threshold {c.spoof_threshold!r} "
              f"({c.criterion}): alert when p_spoof >= it (streamdet serve reads it from the manifest; "
              f"offline evaluate: --spoof-threshold {c.spoof_threshold!r})")
        for name, s in scored.items():
            summary = _summary(s)
            rate = result.false_alarm_rate if name == "real" else result.detection_rate
            print(f"  {name}: {summary['clips']} clips, {summary['windows']} windows; alerting at the threshold "
                  f"{100 * rate:.2f} % of windows; at 0.5: {100 * summary['flagged_windows_at_0.5']:.2f} % of "
                  f"windows, {summary['flagged_clips_at_0.5_first_window_count']}/{summary['clips']} clips "
                  "on their first window")
        print(("written to " if written else "not written: ") + str(args.cm))
    if failures:
        print(f"offline calibrate: {len(failures)} file(s) could not be read; calibration not written:",
              file=sys.stderr)
        for path, reason in failures.items():
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0
