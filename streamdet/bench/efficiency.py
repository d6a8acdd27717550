"""How much of the model's capacity the service turns into monitored streams.

A sweep first times the scorer alone with the settings the service it starts will score with (same
engine, device, threads, workers, lanes and batch size, read through ``streamdet serve``'s own flag and
settings handling), then relates the largest stream count that met the SLO to it:

    efficiency = streams held × windows per stream per second (1 / hop) / model-only windows/s

1.0 would mean the service spends nothing but model time; the rest is the host path (frames,
resampling, windowing, batching, events) and the speech gate's VAD. The scorer is timed before the
sweep and again after it, and the faster of the two is the reference: on a shared machine one short
measurement can land in someone else's busy second (two OpenMP threads then slow down several
times), which would flatter the service.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from streamdet.errors import ConfigError

if TYPE_CHECKING:
    from streamdet.service.settings import ScoringSettings

MODEL_ONLY_REPEATS = 100
MODEL_ONLY_BUDGET_S = 5.0
"""Each measurement is short (a batch of two Mel-LCNN windows takes some 20-60 ms on two shared cores)."""


def service_scoring(serve_command: Sequence[str]) -> ScoringSettings:
    """The ``ScoringSettings`` that ``streamdet serve`` with these arguments (after ``serve``) uses,
    its defaults (and environment, config file) included, with ``max_batch`` and ``workers`` resolved as serve does."""
    from streamdet.commands import serve
    from streamdet.service.settings import load_settings

    parser = argparse.ArgumentParser(prog="streamdet", add_help=False)
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", *serve_command])
    return serve.resolve_scoring(load_settings(args.config, serve.overrides_from(args)).scoring)


def measure_service_scorer(engine: str, serve_command: Sequence[str],
                           say: Callable[[str], None] = print) -> dict[str, Any]:
    """Model-only windows/s of ``engine`` at the service's threads, workers, lanes and batch size."""
    from streamdet.bench.model_only import BACKENDS, engine_candidates, run_model_only

    if engine.startswith("triton://"):
        raise ConfigError("the model-only reference needs a local engine, not a Triton server")
    scoring = service_scoring(serve_command)
    candidates = engine_candidates(engine, BACKENDS, scoring.max_batch, scoring.device, scoring.w2v2_source)
    lanes = scoring.lanes or 1
    result = run_model_only(candidates, [scoring.max_batch], [scoring.threads or None], MODEL_ONLY_REPEATS,
                            MODEL_ONLY_BUDGET_S, workers=[scoring.workers or 1], say=say, lanes=lanes)
    best = result["best"]
    return {"windows_per_s": best["windows_per_s"], "label": best["label"], "threads": best["threads"],
            "workers": best["workers"], "lanes": lanes, "batch_size": best["batch_size"],
            "repeats": best["repeats"], "device": scoring.device}


def reference_of(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The faster of the measurements before and after the sweep, both kept."""
    best = max((before, after), key=lambda m: m["windows_per_s"])
    return {**best, "before": before, "after": after}


def service_efficiency(streams: int | None, hop_s: float, model_windows_per_s: float | None) -> float | None:
    """Windows/s the held streams need (``streams / hop_s``) as a fraction of the model-only rate;
    None when no step met the SLO or there is no model-only rate."""
    if hop_s <= 0:
        raise ValueError(f"hop must be positive, got {hop_s}")
    if not streams or not model_windows_per_s:
        return None
    return streams / hop_s / model_windows_per_s


def efficiency_line(streams: int | None, hop_s: float, model: dict[str, Any] | None) -> str:
    """One console line: the arithmetic, then the percentage."""
    if model is None:
        return "service efficiency: n/a (no model-only reference)"
    rate = model["windows_per_s"]
    value = service_efficiency(streams, hop_s, rate)
    timed = (f"; {model['before']['windows_per_s']:.1f} before the sweep, {model['after']['windows_per_s']:.1f} after"
             if "before" in model else "")
    where = (f"model-only {rate:.1f} windows/s ({model['label']}, threads {model['threads'] or 'default'}, "
             f"workers {model['workers']}, lanes {model.get('lanes', 1)}, batch {model['batch_size']}{timed})")
    if value is None:
        return f"service efficiency: n/a (no stream count met the SLO); {where}"
    return (f"service efficiency: {streams} streams x {1 / hop_s:.2f} windows/s = {streams / hop_s:.1f} "
            f"of {where}: {100 * value:.0f} %")
