"""``offline download``: fetch public test sets."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.download import ALM_ADD_URL, download_alm_add


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download",
        help="download a public test set (alm-add)",
        description="Download and unpack a public test set. ASVspoof2019 LA, In-the-Wild and "
        "Codecfake need a licence click-through or are too large: see the README for their recipes.",
    )
    p.add_argument("dataset", choices=["alm-add"])
    p.add_argument("--dest", type=Path, default=Path("data"), help="folder to unpack into (default: data/)")
    p.add_argument("--url", default=ALM_ADD_URL, help="archive URL (default: the authors' repository)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = download_alm_add(args.dest, url=args.url)
    print(f"ALM-ADD ready at {root}: evaluate with `offline evaluate CM --alm-add {root}`")
    return 0
