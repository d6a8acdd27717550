"""``streamdet subscribe``: print the service's events as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from streamdet.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("subscribe", help="print score and alert events as JSON lines",
                                   description="Follow events by topic prefix: alert. (raised/cleared), "
                                               "score. (every window, and end), or one stream: alert.<id>.")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="the service's event endpoint")
    parser.add_argument("--topic", action="append", dest="topics", metavar="PREFIX",
                        help="topic prefix, repeatable (default: everything)")
    parser.add_argument("--count", type=int, help="exit after this many events")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="exit with an error after this many seconds without an event or a heartbeat "
                             "(the service is gone); a quiet running service sends heartbeats")
    parser.add_argument("--server-key", type=Path, help="the server's public CURVE certificate")
    parser.add_argument("--client-key", type=Path, help="this client's secret CURVE certificate")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    asyncio.run(_follow(args))
    return 0


async def _follow(args: argparse.Namespace) -> None:
    from streamdet.client import Subscriber

    seen = 0
    async with Subscriber(args.endpoint, args.topics or [""], server_key=args.server_key,
                          client_secret_key=args.client_key) as subscriber:
        while args.count is None or seen < args.count:
            event = await subscriber.recv(idle_timeout=args.timeout)
            print(json.dumps(asdict(event)), flush=True)
            seen += 1
