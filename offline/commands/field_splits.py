"""``offline field-splits``: write the train / dev / held-out lists of the field CM (configs/field/splits.toml)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.field_splits import build_splits, load_split_config, write_splits


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "field-splits",
        help="write train/dev/held-out list files for the telephone CM",
        description="Split the Asterisk prompts (by language), the synthetic spoof systems (by system) and "
        "ALM-ADD (by condition) into training, a deterministic dev slice, and held-out evaluation lists; "
        "write <out>/<list>.txt and <out>/splits.json.",
    )
    p.add_argument("--config", type=Path, required=True, help="split config (e.g. configs/field/splits.toml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_split_config(args.config)
    summary = write_splits(config, build_splits(config))
    print(f"{'list':24} {'clips':>6} {'real':>6} {'fake':>6} {'minutes':>8}  sources")
    for name, entry in summary["lists"].items():  # type: ignore[union-attr]
        print(f"{name:24} {entry['clips']:6d} {entry['real']:6d} {entry['fake']:6d} {entry['minutes']:8.1f}  "
              + ", ".join(entry["sources"]))
    print(f"written to {config.out} (splits.json records every source)")
    return 0
