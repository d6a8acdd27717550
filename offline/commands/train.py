"""``offline train``: train a CM with the paper's recipe from an experiment config."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from offline.training.config import load_config
from offline.training.trainer import train


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a CM from an experiment config (configs/paper/*.toml)",
        description="Train a CM as the paper did (Adam 5e-4, weighted CE 10/1, step schedule, lowest "
        "validation loss kept) and write it as a CM directory (<run_dir>/cm). W2V2 configs read feature "
        "caches: run `offline prepare-features --config FILE` first. Multi-GPU: "
        "`torchrun --nproc_per_node=N -m offline train --config FILE`.",
    )
    p.add_argument("--config", type=Path, required=True, help="experiment config (TOML, or a run's config.json)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set schedule.epochs=2 (repeatable; VALUE in TOML syntax)")
    p.add_argument("--run-dir", type=Path, help="run directory (default: runs/<name>)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: the config's runtime.device)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="stop after epoch N with the checkpoint kept, as if interrupted (continue with --resume)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    # Flags are overrides too, so they are validated and recorded in the run's config.json.
    if args.run_dir is not None:
        overrides.append(f"runtime.run_dir={json.dumps(str(args.run_dir.absolute()))}")
    if args.device is not None:
        overrides.append(f"runtime.device={json.dumps(args.device)}")
    config = load_config(args.config, overrides)
    result = train(config, resume=args.resume, stop_after=args.stop_after)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the run
        return 0
    if result.cm_dir is None:
        print(f"stopped after epoch {len(result.history)}; continue with --resume ({result.run_dir})")
    else:
        print(f"best epoch {result.best_epoch} (val loss {result.best_val_loss:.5f}); CM written to {result.cm_dir}")
    return 0
