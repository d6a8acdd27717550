"""``streamdet whip-send``: publish an audio file to a running ``streamdet serve`` over WebRTC (WHIP)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from streamdet.errors import ConfigError

TOKEN_ENV = "STREAMDET_WHIP_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "whip-send", help="publish an audio file over WebRTC (WHIP)",
        description="Publish FILE in real time as one stream over WebRTC (WHIP, RFC 9725), then end it "
                    "with DELETE. Prints one JSON line.")
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument("--url", default="http://127.0.0.1:8080",
                        help="the service's HTTP base (the stream id is appended as /whip/ID) or a full "
                             "WHIP endpoint URL (default http://127.0.0.1:8080)")
    parser.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
    parser.add_argument("--stream-id", help="stream id (default: file name plus a random suffix)")
    parser.add_argument("--speed", type=float, default=1.0, help="pace as a multiple of real time (default 1)")
    parser.add_argument("--codec", choices=["opus", "PCMU", "PCMA", "G722"],
                        help="offer only this codec (default: all, the service picks Opus)")
    parser.add_argument("--ice-addresses", help="comma-separated host addresses to offer as ICE candidates "
                                                "(default: every interface's; 127.0.0.1 on one machine)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamdet.client.whip_sender import publish_file_async

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("aioice").setLevel(logging.WARNING)  # a line per ICE check otherwise
    if args.speed <= 0:
        raise ConfigError("--speed must be positive")
    addresses = [a.strip() for a in args.ice_addresses.split(",") if a.strip()] if args.ice_addresses else None
    result = asyncio.run(publish_file_async(
        args.file, args.url, stream_id=args.stream_id, token=args.token or os.environ.get(TOKEN_ENV),
        speed=args.speed, codec=args.codec, ice_addresses=addresses))
    print(json.dumps({**asdict(result), "duration": round(result.duration, 4)}), flush=True)
    return 0
