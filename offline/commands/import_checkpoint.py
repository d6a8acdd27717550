"""``offline import-checkpoint``: turn a released pickle into a CM directory, safely."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.checkpoint import import_checkpoint


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-checkpoint",
        help="convert a released .pt into safetensors + manifest without executing it",
        description="Read a pickled CM with a restricted unpickler (no code from the file runs) and "
        "write model.safetensors + manifest.json to --out.",
    )
    p.add_argument("src", type=Path, help="the released anti-spoofing_feat_model.pt")
    p.add_argument("--out", type=Path, required=True, help="CM directory to write")
    p.add_argument("--name", help="CM name (default: the source's folder name)")
    p.add_argument("--trained-on", default="", help="training data, recorded in the manifest")
    p.add_argument("--sha256", help="refuse the file unless it has this sha256")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    manifest = import_checkpoint(args.src, args.out, name=args.name, trained_on=args.trained_on,
                                 expected_sha256=args.sha256)
    print(f"imported {manifest.name} ({manifest.architecture}) → {args.out}  [{manifest.model_id}]")
    return 0
