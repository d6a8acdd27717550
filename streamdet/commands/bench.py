"""``streamdet bench``: model-only throughput, the comparison with the authors' scoring, service load.

    streamdet bench --model-only --arch mel_lcnn --batch-sizes 1,2,4,8 --threads 1,2
    streamdet bench --model-only --engine engines/cm --engine engines/cm-onnx --backend torch,onnxruntime
    streamdet bench --compare-reference --arch w2v2_aasist
    streamdet bench --streams 16 --duration 60          # the shipped CM, as `streamdet serve` scores
    streamdet bench --streams 10 --whip-streams 10 --duration 60   # 10 WebRTC (WHIP, Opus) publishers
    streamdet bench --engine engines/codec_mellcnn --sweep --duration 60 --out bench/sweep.json

Every mode prints a table and writes JSON (``--out``); the service modes also write a PNG plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamdet import architectures


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="measure scorers and the streaming service",
        description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md for the measured numbers.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--model-only", action="store_true", help="time scorers without the service")
    mode.add_argument("--compare-reference", action="store_true",
                      help="the authors' scoring loop against streamdet's scorer, same weights")
    p.add_argument("--engine", action="append", default=[], metavar="PATH",
                   help="CM directory or engine (repeatable with --model-only)")
    p.add_argument("--arch", choices=architectures.names(),
                   help="random weights of this architecture (W2V2: XLS-R 300M shape)")
    p.add_argument("--w2v2-source", help="XLS-R hub id or directory (default: random XLS-R 300M-shaped weights)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--out", type=Path, help="JSON report (the service modes put the plot beside it)")
    p.add_argument("--wait-load", type=float, metavar="LOAD",
                   help="first wait until the 1-min load average is at most LOAD (others share the machine)")
    p.add_argument("--wait-timeout", type=float, default=900.0, help="longest wait for --wait-load, seconds")

    m = p.add_argument_group("model-only")
    m.add_argument("--backend", type=_names, default=None, help="torch,onnxruntime (default: what --engine is)")
    m.add_argument("--batch-sizes", type=_ints, default=[1, 2, 4, 8, 16, 32], help="default 1,2,4,8,16,32")
    m.add_argument("--threads", type=_ints, help="thread counts to time (model-only: a list; default torch's)")
    m.add_argument("--workers", type=_ints, default=[1],
                   help="torch: threads scoring parts of a batch concurrently (model-only: a list; default 1)")
    m.add_argument("--channels-last", choices=("auto", "on", "off", "both"), default="auto",
                   help="torch LCNN layout on CPU (auto: channels-last)")
    m.add_argument("--trace", choices=("auto", "on", "off"), default="auto",
                   help="torch on CPU: the CM traced per batch size (auto: on where it traces exactly)")
    m.add_argument("--cuda-graphs", action="store_true",
                   help="torch on CUDA: replay one CUDA graph per batch size (fp16 autocast is on by default)")
    m.add_argument("--repeats", type=int, help="timed calls per configuration (model-only 5, compare 3; median)")
    m.add_argument("--budget-s", type=float, default=60.0, help="stop repeating a configuration after this")

    c = p.add_argument_group("compare-reference")
    c.add_argument("--windows", type=int, help="windows scored per round (default 8 for W2V2, 64 for mel)")
    c.add_argument("--batch", type=int, help="streamdet's batch size (default: --windows)")
    c.add_argument("--onnx", type=Path, help="also time this ONNX engine, exported from the same weights")

    s = p.add_argument_group("service load", "without --engine or --connect: a server with the shipped CM, "
                             "as `streamdet serve` starts without --engine")
    s.add_argument("--streams", default=None, help="N, or a comma list of N for --sweep")
    s.add_argument("--sweep", action="store_true", help="grow N until the SLO fails (default 4,8,16,24,...)")
    s.add_argument("--keep-going", action="store_true", help="with --sweep: run every N even after a failure")
    s.add_argument("--duration", type=float, default=30.0, help="seconds of audio per stream (default 30)")
    s.add_argument("--hop", type=float, default=1.0, help="seconds between window starts (default 1.0)")
    s.add_argument("--chunk-ms", type=float, default=20.0, help="audio per frame, ms (default 20)")
    s.add_argument("--audio", type=Path, nargs="+", default=[], help="audio files to loop (default synthetic)")
    s.add_argument("--connect", metavar="HOST", help="load a running service on HOST (default ports)")
    s.add_argument("--ingest", help="ingest endpoint of a running service (overrides --connect's)")
    s.add_argument("--events", help="event endpoint of a running service")
    s.add_argument("--http", help="HTTP base URL of a running service, for /metrics ('' for none)")
    s.add_argument("--server-pid", type=int, help="pid of the running service, for its CPU and memory")
    s.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the started `streamdet serve` (repeatable, e.g. --serve-arg=--max-batch=4)")
    s.add_argument("--settle-s", type=float, default=30.0, help="wait for late scores after the last frame")
    s.add_argument("--slo-p99-ms", type=float, default=500.0, help="SLO: p99 end-to-end latency (default 500)")
    s.add_argument("--slo-max-drops", type=int, default=0, help="SLO: most windows dropped (default 0)")
    s.add_argument("--plot", type=Path, help="PNG plot path (default: --out with .png)")
    s.add_argument("--whip-streams", type=int, default=0,
                   help="send this many of each step's streams over WebRTC (WHIP, Opus) instead of ZeroMQ")
    s.add_argument("--whip-codec", default="opus", help="what the WHIP publishers send: opus (default), PCMU, PCMA")
    s.add_argument("--seed", type=int, default=0, help="seed of the streams' start offsets (default 0)")
    s.add_argument("--ws-streams", type=int, default=0,
                   help="send this many of each step's streams as media-stream WebSocket calls (Twilio dialect, "
                        "μ-law 8 kHz) instead of ZeroMQ")
    s.add_argument("--transport", choices=("zmq", "rtp"), default="zmq",
                   help="rtp: every stream a call sending G.711 u-law RTP to a port opened with POST /rtp "
                        "(the RTP ingest must be enabled; a server the bench starts gets it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamdet.bench import runs

    if args.model_only:
        return runs.model_only(args)
    if args.compare_reference:
        return runs.compare_reference(args)
    return runs.service(args)
