"""``streamdet serve``: run the streaming service until SIGTERM/SIGINT (then shut down gracefully)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamdet.errors import ConfigError, PretrainedModelError
from streamdet.stream.policy import early_ends

if TYPE_CHECKING:
    from streamdet.service.server import Service
    from streamdet.service.settings import ScoringSettings

EXIT_UNSCORED = 3
"""Exit status when the graceful shutdown ran out of time and windows were left unscored."""

W2V2_SOURCE_REMEDY = ("point --w2v2-source (settings: scoring.w2v2_source, environment: "
                      "STREAMDET_SCORING__W2V2_SOURCE) at a local directory holding XLS-R")

# (flag, settings section, field, type, help): every flag maps onto one Settings field.
FLAGS: tuple[tuple[str, str, str, Any, str], ...] = (
    ("--engine", "scoring", "engine", str, "CM directory (or engine) to score with"),
    ("--device", "scoring", "device", str, "auto | cpu | cuda | cuda:N"),
    ("--w2v2-source", "scoring", "w2v2_source", str, "XLS-R location for W2V2 CMs (hub id or directory)"),
    ("--threads", "scoring", "threads", int, "the model's intra-op threads (0 = serve's choice)"),
    ("--lanes", "scoring", "lanes", int, "threads scoring whole batches concurrently (default: CPU cores; GPU 2)"),
    ("--workers", "scoring", "workers", int, "threads scoring parts of one batch concurrently (torch, CPU)"),
    ("--batches-in-flight", "scoring", "batches_in_flight", int, "batches handed to scoring at once (default lanes + 1)"),
    ("--max-batch", "scoring", "max_batch", int, "most windows per scored batch"),
    ("--max-wait-ms", "scoring", "max_wait_ms", float, "longest wait for a fuller batch"),
    ("--max-pending", "scoring", "max_pending_per_stream", int, "windows queued per stream before dropping"),
    ("--max-latency", "scoring", "max_latency_s", float,
     "latency target (s): older windows are shed, each stream's newest kept (default 3)"),
    ("--ingest", "ingest", "endpoint", str, "ZeroMQ PULL endpoint to bind for audio"),
    ("--ingest-curve-key", "ingest", "curve_secret_key", Path, "server secret certificate: require CURVE"),
    ("--ingest-curve-clients", "ingest", "curve_clients_dir", Path, "allowed client certificates"),
    ("--events", "alerts", "endpoint", str, "ZeroMQ PUB endpoint to bind for events"),
    ("--events-curve-key", "alerts", "curve_secret_key", Path, "server secret certificate: require CURVE"),
    ("--events-curve-clients", "alerts", "curve_clients_dir", Path, "allowed client certificates"),
    ("--spoof-threshold", "alerts", "spoof_threshold", float,
     "a window is spoof evidence when p_spoof >= this (default: the CM manifest's, else 0.5)"),
    ("--alert-k", "alerts", "k", int, "raise when k of the last n windows are spoof evidence"),
    ("--alert-n", "alerts", "n", int, "window count n of the k-of-n rule"),
    ("--alert-m", "alerts", "m", int, "clear after m consecutive windows below the spoof threshold"),
    ("--hop-samples", "window", "hop_samples", int, "samples (16 kHz) between window starts"),
    ("--min-speech", "alerts", "min_speech", float,
     "windows with a smaller speech fraction (VAD) neither raise nor clear an alert (default 0.3; 0 = off)"),
    ("--early-windows", "window", "early_samples", early_ends,
     "first decision: early windows ending at these seconds, e.g. 2,3 (default: none)"),
    ("--first-spoof-threshold", "alerts", "first_spoof_threshold", float,
     "the early windows' stricter threshold on p_spoof (default: --spoof-threshold's)"),
    ("--http-host", "http", "host", str, "address of /healthz, /readyz, /metrics"),
    ("--http-port", "http", "port", int, "port of the HTTP side (0 = any free port)"),
    ("--node-id", "events", "node_id", str, "this service's id in events (default: kept in the journal)"),
    ("--journal", "events", "journal_path", Path, "the event journal's SQLite file"),
    ("--max-streams", "limits", "max_streams", int, "most concurrent streams"),
    ("--max-frame-bytes", "limits", "max_frame_bytes", int, "largest accepted payload"),
    ("--idle-timeout", "limits", "idle_timeout_s", float, "end a stream silent for this many seconds"),
    # WebRTC ingest (WHIP) on the HTTP port; prefer STREAMDET_WHIP__TOKEN to a token on the command line.
    ("--whip-token", "whip", "token", str, "bearer token WHIP publishers must send"),
    ("--whip-max-peers", "whip", "max_peers", int, "most WebRTC peers at once"),
    ("--whip-silence-timeout", "whip", "silence_timeout_s", float, "close a WHIP peer silent this many seconds"),
    ("--whip-ice-addresses", "whip", "ice_addresses", str,
     "comma-separated host addresses offered as ICE candidates (default: every interface's)"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the streaming detector",
        description="Score live audio streams (ZeroMQ and WebRTC/WHIP ingest) and publish scores and alerts "
                    "(ZeroMQ PUB; a monitoring page at http://HOST:PORT/). "
                    "Settings: flags > STREAMDET_* environment > --config TOML > defaults.",
        epilog=f"Exit status: 0 after a clean shutdown (SIGTERM/SIGINT); {EXIT_UNSCORED} when the shutdown ran "
               "out of time (limits.shutdown_timeout_s) and windows were left unscored (their streams' end "
               "events, reason 'unscored', were still published); 2 for a configuration error.")
    parser.add_argument("--config", type=Path, help="TOML settings file (see configs/serve.toml)")
    for flag, _section, _field, kind, help_text in FLAGS:
        parser.add_argument(flag, type=kind, help=help_text)
    parser.add_argument("--threshold", type=float, dest="old_threshold", help=argparse.SUPPRESS)
    parser.add_argument("--no-http", action="store_true", help="do not serve /healthz, /readyz, /metrics")
    parser.add_argument("--no-whip", action="store_true", help="no WebRTC ingest (POST /whip/<stream_id>)")
    parser.add_argument("--no-page", action="store_true", help="no monitoring page (/ and /events)")
    parser.add_argument("--trust-unhashed", action="store_true",
                        help="load a CM whose manifest has no weights_sha256 (refused by default)")
    parser.add_argument("--no-journal", action="store_true", help="publish events without journaling them "
                        "(no replay; sequence numbers restart)")
    parser.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON")
    parser.add_argument("--source", action="append", metavar="[STREAM_ID=]URL",
                        help="pull a live source (Icecast/HTTP, HLS, RTSP, RTMP, SRT, udp:// MPEG-TS; repeatable; "
                             "replaces [ingests.broadcast] sources)")
    parser.add_argument("--media-ws", action="store_true",
                        help="accept call audio over media-stream WebSockets (/media-stream, /audio-fork)")
    parser.set_defaults(func=run)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given on the command line, as nested settings."""
    overrides: dict[str, Any] = {}
    for flag, section, field, _kind, _help in FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides.setdefault(section, {})[field] = value
    if getattr(args, "old_threshold", None) is not None:
        # --threshold was already a spoof probability: the same value, under its new name.
        print("streamdet serve: --threshold is deprecated, use --spoof-threshold (same value)",
              file=sys.stderr)
        overrides.setdefault("alerts", {}).setdefault("spoof_threshold", args.old_threshold)
    if args.no_http:
        overrides.setdefault("http", {})["enabled"] = False
    if args.no_whip:
        overrides.setdefault("whip", {})["enabled"] = False
    if args.no_page:
        overrides.setdefault("http", {})["page"] = False
    if getattr(args, "trust_unhashed", False):
        overrides.setdefault("scoring", {})["trust_unhashed"] = True
    if args.no_journal:
        overrides.setdefault("events", {})["journal"] = False
    if args.log_format:
        overrides["log_format"] = args.log_format
    if getattr(args, "source", None):
        from streamdet.service.ingest.broadcast import parse_source_flag

        sources = [parse_source_flag(value) for value in args.source]
        overrides.setdefault("ingests", {}).setdefault("broadcast", {})["sources"] = sources
    if getattr(args, "media_ws", False):
        overrides.setdefault("ingests", {}).setdefault("media_ws", {})["enabled"] = True
    return overrides


def run(args: argparse.Namespace) -> int:
    from streamdet.scoring import open_scorer
    from streamdet.scoring.select import PULL_HINT
    from streamdet.service.logs import use_json_logs
    from streamdet.service.memory import limit_malloc_arenas
    from streamdet.service.settings import load_settings

    settings = load_settings(args.config, overrides_from(args))
    if settings.log_format == "json":
        use_json_logs()
    limit_malloc_arenas()  # before the scorer starts its threads (streamdet.service.memory)
    scoring = resolve_scoring(settings.scoring)
    settings = settings.model_copy(update={"scoring": scoring})
    engine = scoring.engine or _shipped_cm(PULL_HINT)
    try:
        scorer = open_scorer(engine, device=scoring.device, w2v2_source=scoring.w2v2_source,
                             max_batch=scoring.max_batch, threads=scoring.threads or None,
                             workers=scoring.workers, trust_unhashed=scoring.trust_unhashed)
    except PretrainedModelError as exc:  # name the service's ways to set the source, not only the flag
        raise PretrainedModelError(exc.source, exc.reason, W2V2_SOURCE_REMEDY) from exc
    service = asyncio.run(_serve(settings, scorer))
    if service.unscored_at_shutdown is not None:
        print(f"streamdet serve: shutdown ran out of time ({settings.limits.shutdown_timeout_s:g} s): "
              f"{service.unscored_at_shutdown} window(s) left unscored", file=sys.stderr)
        return EXIT_UNSCORED
    return 0


def _shipped_cm(pull_hint: str) -> str:
    """The CM shipped inside the package (the telephone-robust Mel-LCNN of docs/field-accuracy.md), used without --engine."""
    from streamdet.manifest import MANIFEST_NAME
    from streamdet.pretrained import default_cm_dir

    directory = default_cm_dir()
    if not (directory / MANIFEST_NAME).is_file():
        raise ConfigError(f"no engine given and the shipped CM is missing ({directory}); {pull_hint}")
    logging.getLogger(__name__).info("no --engine given: scoring with the shipped CM %s", directory)
    return str(directory)


def _on_gpu(device: str) -> bool:
    import torch

    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def default_max_batch(device: str) -> int:
    """2 windows per batch on CPU (larger Mel-LCNN batches cost more per window there), 32 on GPU."""
    return 32 if _on_gpu(device) else 2


def default_lanes(device: str) -> int:
    """On CPU one scoring lane per core. On GPU two: one lane's batch measures its speech (the VAD
    runs on the CPU) while the other's is on the GPU, as the speech and the model of one batch
    overlapped before lanes existed."""
    cores = max(1, os.cpu_count() or 1)
    return min(2, cores) if _on_gpu(device) else cores


def resolve_scoring(scoring: ScoringSettings) -> ScoringSettings:
    """``scoring`` with what was left to serve filled in per device (``max_batch``, ``lanes``,
    ``workers``, ``threads``, ``batches_in_flight``): the one place serve, the demo and the bench's
    model-only reference take them from."""
    max_batch = scoring.max_batch or default_max_batch(scoring.device)
    lanes = scoring.lanes or default_lanes(scoring.device)
    workers = scoring.workers or 1
    threads = scoring.threads
    if not threads and not _on_gpu(scoring.device):  # the cores shared out: no thread waits for a core
        threads = max(1, (os.cpu_count() or 1) // (lanes * workers))
    return scoring.model_copy(update={"max_batch": max_batch, "lanes": lanes, "workers": workers, "threads": threads,
                                      "batches_in_flight": scoring.batches_in_flight or lanes + 1})


async def _serve(settings, scorer) -> Service:
    from streamdet.service.server import Service

    service = Service(settings, scorer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.run(stop)
    return service
