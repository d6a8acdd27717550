"""``offline evaluate``: EER tables from audio (a CM plus test sets) or from score files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from offline import datasets
from offline.evaluate import ConditionResult, evaluate_condition, utterance_name
from offline.metrics import paper_eer
from offline.plots import plot_confusion_matrix
from offline.scorefiles import read_scores, score_file_condition, write_scores
from offline.tables import CONDITIONS, TableRow, render_table
from streamdet.errors import ConfigError
from streamdet.manifest import PAPER_NAMES
from streamdet.scoring import open_scorer

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
    p.add_argument("--threshold", type=float, default=0.5, help="bona fide threshold of the confusion matrices")
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
    feature, backbone = PAPER_NAMES.get(architecture or "", ("", name))
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


def _report_failures(results: list[ConditionResult]) -> int:
    failures = {path: reason for r in results for path, reason in r.failures.items()}
    if not failures:
        return 0
    print(f"offline evaluate: {len(failures)} file(s) could not be read and were not scored:", file=sys.stderr)
    for path, reason in failures.items():
        print(f"  {path}: {reason}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
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
            plot_confusion_matrix(r.confusion(args.threshold), args.out / f"{r.condition}_confusion.png",
                                  f"{scorer.model_id} on {r.condition}")
    eer = {r.condition: r.eer for r in results if len(r.utterances)}
    manifest = getattr(scorer, "contract", None)
    architecture = getattr(manifest, "architecture", None)
    _print_report(eer, scorer.model_id, architecture, args.json,
                  {"model_id": scorer.model_id, "counts": {r.condition: len(r.utterances) for r in results},
                   "failures": {p: f for r in results for p, f in r.failures.items()}})
    return _report_failures(results)
