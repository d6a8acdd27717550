"""``offline prepare-features``: compute the frozen front-end's features once per dataset, resumably."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from pydantic import ValidationError

from offline.features.prepare import DEFAULT_BATCH_SIZE, DEFAULT_SHARD_SIZE, build_frontend, prepare_cache
from offline.features.specs import DATASET_KINDS, FrontendSpec, dataset_spec
from offline.training.config import load_config
from streamdet.errors import ConfigError
from streamdet.models.w2v2 import HIDDEN_LAYER, XLSR_300M

# A failure list longer than this is cut in the terminal; the shard records keep every one.
_FAILURES_SHOWN = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare-features",
        help="cache W2V2 (or mel) features of datasets for training",
        description="Compute the frozen front-end's output (W2V2 hidden_states[5] in fp16, or mel) for every "
        "file of a dataset into a sharded cache with an index. Re-running continues an interrupted cache "
        "without redoing finished shards. Files that cannot be read are listed at the end (exit status 1); "
        "the rest is cached. Either --config (every cache an experiment needs) or one dataset by flags.",
    )
    p.add_argument("--config", type=Path, help="experiment config: prepare the caches of its train and dev sets")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (as in `offline train`)")
    one = p.add_argument_group("one dataset (instead of --config)")
    one.add_argument("--kind", choices=DATASET_KINDS, help="dataset reader")
    one.add_argument("--root", type=Path, help="dataset root (asvspoof2019_la, codecfake, alm_add, in_the_wild)")
    one.add_argument("--part", help="part: train/dev/eval (ASVspoof2019 LA), train/dev/C1../A1.. (Codecfake)")
    one.add_argument("--list", type=Path, help="list file of 'path label' lines (kind list)")
    one.add_argument("--condition", action="append", help="ALM-ADD condition (A01...), repeatable")
    one.add_argument("--frontend", choices=("w2v2", "mel"), default="w2v2")
    one.add_argument("--w2v2-source", default=XLSR_300M, help="hub id or local directory of XLS-R")
    one.add_argument("--w2v2-layer", type=int, default=HIDDEN_LAYER)
    one.add_argument("--out", type=Path, help="cache directory to write")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="items per shard")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="front-end batch size")
    p.add_argument("--num-workers", type=int, default=4, help="audio decoding processes")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--overwrite", action="store_true", help="replace a cache built from something else")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _jobs(args: argparse.Namespace) -> list[tuple[Path, FrontendSpec, object]]:
    """(cache directory, front-end, dataset spec) for every cache to prepare."""
    if args.config is not None:
        config = load_config(args.config, args.overrides)
        frontend = config.frontend
        if frontend is None:
            raise ConfigError(
                f"{args.config}: mel is computed on the fly; set features.cache_mel = true to cache it"
            )
        jobs, seen = [], set()
        for spec in (*config.data.train, *config.data.dev):
            directory = config.cache_dir(spec)
            if directory not in seen:
                seen.add(directory)
                jobs.append((directory, frontend, spec))
        return jobs
    if args.kind is None or args.out is None:
        raise ConfigError("give --config FILE, or --kind and --out (and the dataset's --root/--part/--list)")
    fields = {"kind": args.kind, "root": args.root, "part": args.part, "path": args.list,
              "conditions": args.condition}
    data = {k: str(v) if isinstance(v, Path) else v for k, v in fields.items() if v is not None}
    try:
        spec = dataset_spec(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"dataset flags for --kind {args.kind}: {problems}") from None
    frontend = FrontendSpec(
        kind=args.frontend,
        source=args.w2v2_source if args.frontend == "w2v2" else None,
        layer=args.w2v2_layer if args.frontend == "w2v2" else HIDDEN_LAYER,
    )
    return [(args.out.absolute(), frontend, spec)]


def run(args: argparse.Namespace) -> int:
    jobs = _jobs(args)  # every config or flag problem surfaces here, before any audio is read
    build = functools.cache(build_frontend)  # one XLS-R load for all datasets
    failures: list[tuple[str, str]] = []
    for directory, frontend, spec in jobs:
        # Missing files become per-item failures (reported at the end) instead of stopping the run.
        utterances = spec.read(check_audio=False)
        report = prepare_cache(
            directory, frontend, spec.describe(), utterances,
            shard_size=args.shard_size, batch_size=args.batch_size, num_workers=args.num_workers,
            device=args.device, overwrite=args.overwrite, progress=not args.no_progress, build=build,
        )
        print(
            f"{spec.label}: {report.num_items} items -> {directory} "
            f"({len(report.computed_shards)} shard(s) computed, {len(report.skipped_shards)} already done, "
            f"{len(report.failures)} failed item(s))"
        )
        failures += report.failures
    if failures:
        print(f"\n{len(failures)} file(s) could not be read; their rows are marked failed and training "
              "refuses them. Fix them and run again (only their shards are redone), or remove them "
              "from the dataset:", file=sys.stderr)
        for path, reason in failures[:_FAILURES_SHOWN]:
            print(f"  {path}: {reason}", file=sys.stderr)
        if len(failures) > _FAILURES_SHOWN:
            print(f"  ... and {len(failures) - _FAILURES_SHOWN} more (see the shard-*.json records)", file=sys.stderr)
        return 1
    return 0
