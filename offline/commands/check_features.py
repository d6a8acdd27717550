"""``offline check-features``: compare feature caches with their datasets (count, ids, labels, shapes)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from offline.features.cache import CheckReport, FeatureCache
from offline.features.specs import dataset_spec
from offline.training.config import load_config
from streamdet.errors import ConfigError, StreamdetError

_SHOWN = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check-features",
        help="check feature caches against their datasets",
        description="For each cache: every shard written, with the expected shape and dtype; item count, "
        "utt ids and labels equal to the dataset's (re-read from the spec in the cache's index); no failed "
        "items. Exit status 0 when all caches are complete and consistent, 1 otherwise.",
    )
    p.add_argument("caches", nargs="*", type=Path, help="cache directories")
    p.add_argument("--config", type=Path, help="check every cache an experiment config reads")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def _directories(args: argparse.Namespace) -> list[Path]:
    directories = list(args.caches)
    if args.config is not None:
        config = load_config(args.config, args.overrides)
        if config.frontend is None:
            raise ConfigError(f"{args.config}: reads no feature caches (mel on the fly)")
        directories += [config.cache_dir(s) for s in (*config.data.train, *config.data.dev)]
    if not directories:
        raise ConfigError("name cache directories or --config FILE")
    return list(dict.fromkeys(directories))


def check_cache(directory: Path) -> CheckReport:
    """Open a cache and compare it with the dataset its index names."""
    cache = FeatureCache.open(directory)
    try:
        utterances = dataset_spec(cache.index.dataset).read(check_audio=False)
    except (StreamdetError, ValidationError, ValueError) as exc:
        report = cache.check(None)
        report.problems.insert(0, f"cannot read the dataset named in the index: {exc}")
        return report
    return cache.check(utterances)


def run(args: argparse.Namespace) -> int:
    ok = True
    for directory in _directories(args):
        try:
            report = check_cache(directory)
        except StreamdetError as exc:
            print(exc)  # names the directory
            ok = False
            continue
        print(report.summary())
        for problem in report.problems:
            print(f"  problem: {problem}")
        for path, reason in report.failures[:_SHOWN]:
            print(f"  failed: {path}: {reason}")
        if len(report.failures) > _SHOWN:
            print(f"  ... and {len(report.failures) - _SHOWN} more failed items")
        ok = ok and report.ok
    return 0 if ok else 1
