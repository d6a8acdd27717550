"""``offline``: the research side's command line.

Each sub-command lives in ``offline/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a function ``(args) -> int``. Errors from the library
(``StreamdetError``) become a one-line message and exit status 2; only this module calls sys.exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from streamdet.errors import StreamdetError

COMMANDS = ("import_checkpoint", "pull", "download", "evaluate", "prepare_features", "check_features", "train", "export", "data", "calibrate", "field_splits")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offline", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"offline.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except StreamdetError as exc:
        print(f"offline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
