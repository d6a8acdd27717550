"""``streamdet subscribe``: print the service's events as JSON lines.

With ``--http`` (the service's HTTP address), missed events are filled from the service's journal
and ``--since`` replays it first. Events that cannot be recovered are named on stderr, one line per gap, and make the command
exit 1 when it ends (``--count`` reached)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from streamdet.errors import ConfigError

if TYPE_CHECKING:  # the client (aiohttp, zmq) loads when the command runs
    from streamdet.client.replay import MissedEvents, Since

EXIT_MISSED = 1


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
    parser.add_argument("--since", metavar="SEQ|TIME",
                        help="first replay the journal after this sequence number (120), or from this time: "
                             "ISO 8601 (2026-12-02T04:00:00Z) or back from now (90s, 15m, 2h, 1d); then follow live")
    parser.add_argument("--http", metavar="URL",
                        help="the service's HTTP address (http://127.0.0.1:8080 by default on the service): "
                             "fill gaps from its journal, and replay with --since")
    parser.add_argument("--server-key", type=Path, help="the server's public CURVE certificate")
    parser.add_argument("--client-key", type=Path, help="this client's secret CURVE certificate")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    if args.since is not None and args.http is None:
        raise ConfigError("--since replays the service's journal: give its HTTP address, --http URL")
    from streamdet.client.replay import parse_since

    since = parse_since(args.since) if args.since is not None else None
    missed = asyncio.run(_follow(args, since))
    if missed:
        print(f"streamdet subscribe: {missed} event(s) could not be recovered", file=sys.stderr)
        return EXIT_MISSED
    return 0


def _report(missed: MissedEvents) -> None:
    print(f"streamdet subscribe: {missed}", file=sys.stderr, flush=True)


async def _follow(args: argparse.Namespace, since: Since | None) -> int:
    """Print events until ``--count``; returns how many could not be recovered (at most)."""
    from streamdet.client import Subscriber

    seen = 0
    async with Subscriber(args.endpoint, args.topics or [""], server_key=args.server_key,
                          client_secret_key=args.client_key, replay=args.http,
                          since=since, on_missed=_report) as subscriber:
        while args.count is None or seen < args.count:
            event = await subscriber.recv(idle_timeout=args.timeout)
            print(json.dumps(asdict(event)), flush=True)
            seen += 1
        return sum(m.count for m in subscriber.missed)
