"""``streamdet send``: stream audio files to a running ``streamdet serve``, one stream per file."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from streamdet.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("send", help="stream audio files to the service",
                                   description="Send files (their native rate and channels) as streams; "
                                               "several files go concurrently. Prints one JSON line per stream.")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the service's ingest endpoint")
    parser.add_argument("--stream-id", action="append", dest="stream_ids", metavar="ID",
                        help="stream id (once per FILE; default: file name plus a random suffix)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="send at real-time pace")
    pace.add_argument("--speed", type=float, help="pace as a multiple of real time (2 = twice as fast)")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="audio per frame (default 20 ms)")
    parser.add_argument("--format", choices=["auto", "s16le", "f32le"], default="auto",
                        help="sample format (auto: s16le for 16-bit PCM files, else f32le)")
    parser.add_argument("--server-key", type=Path, help="the server's public CURVE certificate")
    parser.add_argument("--client-key", type=Path, help="this client's secret CURVE certificate")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamdet.client import send_files_async

    if args.stream_ids and len(args.stream_ids) != len(args.files):
        raise ConfigError(f"{len(args.stream_ids)} --stream-id for {len(args.files)} files")
    if args.speed is not None and args.speed <= 0:
        raise ConfigError("--speed must be positive")
    speed = 1.0 if args.realtime else args.speed
    results = asyncio.run(send_files_async(
        args.files, args.endpoint, stream_ids=args.stream_ids, fmt=args.format, speed=speed,
        chunk_ms=args.chunk_ms, server_key=args.server_key, client_secret_key=args.client_key))
    for result in results:
        print(json.dumps({**asdict(result), "duration": round(result.duration, 4)}), flush=True)
    return 0
