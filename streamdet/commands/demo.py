"""``streamdet demo``: start the service in-process, stream the bundled clips, print and report."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the service end to end on bundled clips (offline)",
        description="Start the streaming service in this process (loopback, free ports) with the CM shipped "
                    "in the package, stream the bundled genuine and synthetic clips through it in real time, "
                    "print every score and alert as it happens, and write report.md, report.json and a "
                    "score-timeline PNG per stream. Needs no network and no download.")
    parser.add_argument("--out", type=Path, default=Path("streamdet-demo"),
                        help="report directory (default: ./streamdet-demo)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the service and its monitoring page running after the report, until Ctrl-C")
    parser.add_argument("--engine", help="score with this CM or engine instead of the shipped CM")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the service's, auto)")
    parser.add_argument("--http-port", type=int, default=0, help="port of the monitoring page (default: any free)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamdet.demo import DemoOptions

    if not args.verbose:
        # The demo prints what the service does; its own INFO log lines would repeat it on stderr.
        logging.getLogger("streamdet.service").setLevel(logging.WARNING)
        logging.getLogger("streamdet.scoring").setLevel(logging.WARNING)
    options = DemoOptions(out_dir=args.out, engine=args.engine, device=args.device, keep=args.keep,
                          http_port=args.http_port)
    return asyncio.run(_main(options))


async def _main(options) -> int:
    from streamdet.demo import run_demo

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run_demo(options, stop, write=lambda line: print(line, flush=True))
