"""``streamdet``: the runtime's command line (serve, send, subscribe, ...).

Sub-commands are modules of ``streamdet.commands`` (see ``streamdet.cmdline``); to add one, write the
module and name it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse

from streamdet import cmdline

COMMANDS: tuple[str, ...] = ("serve", "send", "subscribe", "bench", "whip_send", "demo")


def build_parser() -> argparse.ArgumentParser:
    return cmdline.build_parser("streamdet", __doc__.splitlines()[0], "streamdet.commands", COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return cmdline.run(build_parser(), argv)
