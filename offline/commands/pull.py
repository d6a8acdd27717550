"""``offline pull``: download a released CM (sha256 pinned), verify and import it."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.pull import SOURCE_ENV, pull
from offline.releases import RELEASES
from streamdet.errors import DatasetError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pull",
        help="download, verify and import a released CM",
        description=f"Known CMs: {', '.join(RELEASES)}.",
    )
    p.add_argument("name", choices=sorted(RELEASES), metavar="NAME", help="released CM name")
    p.add_argument("--out", type=Path, help="CM directory to write (default: engines/NAME)")
    p.add_argument("--source", help=f"URL prefix or local folder to pull from (default: ${SOURCE_ENV} "
                   "or the authors' repository)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out or Path("engines") / args.name
    try:
        manifest = pull(args.name, out, source=args.source)
    except DatasetError as exc:  # the download failed: say where else the checkpoint can come from
        raise DatasetError(f"{exc}; pull from a mirror or a local folder with --source URL|DIR "
                           f"(or {SOURCE_ENV})") from exc
    print(f"pulled {manifest.name} ({manifest.architecture}, sha256 verified) → {out}  [{manifest.model_id}]")
    return 0
