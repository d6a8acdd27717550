"""The machinery both console scripts (``streamdet`` and ``offline``) share.

A sub-command is a module ``<package>.<name>`` exposing ``register(subparsers)``, which adds its
parser and sets ``func`` to a function ``(args) -> int``. Library errors (``StreamdetError``) become
a one-line message and exit status 2. Only the scripts' ``__main__`` modules call sys.exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from streamdet.errors import StreamdetError


def build_parser(prog: str, description: str, package: str, commands: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in commands:
        importlib.import_module(f"{package}.{name}").register(subparsers)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, configure logging, run the sub-command and map library errors to an exit status."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except StreamdetError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
