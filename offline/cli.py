"""``offline``: the research side's command line.

Sub-commands are modules of ``offline.commands`` (see ``streamdet.cmdline``); to add one, write the
module and name it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse

from streamdet import cmdline

COMMANDS = ("import_checkpoint", "pull", "download", "evaluate", "prepare_features", "check_features", "train", "export", "data", "calibrate", "field_splits", "crossval")


def build_parser() -> argparse.ArgumentParser:
    return cmdline.build_parser("offline", __doc__.splitlines()[0], "offline.commands", COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return cmdline.run(build_parser(), argv)
