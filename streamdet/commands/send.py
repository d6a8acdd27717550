"""``streamdet send``: stream audio files to a running ``streamdet serve``, one stream per file.

Each ``--stream-id`` names the stream of the FILE before it (``a.wav --stream-id A b.wav --stream-id B``);
a file without one is named after the file. The older form, every file first and then one
``--stream-id`` per file in order, still works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from streamdet.errors import ConfigError

DEFAULT_TIMEOUT_S = 10.0


class _Files(argparse.Action):
    """FILE...: appends ("file", path) to ``args.sources`` in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        _sources(namespace).extend(("file", value) for value in values)


class _StreamId(argparse.Action):
    """--stream-id ID [FILE ...]: argparse hands the files after the id to the option, not to FILE."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        stream_id, *files = values
        _sources(namespace).append(("id", stream_id))
        _sources(namespace).extend(("file", file) for file in files)


def _sources(namespace: argparse.Namespace) -> list[tuple[str, str]]:
    if namespace.sources is None:
        namespace.sources = []
    return namespace.sources


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("send", help="stream audio files to the service",
                                   description="Send files (their native rate and channels) as streams; "
                                               "several files go concurrently. Prints one JSON line per stream.")
    parser.add_argument("files", nargs="+", action=_Files, metavar="FILE")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the service's ingest endpoint")
    parser.add_argument("--stream-id", nargs="+", action=_StreamId, metavar=("ID", "FILE"),
                        help="stream id of the FILE before it (default: file name plus a random suffix); "
                             "more files may follow: a.wav --stream-id A b.wav --stream-id B")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="give up when the service does not complete the connection (and CURVE "
                             f"handshake) within this many seconds (default {DEFAULT_TIMEOUT_S:g})")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="send at real-time pace")
    pace.add_argument("--speed", type=float, help="pace as a multiple of real time (2 = twice as fast)")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="audio per frame (default 20 ms)")
    parser.add_argument("--format", choices=["auto", "s16le", "f32le"], default="auto",
                        help="sample format (auto: s16le for 16-bit PCM files, else f32le)")
    parser.add_argument("--server-key", type=Path, help="the server's public CURVE certificate")
    parser.add_argument("--client-key", type=Path, help="this client's secret CURVE certificate")
    parser.set_defaults(func=run, sources=None)


def pair_stream_ids(sources: list[tuple[str, str]]) -> list[tuple[Path, str | None]]:
    """(file, stream id or None) per file, from the ("file", path) / ("id", ID) items in order."""
    files = [value for kind, value in sources if kind == "file"]
    ids = [value for kind, value in sources if kind == "id"]
    first_id = next((i for i, (kind, _) in enumerate(sources) if kind == "id"), len(sources))
    if len(files) > 1 and len(ids) == len(files) and all(kind == "id" for kind, _ in sources[first_id:]):
        pairs: list[list] = [[Path(file), stream_id] for file, stream_id in zip(files, ids, strict=True)]
    else:
        pairs = []
        for kind, value in sources:
            if kind == "file":
                pairs.append([Path(value), None])
            elif not pairs:
                raise ConfigError(f"--stream-id {value} comes before any FILE; give it after its file")
            elif pairs[-1][1] is not None:
                raise ConfigError(f"two --stream-id for {pairs[-1][0]} ({pairs[-1][1]}, {value}); "
                                  "each --stream-id names the file before it")
            else:
                pairs[-1][1] = value
    named = [stream_id for _file, stream_id in pairs if stream_id is not None]
    if len(set(named)) != len(named):
        raise ConfigError(f"--stream-id values must differ, got {', '.join(named)}")
    return [(file, stream_id) for file, stream_id in pairs]


def run(args: argparse.Namespace) -> int:
    from streamdet.client import send_files_async

    pairs = pair_stream_ids(args.sources)
    if args.speed is not None and args.speed <= 0:
        raise ConfigError("--speed must be positive")
    if args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    speed = 1.0 if args.realtime else args.speed
    results = asyncio.run(send_files_async(
        [file for file, _ in pairs], args.endpoint, stream_ids=[stream_id for _, stream_id in pairs],
        connect_timeout=args.timeout, fmt=args.format, speed=speed, chunk_ms=args.chunk_ms,
        server_key=args.server_key, client_secret_key=args.client_key))
    for result in results:
        print(json.dumps({**asdict(result), "duration": round(result.duration, 4)}), flush=True)
    return 0
