"""``streamdet subscribe``: print the service's events as JSON lines, from a node's ZeroMQ socket or,
with ``--redis``, from the Redis streams every node appends to.

From ZeroMQ with ``--http`` (the service's HTTP address), missed events are filled from the node's
journal and ``--since`` replays it first. Events that cannot be recovered are named on stderr, one
line per gap, and make the command exit 1 when it ends (``--count`` reached).

From Redis (``--redis``), ``--group`` reads through a consumer group, each entry acknowledged once
printed; Redis keeps its own history (``--from-start``), so the journal's flags do not apply."""

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
                             "(the service is gone); a quiet running service sends heartbeats. With --redis: "
                             "stop (status 0) after this many seconds without an entry")
    parser.add_argument("--since", metavar="SEQ|TIME",
                        help="first replay the journal after this sequence number (120), or from this time: "
                             "ISO 8601 (2026-12-02T04:00:00Z) or back from now (90s, 15m, 2h, 1d); then follow live")
    parser.add_argument("--http", metavar="URL",
                        help="the service's HTTP address (http://127.0.0.1:8080 by default on the service): "
                             "fill gaps from its journal, and replay with --since")
    parser.add_argument("--server-key", type=Path, help="the server's public CURVE certificate")
    parser.add_argument("--client-key", type=Path, help="this client's secret CURVE certificate")
    redis = parser.add_argument_group("Redis Streams (events.redis_url): the events of every node")
    redis.add_argument("--redis", metavar="URL", help="read from Redis (e.g. redis://127.0.0.1:6379/0) "
                                                      "instead of a node's ZeroMQ socket")
    redis.add_argument("--stream", choices=["alerts", "scores"], default="alerts",
                       help="alerts (raised, cleared, ended; default) or scores (score, end)")
    redis.add_argument("--prefix", default="streamdet", help="the nodes' events.redis_prefix")
    redis.add_argument("--group", help="read through this consumer group, acknowledging each printed entry; "
                                       "a restarted consumer first gets what it had not acknowledged")
    redis.add_argument("--consumer", help="this consumer's name in the group (default: the host name; "
                                          "keep it across restarts)")
    redis.add_argument("--claim-after", type=float, metavar="SECONDS",
                       help="take over entries another consumer of the group left unacknowledged this long "
                            "(a consumer that is not coming back)")
    redis.add_argument("--from-start", action="store_true",
                       help="start from the oldest retained entry (a new group, or without a group); "
                            "default: entries appended from now on")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    if args.redis is not None:
        _check_redis_flags(args)
        asyncio.run(_follow_redis(args))
        return 0
    if args.group or args.consumer or args.claim_after is not None or args.from_start:
        raise ConfigError("--group, --consumer, --claim-after and --from-start read from Redis: give --redis URL")
    if args.since is not None and args.http is None:
        raise ConfigError("--since replays the service's journal: give its HTTP address, --http URL")
    from streamdet.client.replay import parse_since

    since = parse_since(args.since) if args.since is not None else None
    missed = asyncio.run(_follow(args, since))
    if missed:
        print(f"streamdet subscribe: {missed} event(s) could not be recovered", file=sys.stderr)
        return EXIT_MISSED
    return 0


def _check_redis_flags(args: argparse.Namespace) -> None:
    """The flags of a node's ZeroMQ socket and journal have no meaning with ``--redis``: say so."""
    zmq_only = [flag for flag, value in [("--since", args.since), ("--http", args.http),
                                         ("--topic", args.topics), ("--server-key", args.server_key),
                                         ("--client-key", args.client_key)] if value]
    if zmq_only:
        raise ConfigError(f"--redis cannot be combined with {', '.join(zmq_only)} (a node's ZeroMQ socket and "
                          "journal): Redis keeps its own history (--from-start); choose events with --stream")
    if args.claim_after is not None and (args.group is None or args.claim_after <= 0):
        raise ConfigError("--claim-after needs --group and a positive number of seconds")


def _report(missed: MissedEvents) -> None:
    print(f"streamdet subscribe: {missed}", file=sys.stderr, flush=True)


async def _follow_redis(args: argparse.Namespace) -> None:
    try:
        from streamdet.client.redis_subscriber import RedisSubscriber
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "redis":
            raise
        raise ConfigError("--redis needs the redis package: pip install 'streamdet[redis]'") from exc

    seen = 0
    async with RedisSubscriber(args.redis, stream=args.stream, prefix=args.prefix, group=args.group,
                               consumer=args.consumer, start="0" if args.from_start else "$",
                               claim_idle_s=args.claim_after) as subscriber:
        while args.count is None or seen < args.count:
            try:
                entry = await subscriber.recv(timeout=args.timeout)
            except TimeoutError:
                return  # with --redis, --timeout ends a quiet follow (Redis itself is waited for)
            print(json.dumps(asdict(entry.event)), flush=True)
            await subscriber.ack(entry)  # after printing: a crash before it means the entry comes again
            seen += 1


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
