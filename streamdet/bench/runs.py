"""The three ``streamdet bench`` modes, from parsed arguments to printed tables and written reports.

Reports go to ``--out`` or, by default, ``runs/bench/<mode>-<UTC time>.json`` (``runs/`` is
git-ignored); the service modes write their plot beside the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamdet.bench.machine import load_average, machine_info, wait_for_quiet
from streamdet.bench.report import comparison_table, model_only_table, plot_sweep, write_json
from streamdet.errors import BenchError, ConfigError

WHIP_MODULES = ("streamdet.service.ingest.whip", "streamdet.client.whip_sender")


def _out_path(args: argparse.Namespace, mode: str) -> Path:
    if args.out is not None:
        return args.out
    return Path("runs") / "bench" / f"{mode}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"


def _wait(args: argparse.Namespace) -> list[float]:
    if args.wait_load is None:
        return load_average()
    return wait_for_quiet(args.wait_load, args.wait_timeout)


def _finish(args: argparse.Namespace, mode: str, report: dict[str, Any]) -> Path:
    path = write_json(_out_path(args, mode), report)
    print(f"report: {path}")
    return path


# --- model-only -------------------------------------------------------------------------------------


def model_only(args: argparse.Namespace) -> int:
    from streamdet.bench.model_only import (
        BACKENDS,
        arch_candidates,
        engine_candidates,
        run_model_only,
        trace_setting,
    )

    if bool(args.engine) == bool(args.arch):
        raise ConfigError("--model-only needs --engine PATH (repeatable) or --arch NAME")
    backends = args.backend or (["torch"] if args.arch else list(BACKENDS))
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ConfigError(f"unknown backend(s) {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    max_batch = max(args.batch_sizes)
    trace = trace_setting(args.trace)
    if args.arch:
        candidates = arch_candidates(args.arch, backends, max_batch, args.w2v2_source, args.channels_last,
                                     device=args.device, cuda_graphs=args.cuda_graphs, trace=trace)
    else:
        candidates = []
        for engine in args.engine:
            candidates += engine_candidates(engine, backends, max_batch, args.device, args.w2v2_source,
                                            args.channels_last, args.cuda_graphs, trace)
    load = _wait(args)
    results = run_model_only(candidates, args.batch_sizes, args.threads or [None], args.repeats or 5,
                             args.budget_s, workers=args.workers)
    print(model_only_table(results["rows"]))
    best = results["best"]
    print(f"best: {best['label']} threads {best['threads']} batch {best['batch_size']}: "
          f"{best['windows_per_s']:.2f} windows/s")
    _finish(args, "model_only", {
        "kind": "model_only", "machine": machine_info(), "loadavg_before": load, "loadavg_after": load_average(),
        "config": {"arch": args.arch, "engines": args.engine, "backends": backends, "device": args.device,
                   "batch_sizes": args.batch_sizes, "threads": args.threads, "workers": args.workers, "repeats": args.repeats or 5,
                   "budget_s": args.budget_s, "channels_last": args.channels_last,
                   "cuda_graphs": args.cuda_graphs, "trace": args.trace},
        **results,
    })
    return 0


# --- compare-reference ------------------------------------------------------------------------------


def compare_reference(args: argparse.Namespace) -> int:
    import torch

    from streamdet import architectures
    from streamdet.bench import reference as ref
    from streamdet.bench.model_only import DEFAULT_TORCH_THREADS

    if not args.arch:
        raise ConfigError(f"--compare-reference needs --arch ({', '.join(architectures.names())})")
    if len(args.engine) > 1:
        raise ConfigError("--compare-reference takes one --engine (a CM directory)")
    if args.device != "cpu":
        raise ConfigError("--compare-reference measures the CPU path (the authors' loop ran on CPU)")
    cm_dir = args.engine[0] if args.engine else None
    windows_count = args.windows or architectures.get(args.arch).frontend.bench_windows
    batch = args.batch or windows_count
    workers = args.workers[0]
    threads = (args.threads or [max(1, DEFAULT_TORCH_THREADS // workers)])[0]
    pair = ref.build_pair(args.arch, cm_dir, args.w2v2_source)
    windows = ref.comparison_windows(windows_count, args.audio)
    ways = [ref.torch_way(pair.cm, batch, threads, workers)]
    if args.onnx is not None:
        from streamdet.manifest import EngineManifest
        from streamdet.scoring import open_scorer

        scorer = open_scorer(args.onnx, device="cpu", max_batch=batch)
        ref.check_engine_matches(getattr(scorer, "manifest", None) or EngineManifest.beside(args.onnx), pair)
        ways.append(ref.scorer_way(scorer, "streamdet-onnxruntime", batch, "onnxruntime"))
    reference = ref.reference_way(pair.reference, DEFAULT_TORCH_THREADS)
    load = _wait(args)
    result = ref.compare(reference, ways, windows, args.repeats or 3)
    torch.set_num_threads(DEFAULT_TORCH_THREADS)
    print(comparison_table(result))
    fast = result["streamdet"]
    agree = all(r["agrees"] for r in result["rows"])
    print(f"streamdet ({fast['label']}) is {fast['speedup_vs_reference']:.2f}x the reference's windows/s "
          f"({fast['windows_per_s']:.3f} vs {result['reference']['windows_per_s']:.3f}); probabilities "
          f"{'agree' if agree else 'DISAGREE'} within {ref.TOLERANCE:g} "
          f"(max {max(r['max_abs_prob_diff'] for r in result['rows']):.1e})")
    _finish(args, "compare_reference", {
        "kind": "compare_reference", "machine": machine_info(), "loadavg_before": load,
        "loadavg_after": load_average(), "pair": pair.description,
        "config": {"arch": args.arch, "windows": windows_count, "batch": batch, "threads": threads,
                   "workers": workers,
                   "reference_threads": DEFAULT_TORCH_THREADS, "audio": [str(a) for a in args.audio] or "synthetic"},
        "agree": agree, **result,
    })
    return 0 if agree else 1


# --- service load -----------------------------------------------------------------------------------


def check_whip(count: int, streams: int, codec: str = "opus") -> None:
    """``--whip-streams``: needs this streamdet's WHIP ingest and sender (and aiortc), and a codec they send."""
    from streamdet.bench.load import WHIP_CODECS

    if count <= 0:
        return
    if codec not in WHIP_CODECS:
        raise ConfigError(f"--whip-codec {codec!r}: choose from {', '.join(WHIP_CODECS)}")
    if count > streams:
        raise ConfigError(f"--whip-streams {count} is more than the {streams} streams of a step")
    try:
        missing = [name for name in WHIP_MODULES if importlib.util.find_spec(name) is None]
        import aiortc  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--whip-streams: WHIP needs aiortc ({exc})") from exc
    if missing:
        raise ConfigError(f"--whip-streams: this streamdet has no WHIP ingest ({', '.join(missing)} missing); "
                          "send every stream over ZeroMQ (leave --whip-streams out)")


def shipped_cm() -> Path:
    """The CM ``streamdet serve`` scores with when no ``--engine`` is given (and so does the load test)."""
    from streamdet.pretrained import default_cm_dir

    directory = default_cm_dir()
    if not (directory / "manifest.json").is_file():
        raise ConfigError(f"no --engine given and the shipped CM is missing ({directory}); pass --engine CM_DIR")
    return directory


@contextlib.contextmanager
def _rtp_ingest_enabled(enabled: bool) -> Iterator[None]:
    """The server the bench starts inherits the environment: for its start, the RTP ingest is on."""
    key = "STREAMDET_INGESTS__RTP__ENABLED"
    old = os.environ.get(key)
    if enabled:
        os.environ[key] = "true"
    try:
        yield
    finally:
        if enabled and old is None:
            del os.environ[key]
        elif enabled:
            os.environ[key] = old


def service(args: argparse.Namespace) -> int:
    from streamdet.bench.load import StepConfig, load_clips, run_step
    from streamdet.bench.server import Endpoints, ProcessStats, ServerProcess
    from streamdet.bench.sweep import DEFAULT_SWEEP, SLO, parse_counts, sweep

    connect = args.connect or args.ingest or args.events
    if connect and args.engine:
        raise ConfigError("give --engine CM_DIR (a server is started) or --connect HOST / --ingest and --events")
    if len(args.engine) > 1:
        raise ConfigError("the service benchmark takes one --engine")
    engine: str | None = None  # a running service: nothing to start
    if args.engine:
        engine = args.engine[0]
    elif not connect:
        engine = str(shipped_cm())
    try:
        counts = parse_counts(args.streams) if args.streams else (list(DEFAULT_SWEEP) if args.sweep else [16])
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if not args.sweep and len(counts) > 1:
        raise ConfigError("several stream counts need --sweep")
    check_whip(args.whip_streams, min(counts), args.whip_codec)
    if args.transport == "rtp" and (args.whip_streams or args.ws_streams):
        raise ConfigError("--transport rtp sends every stream over RTP: leave --whip-streams and --ws-streams out")
    clips = load_clips(args.audio) if args.audio else []
    slo = SLO(p99_ms=args.slo_p99_ms, max_drops=args.slo_max_drops)
    serve_args = list(args.serve_arg) + [f"--hop-samples={round(args.hop * 16000)}"]
    if args.whip_streams and not any(a.startswith("--whip-ice-addresses") for a in serve_args):
        serve_args.append("--whip-ice-addresses=127.0.0.1")  # loopback: aioice leaves it out by default
    if args.ws_streams:
        if args.whip_streams + args.ws_streams > min(counts):
            raise ConfigError(f"--whip-streams + --ws-streams is more than the {min(counts)} streams of a step")
        if "--media-ws" not in serve_args:
            serve_args.append("--media-ws")
    if args.threads:
        serve_args.append(f"--threads={args.threads[0]}")
    load = _wait(args)
    out = args.out = _out_path(args, "sweep" if args.sweep else "service")
    reference = None  # the scorer alone, same settings as the service: before it starts, not beside it
    if args.sweep and engine is not None:
        from streamdet.bench.efficiency import measure_service_scorer
        from streamdet.bench.server import ServerProcess

        command = ServerProcess(engine, serve_args, device=args.device).command()
        serve_command = command[command.index("serve") + 1:]
        reference = measure_service_scorer(engine, serve_command)

    async def main() -> dict[str, Any]:
        server, idle_rss = None, None
        if engine is not None:
            server = ServerProcess(engine, serve_args, device=args.device)
            with _rtp_ingest_enabled(args.transport == "rtp"):
                endpoints = await server.start()
            pid = server.pid
            idle_rss = ProcessStats(pid).rss_bytes()  # started and warmed up, no stream yet
        else:
            endpoints = Endpoints.for_host(args.connect or "127.0.0.1", args.ingest, args.events, args.http)
            pid = args.server_pid
        print(f"service: ingest {endpoints.ingest}, events {endpoints.events}, http {endpoints.http or '-'}"
              + (f", pid {pid}" if pid else ""))

        async def step(n: int) -> dict[str, Any]:
            config = StepConfig(streams=n, duration_s=args.duration, hop_s=args.hop, chunk_ms=args.chunk_ms,
                                settle_s=args.settle_s, seed=args.seed, id_prefix=f"bench-{int(time.time())}-n{n}",
                                whip_streams=args.whip_streams, whip_codec=args.whip_codec, ws_streams=args.ws_streams)
            if args.transport == "rtp":
                from streamdet.bench.rtp_load import run_rtp_step

                result = await run_rtp_step(endpoints, config, clips, pid)
            else:
                result = await run_step(endpoints, config, clips, pid)
            await asyncio.sleep(1.0)  # let the service finish the last streams' bookkeeping
            return result

        try:
            result = await sweep(counts, step, slo, keep_going=args.keep_going or not args.sweep)
        finally:
            status = await server.stop() if server else None
        result["server"] = {"started": server is not None, "serve_args": serve_args if server else None,
                            "exit_status": status, "log_warnings": server.warnings if server else None,
                            "rss_idle_mb": round(idle_rss / 2**20, 1) if idle_rss else None,
                            "endpoints": endpoints.__dict__}
        return result

    try:
        result = asyncio.run(main())
    except BenchError as exc:
        raise ConfigError(str(exc)) from exc
    if reference is not None:
        from streamdet.bench.efficiency import measure_service_scorer, reference_of

        reference = reference_of(reference, measure_service_scorer(engine, serve_command))
    plot = args.plot or out.with_suffix(".png")
    plot_sweep(result["steps"], plot, slo.p99_ms,
               title=f"streamdet serve, {Path(engine).name if engine else 'remote'}, "
                     f"hop {args.hop:g} s" + (f", {args.whip_streams} per step over WHIP ({args.whip_codec})"
                                         if args.whip_streams else ""))
    best = result["max_streams_meeting_slo"]
    if args.sweep:
        from streamdet.bench.efficiency import efficiency_line, service_efficiency

        print(f"largest stream count meeting the SLO (p99 <= {slo.p99_ms:.0f} ms, drops <= {slo.max_drops}): "
              f"{best if best is not None else 'none'}")
        print(efficiency_line(best, args.hop, reference))
        result["model_only_reference"] = reference
        result["service_efficiency"] = service_efficiency(best, args.hop, reference and reference["windows_per_s"])
    print(f"plot: {plot}")
    _finish(args, "sweep" if args.sweep else "service", {
        "kind": "service_sweep" if args.sweep else "service", "machine": machine_info(),
        "loadavg_before": load, "loadavg_after": load_average(),
        "config": {"engine": engine, "counts": counts,
                   "duration_s": args.duration, "hop_s": args.hop, "chunk_ms": args.chunk_ms,
                   "audio": [str(a) for a in args.audio] or "synthetic", "device": args.device,
                   "whip_streams": args.whip_streams,
                   "whip_codec": args.whip_codec if args.whip_streams else None, "seed": args.seed,
                   "ws_streams": args.ws_streams, "transport": args.transport},
        "plot": str(plot), **result,
    })
    return 0 if (best is not None if args.sweep else result["steps"][0]["slo_met"]) else 1
