"""``offline evaluate``: EER tables from audio (a CM plus test sets) or from score files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from offline import datasets
from offline.channels import CHANNELS, get_channel
from offline.evaluate import ConditionResult, evaluate_condition, utterance_name
from offline.metrics import compute_eer, paper_eer
from offline.plots import plot_confusion_matrix
from offline.scorefiles import read_scores, score_file_condition, write_scores
from offline.streaming_eval import (
    StreamResult,
    format_table,
    plot_det,
    replay,
    summarise,
    write_windows,
)
from offline.tables import CONDITIONS, TableRow, render_table
from streamdet import architectures
from streamdet.errors import ConfigError
from streamdet.scoring import open_scorer
from streamdet.scoring.base import Scorer
from streamdet.stream.policy import (
    PAPER_SPOOF_THRESHOLD,
    StreamPolicy,
    early_ends,
    manifest_calibration,
    read_serve_config,
    spoof_probability,
)

# Codecfake's ALM test conditions are the paper's A03 (VALL-E) and A04 (VALL-E X).
CODECFAKE_COLUMNS = {"A1": "A03", "A2": "A04"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="EER tables from audio or from score files",
        description="Score test sets with a CM (first 4 s of each file, as the paper) and print the "
        "paper's EER table; or compute EERs of existing score files (--scores).",
    )
    p.add_argument("engine", nargs="?", help="CM directory (or engine) to score with")
    p.add_argument("--alm-add", type=Path, metavar="ROOT", help="ALM-ADD test set (label/ and audio/)")
    p.add_argument("--asvspoof2019", type=Path, metavar="ROOT", help="ASVspoof2019 LA root (eval part)")
    p.add_argument("--itw", type=Path, metavar="ROOT", help="In-the-Wild release folder")
    p.add_argument("--codecfake", type=Path, metavar="ROOT", help="Codecfake root")
    p.add_argument("--condition", action="append", default=[], metavar="C",
                   help="Codecfake test condition (A1, A2, C1..C7, A3); repeatable")
    p.add_argument("--list", action="append", default=[], type=Path, metavar="FILE",
                   help="a list file of 'path label' lines; repeatable, condition = file stem")
    p.add_argument("--scores", nargs="+", type=Path, metavar="FILE", help="score files to evaluate instead")
    p.add_argument("--out", type=Path, help="write score files and confusion-matrix PNGs here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--w2v2-source", help="hub id or local directory of XLS-R (W2V2 CMs)")
    p.add_argument("--spoof-threshold", type=float, default=None, metavar="P",
                   help="a window (file) is spoof when p_spoof >= P: of the confusion matrices "
                   "(default 0.5); with --streaming, the alert threshold (default: --serve-config's, "
                   "else the CM manifest's, else 0.5)")
    p.add_argument("--threshold", type=float, dest="bonafide_threshold", help=argparse.SUPPRESS)
    s = p.add_argument_group("streaming (field) evaluation: the service's windowing and alert rule")
    s.add_argument("--streaming", action="store_true",
                   help="replay every clip (or --calls-minutes calls) through the service's windower and "
                   "k-of-n alert state machine; report false alerts per hour, fakes alerted within --within s, "
                   "median time to first alert, window EER (offline/streaming_eval.py)")
    s.add_argument("--calls-minutes", type=float, metavar="M",
                   help="chain the clips of each list and class, in list order, into calls of about M minutes")
    s.add_argument("--channel", default="wideband", metavar="NAME",
                   help=f"channel applied to every clip first (default wideband): {', '.join(CHANNELS)}")
    s.add_argument("--seed", type=int, default=0, help="seed of the channel's randomness (packet loss)")
    s.add_argument("--serve-config", type=Path, metavar="TOML",
                   help="streamdet serve settings to take the spoof threshold, hop and k/n/m from "
                   "(its [alerts] and [window] tables; default: the service's defaults)")
    s.add_argument("--hop", type=int, help="samples between window starts (default: the service's, 16000)")
    s.add_argument("--alert-k", type=int, help="raise when k of the last n windows are spoof (default: service)")
    s.add_argument("--alert-n", type=int, help="n of the k-of-n rule (default: service)")
    s.add_argument("--alert-m", type=int, help="clear after m windows in a row below (default: service)")
    s.add_argument("--min-speech", type=float, metavar="F",
                   help="windows with a smaller speech fraction (VAD) neither raise nor clear an alert "
                   "(default: --serve-config's, else the service's 0.3; 0 = off)")
    s.add_argument("--early-windows", type=early_ends, metavar="S,S",
                   help="first decision: early windows ending at these seconds, e.g. 2,3 (default: "
                   "--serve-config's, else none); 'none' for none")
    s.add_argument("--first-spoof-threshold", type=float, metavar="P",
                   help="the early windows' stricter threshold (default: --serve-config's, else the spoof threshold)")
    s.add_argument("--within", type=float, default=5.0, help="seconds for 'alerted within' (default 5)")
    p.set_defaults(func=run)


def _test_sets(args: argparse.Namespace) -> dict[str, list[datasets.Utterance]]:
    sets: dict[str, list[datasets.Utterance]] = {}
    if args.alm_add:
        sets.update(datasets.alm_add(args.alm_add, check_audio=False))
    if args.asvspoof2019:
        sets["19LA"] = datasets.asvspoof2019_la(args.asvspoof2019, "eval", check_audio=False)
    if args.itw:
        sets["ITW"] = datasets.in_the_wild(args.itw, check_audio=False)
    if args.codecfake:
        for part in args.condition or ["A1", "A2"]:
            column = CODECFAKE_COLUMNS.get(part, f"Codecfake-{part}")
            sets[column] = datasets.codecfake(args.codecfake, part, check_audio=False)
    for list_path in args.list:
        sets[list_path.stem] = datasets.list_file(list_path, check_audio=False)
    return sets


def _print_report(eer: dict[str, float], name: str, architecture: str | None, as_json: bool,
                  extra: dict[str, object]) -> None:
    if as_json:
        print(json.dumps({"cm": name, "eer": eer, **extra}, indent=2))
        return
    feature, backbone = architectures.get(architecture).paper_columns if architecture else ("", name)
    in_table = {c: v for c, v in eer.items() if c in CONDITIONS}
    if in_table:
        print(render_table([TableRow(feature, backbone, in_table)], title=f"EER (%) of {name}"))
    for condition, value in eer.items():
        if condition not in CONDITIONS:
            print(f"{condition}: EER {value:.3f} %")


def _run_scores(args: argparse.Namespace) -> int:
    eer = {}
    for path in args.scores:
        scores = read_scores(path)
        eer[score_file_condition(path)] = paper_eer(scores.scores, scores.labels)
    _print_report(eer, "score files", None, args.json, {})
    return 0


def _report_failures(failures: dict[str, str], not_done: str = "scored") -> int:
    """List unreadable files on stderr; the exit status is 1 when there were any."""
    if not failures:
        return 0
    print(f"offline evaluate: {len(failures)} file(s) could not be read and were not {not_done}:", file=sys.stderr)
    for path, reason in failures.items():
        print(f"  {path}: {reason}", file=sys.stderr)
    return 1


def _spoof_threshold_flag(args: argparse.Namespace) -> float | None:
    """--spoof-threshold, or the deprecated --threshold (a bona fide probability) converted once."""
    if args.bonafide_threshold is None:
        return args.spoof_threshold
    print("offline evaluate: --threshold (a bona fide probability) is deprecated, use --spoof-threshold "
          "(= 1 - the bona fide threshold)", file=sys.stderr)
    if args.spoof_threshold is not None:
        raise ConfigError("give --spoof-threshold or the deprecated --threshold, not both")
    return spoof_probability(args.bonafide_threshold)


def run(args: argparse.Namespace) -> int:
    args.spoof_threshold = _spoof_threshold_flag(args)
    if args.streaming:
        return _run_streaming(args)
    if args.scores:
        return _run_scores(args)
    if not args.engine:
        raise ConfigError("give a CM directory to score with, or --scores FILE...")
    sets = _test_sets(args)
    if not sets:
        raise ConfigError("name at least one test set (--alm-add, --asvspoof2019, --itw, --codecfake, --list)")
    scorer = open_scorer(args.engine, device=args.device, w2v2_source=args.w2v2_source, max_batch=args.batch_size)
    total = sum(len(u) for u in sets.values())
    results: list[ConditionResult] = []
    with tqdm(total=total, unit="file", desc="scoring", disable=None) as bar:
        for condition, utterances in sets.items():
            bar.set_postfix_str(condition)
            results.append(evaluate_condition(scorer, condition, utterances, args.batch_size, bar.update))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for r in results:
            write_scores(args.out / f"{r.condition}_result.txt", [utterance_name(u) for u in r.utterances],
                         r.scores, r.labels)
            spoof_threshold = PAPER_SPOOF_THRESHOLD if args.spoof_threshold is None else args.spoof_threshold
            plot_confusion_matrix(r.confusion(spoof_threshold), args.out / f"{r.condition}_confusion.png",
                                  f"{scorer.model_id} on {r.condition}")
    eer = {r.condition: r.eer for r in results if len(r.utterances)}
    manifest = getattr(scorer, "contract", None)
    architecture = getattr(manifest, "architecture", None)
    failures = {path: reason for r in results for path, reason in r.failures.items()}
    _print_report(eer, scorer.model_id, architecture, args.json,
                  {"model_id": scorer.model_id, "counts": {r.condition: len(r.utterances) for r in results},
                   "failures": failures})
    return _report_failures(failures)


def _policy(args: argparse.Namespace, scorer: Scorer) -> StreamPolicy:
    """The service's operating point: flags > --serve-config > the CM manifest (threshold) > defaults."""
    served = read_serve_config(args.serve_config) if args.serve_config is not None else {}
    configured, configured_by = args.spoof_threshold, "--spoof-threshold"
    if configured is None and served.get("spoof_threshold") is not None:
        configured, configured_by = served["spoof_threshold"], f"serve config {args.serve_config}"
    defaults = StreamPolicy()
    k = args.alert_k if args.alert_k is not None else served.get("k", defaults.k)
    n = args.alert_n if args.alert_n is not None else max(served.get("n", defaults.n), k)
    m = args.alert_m if args.alert_m is not None else served.get("m", defaults.m)
    hop = args.hop if args.hop is not None else served.get("hop", defaults.hop)
    min_speech = args.min_speech if args.min_speech is not None else served.get("min_speech", defaults.min_speech)
    early = args.early_windows if args.early_windows is not None else served.get("early", defaults.early)
    min_tail = served.get("min_tail", defaults.min_tail)
    first = (args.first_spoof_threshold if args.first_spoof_threshold is not None
             else served.get("first_spoof_threshold"))
    return StreamPolicy.resolve(configured, manifest_calibration(scorer.contract),
                                configured_by=configured_by, hop=hop, k=k, n=n, m=m,
                                window=scorer.contract.window_samples, min_speech=min_speech,
                                early=tuple(early), first_spoof_threshold=first, min_tail=min_tail)


def _run_streaming(args: argparse.Namespace) -> int:
    if not args.engine:
        raise ConfigError("--streaming needs a CM directory (or engine) to score with")
    get_channel(args.channel)
    if args.calls_minutes is not None and args.calls_minutes <= 0:
        raise ConfigError("--calls-minutes must be positive")
    sets = _test_sets(args)
    if not sets:
        raise ConfigError("name at least one test set (--alm-add, --asvspoof2019, --itw, --codecfake, --list)")
    scorer = open_scorer(args.engine, device=args.device, w2v2_source=args.w2v2_source, max_batch=args.batch_size)
    policy = _policy(args, scorer)
    calls_seconds = None if args.calls_minutes is None else 60.0 * args.calls_minutes
    streams: dict[str, list[StreamResult]] = {}
    failures: dict[str, str] = {}
    with tqdm(total=sum(len(u) for u in sets.values()), unit="clip", desc="replaying", disable=None) as bar:
        for condition, utterances in sets.items():
            bar.set_postfix_str(condition)
            streams[condition], failed = replay(scorer, condition, utterances, policy, channel=args.channel,
                                                seed=args.seed, calls_seconds=calls_seconds,
                                                batch_size=args.batch_size, on_progress=bar.update)
            failures.update(failed)
    pooled = [s for group in streams.values() for s in group]
    report: dict[str, object] = {
        "cm": scorer.model_id,
        "engine": str(args.engine),
        "channel": args.channel,
        "seed": args.seed,
        "spoof_threshold": policy.spoof_threshold,
        "threshold_source": policy.threshold_source,
        "rule": "a window is spoof evidence when p_spoof = 1 - P(bona fide) >= spoof_threshold",
        "hop": policy.hop, "k": policy.k, "n": policy.n, "m": policy.m, "window": policy.window,
        "min_speech": policy.min_speech, "early": list(policy.early),
        "first_spoof_threshold": policy.threshold_for(early=True),
        "earliest_alert_s": policy.earliest_alert_s,
        "calls_minutes": args.calls_minutes,
        "within_s": args.within,
        "conditions": {c: summarise(group, policy, args.within) for c, group in streams.items() if group},
        "all": summarise(pooled, policy, args.within),
        "window_eer_vs_all_real": _eer_vs_all_real(streams),
        "failures": failures,
    }
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "streaming.json").write_text(json.dumps(report, indent=2) + "\n")
        write_windows(args.out / "windows.tsv", pooled)
        curves = {"all": _class_scores(pooled)}
        curves.update({c: _class_scores(_real_and(streams, c)) for c in report["window_eer_vs_all_real"]})
        plot_det(args.out / "det.png", curves, f"{scorer.model_id}, channel {args.channel}\n"
                 "window DET: all real windows against each set's fakes; o = spoof threshold", policy)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        calls = f", calls of {args.calls_minutes:g} min" if args.calls_minutes else ", one stream per clip"
        print(f"{scorer.model_id}, channel {args.channel}{calls}: {policy.describe()}, {policy.describe_rule()}")
        print(format_table(report))
        if report["window_eer_vs_all_real"]:
            print("window EER of every real window against each set's fakes: " + ", ".join(
                f"{c} {v:.2f} %" for c, v in report["window_eer_vs_all_real"].items()))
    return _report_failures(failures, not_done="replayed")


def _real_and(streams: dict[str, list[StreamResult]], condition: str) -> list[StreamResult]:
    """Every real stream, and the fake streams of one condition."""
    real = [s for group in streams.values() for s in group if s.label == 0]
    return real + [s for s in streams[condition] if s.label == 1]


def _eer_vs_all_real(streams: dict[str, list[StreamResult]]) -> dict[str, float]:
    """Per condition with fakes: window EER (%) of all real windows against its fake windows."""
    out = {}
    for condition in streams:
        real, fake = _class_scores(_real_and(streams, condition))
        if real.size and fake.size:
            out[condition] = 100.0 * compute_eer(real, fake)[0]
    return out


def _class_scores(streams: list[StreamResult]) -> tuple[np.ndarray, np.ndarray]:
    """(real window scores, fake window scores) of some streams."""
    real = [s.scores for s in streams if s.label == 0]
    fake = [s.scores for s in streams if s.label == 1]
    return (np.concatenate(real) if real else np.zeros(0), np.concatenate(fake) if fake else np.zeros(0))


