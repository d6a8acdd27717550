"""``streamdet subscribe``: print the service's events as JSON lines."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("subscribe", help="print score and alert events as JSON lines",
                                   description="Follow events by topic prefix: alert. (raised/cleared), "
                                               "score. (every window, and end), or one stream: alert.<id>.")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="the service's event endpoint")
    parser.add_argument("--topic", action="append", dest="topics", metavar="PREFIX",
                        help="topic prefix, repeatable (default: everything)")
    parser.add_argument("--count", type=int, help="exit after this many events")
    parser.add_argument("--timeout", type=float, help="exit after this many seconds without an event")
    parser.add_argument("--server-key", type=Path, help="the server's public CURVE certificate")
    parser.add_argument("--client-key", type=Path, help="this client's secret CURVE certificate")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamdet.client import iter_events

    seen = 0
    for event in iter_events(args.endpoint, args.topics or [""], timeout=args.timeout,
                             server_key=args.server_key, client_secret_key=args.client_key):
        print(json.dumps(asdict(event)), flush=True)
        seen += 1
        if args.count is not None and seen >= args.count:
            break
    return 0
