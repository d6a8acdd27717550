"""``offline crossval``: grouped cross-validation of field CMs (configs/field/crossval.toml)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from offline.crossval.config import load_crossval_config
from offline.crossval.pipeline import STAGES, run_crossval, ship


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "crossval",
        help="grouped cross-validation: whole sources and systems held out, pooled field numbers",
        description="Deal the field list's real sources and fake systems to folds; per fold, retrain the "
        "candidates' heads on the other groups, calibrate them there (1 %% of real windows alerting) and "
        "replay the held-out groups as calls through the service's windower, policy and alert machine; "
        "report pooled false alerts per hour, fake windows detected and fake calls alerted quickly, per "
        "source/system too, with DET curves. Every stage resumes where it stopped.",
    )
    p.add_argument("--config", type=Path, required=True, help="crossval config (configs/field/crossval.toml)")
    p.add_argument("--stage", dest="stages", action="append", choices=STAGES,
                   help=f"run only this stage (repeatable; default: all of {', '.join(STAGES)})")
    p.add_argument("--ship", metavar="CANDIDATE",
                   help="instead: train CANDIDATE's head on every group, calibrate on all, write a CM")
    p.add_argument("--ship-out", type=Path, help="CM directory for --ship (default: <out>/ship/<CANDIDATE>)")
    p.add_argument("--channel", dest="channels", action="append", metavar="NAME",
                   help="replay and report only these channels (repeatable; default: the config's)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    config = load_crossval_config(args.config)
    if args.channels:
        config = config.model_copy(update={"channels": args.channels})
    if args.ship:
        out = ship(config, args.ship, args.ship_out or config.out / "ship" / args.ship)
        print(f"wrote {out}")
        return 0
    for path in run_crossval(config, args.stages or STAGES):
        print(f"wrote {path}")
    return 0
