"""Model-only throughput: a scorer's windows/s per backend, thread count and batch size.

No service, no I/O: ``score_batch`` on random windows, timed. Each configuration gets one warm-up
call (oneDNN and ONNX Runtime build their kernels for a new shape on the first call), then up to
``repeats`` timed calls (at least two, fewer once ``budget_s`` is spent); the reported rate is the
median over the timed calls of batch size / seconds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamdet.audio import WINDOW_SAMPLES
from streamdet.bench.stats import median, time_calls
from streamdet.cm import Countermeasure, load_cm
from streamdet.errors import ConfigError
from streamdet.scoring.base import Scorer

BACKENDS = ("torch", "onnxruntime")
DEFAULT_TORCH_THREADS = torch.get_num_threads()
"""torch's own choice for this machine, read before any benchmark changes it."""

ONNX_HINT = (
    "the onnxruntime backend runs an exported engine: `offline export CM_DIR --format onnx --out DIR`, "
    "then pass --engine DIR (benchmarks/model_backends.py does both for random CMs)"
)


@dataclass
class Candidate:
    """One way of scoring to time: a label, its backend, and how to get the scorer for a thread count
    (None = the backend's default) and a number of workers (torch only)."""

    label: str
    backend: str
    open: Callable[[int | None, int], Scorer]
    info: dict[str, Any] = field(default_factory=dict)


def _torch_candidate(label: str, load: Callable[[], Countermeasure], max_batch: int, channels_last: bool | None,
                     info: dict[str, Any], cuda_graphs: bool = False, trace: bool | None = None) -> Candidate:
    """The CM is loaded once; each (threads, workers) gets a light ``TorchScorer`` around it."""
    from streamdet.scoring.torch_scorer import TorchScorer

    holder: list[Countermeasure] = []

    def open_with(threads: int | None, workers: int) -> Scorer:
        if not holder:
            holder.append(load())
        threads = threads or max(1, DEFAULT_TORCH_THREADS // workers)
        return TorchScorer.from_cm(holder[0], max_batch, threads=threads, workers=workers,
                                   channels_last=channels_last, cuda_graphs=cuda_graphs, trace=trace)

    return Candidate(label + _trace_suffix(trace), "torch", open_with,
                     {**info, "channels_last": channels_last, "cuda_graphs": cuda_graphs, "trace": trace})


def _onnx_candidate(path: Path, device: str, max_batch: int) -> Candidate:
    """ONNX Runtime fixes its thread pool per session: one session per thread count."""
    from streamdet.scoring.onnx_scorer import OnnxScorer

    def open_with(threads: int | None, workers: int) -> Scorer:
        return OnnxScorer(path, device=device, max_batch=max_batch, threads=threads)

    return Candidate("onnxruntime", "onnxruntime", open_with, {"engine": str(path)})


def layouts_for(choice: str) -> list[bool | None]:
    """channels_last settings to time for torch: auto (the scorer's default), on, off or both."""
    return {"auto": [None], "on": [True], "off": [False], "both": [True, False]}[choice]


def _layout_label(channels_last: bool | None) -> str:
    return {None: "torch", True: "torch-channels-last", False: "torch-nchw"}[channels_last]


def trace_setting(choice: str) -> bool | None:
    """``--trace``: auto (None, the scorer's default: traced on CPU where the architecture allows), on, off."""
    return {"auto": None, "on": True, "off": False}[choice]


def _trace_suffix(trace: bool | None) -> str:
    return {None: "", True: " traced", False: " eager"}[trace]


def arch_candidates(architecture: str, backends: Sequence[str], max_batch: int, w2v2_source: str | None = None,
                    layout: str = "auto", seed: int = 0, device: str = "cpu",
                    cuda_graphs: bool = False, trace: bool | None = None) -> list[Candidate]:
    """Torch scorers for a random-weight CM of ``architecture`` (W2V2: XLS-R 300M shape, five layers)."""
    from streamdet.bench.models import random_countermeasure
    from streamdet.scoring.torch_scorer import resolve_device

    if "onnxruntime" in backends:
        raise ConfigError(f"--arch measures the torch backend only; {ONNX_HINT}")
    cm = random_countermeasure(architecture, seed=seed, w2v2_source=w2v2_source).to(resolve_device(device))
    info = {"architecture": architecture, "weights": "random", "w2v2_source": w2v2_source or "random XLS-R 300M shape"}
    candidates = []
    for index, channels_last in enumerate(layouts_for(layout)):
        own = cm if index == 0 else copy.deepcopy(cm)  # the channels-last conversion is in place
        candidates.append(_torch_candidate(_layout_label(channels_last), lambda own=own: own, max_batch,
                                           channels_last, info, cuda_graphs, trace))
    return candidates


def engine_candidates(engine: str | Path, backends: Sequence[str], max_batch: int, device: str = "cpu",
                      w2v2_source: str | None = None, layout: str = "auto",
                      cuda_graphs: bool = False, trace: bool | None = None) -> list[Candidate]:
    """Scorers for an engine path: a CM directory (torch) or an ONNX engine (ONNX Runtime)."""
    from streamdet.scoring import open_scorer
    from streamdet.scoring.onnx_scorer import OnnxScorer
    from streamdet.scoring.torch_scorer import TorchScorer, resolve_device

    probe = open_scorer(engine, device=device, w2v2_source=w2v2_source, max_batch=max_batch)
    if isinstance(probe, OnnxScorer):
        probe.close()
        if "onnxruntime" not in backends:
            raise ConfigError(f"{engine} is an ONNX engine; add onnxruntime to --backend")
        return [_onnx_candidate(probe.path, device, max_batch)]
    if isinstance(probe, TorchScorer):
        if "torch" not in backends:
            raise ConfigError(f"{engine} is a CM directory (torch backend); {ONNX_HINT}")
        info = {"engine": str(engine), "architecture": probe.contract.architecture}
        candidates = []
        for index, channels_last in enumerate(layouts_for(layout)):
            load = (lambda: probe.cm) if index == 0 else (
                lambda: load_cm(engine, w2v2_source=w2v2_source, device=resolve_device(device)))
            candidates.append(_torch_candidate(_layout_label(channels_last), load, max_batch, channels_last, info,
                                               cuda_graphs, trace))
        return candidates
    label = type(probe).__name__
    return [Candidate(label, label, lambda threads, workers: probe, {"engine": str(engine)})]


def measure(scorer: Scorer, windows: np.ndarray, repeats: int, budget_s: float | None,
            lanes: int = 1) -> dict[str, Any]:
    """Warm up once on ``windows``, then time ``score_batch`` on them; median windows/s. With
    ``lanes`` > 1 each timed call is a round of that many threads scoring ``windows`` at once (as
    the service's scoring lanes do), and a round scores ``lanes`` times the windows."""
    scorer.score_batch(windows)
    if lanes == 1:
        times = time_calls(lambda: scorer.score_batch(windows), repeats, budget_s)
    else:
        with ThreadPoolExecutor(lanes) as pool:
            def round_of_lanes() -> None:
                for future in [pool.submit(scorer.score_batch, windows) for _ in range(lanes)]:
                    future.result()

            round_of_lanes()  # every lane's thread warm too
            times = time_calls(round_of_lanes, repeats, budget_s)
    rates = [lanes * len(windows) / t for t in times]
    return {
        "windows_per_s": round(median(rates), 3),
        "seconds_per_batch": round(median(times), 5),
        "repeats": len(times),
        "times_s": [round(t, 5) for t in times],
    }


def synthetic_windows(count: int, seed: int = 0) -> np.ndarray:
    """Speech-level noise windows; the cost of scoring does not depend on their content."""
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((count, WINDOW_SAMPLES))).astype(np.float32)


def run_model_only(candidates: Sequence[Candidate], batch_sizes: Sequence[int], threads: Sequence[int | None],
                   repeats: int = 5, budget_s: float | None = 60.0, workers: Sequence[int] = (1,),
                   say: Callable[[str], None] = print, lanes: int = 1) -> dict[str, Any]:
    """Time every candidate at every thread count, worker count (torch) and batch size, with
    ``lanes`` threads scoring batches at once (``measure``)."""
    pool = synthetic_windows(max(batch_sizes))
    rows: list[dict[str, Any]] = []
    for candidate in candidates:
        for worker_count in (workers if candidate.backend == "torch" else (1,)):
            for thread_count in threads:
                scorer = candidate.open(thread_count, worker_count)
                used = getattr(scorer, "threads", thread_count)
                label = (candidate.label + (f" x{worker_count} workers" if worker_count > 1 else "")
                         + (f" x{lanes} lanes" if lanes > 1 else ""))
                for batch in batch_sizes:
                    row = {"label": label, "backend": candidate.backend, "threads": used, "workers": worker_count,
                           "lanes": lanes, "batch_size": batch,
                           **measure(scorer, pool[:batch], repeats, budget_s, lanes)}
                    rows.append(row)
                    say(f"{label:<32} threads {str(used or 'default'):>7}  batch {batch:>4}: "
                        f"{row['windows_per_s']:>9.2f} windows/s")
                if candidate.backend in BACKENDS:
                    scorer.close()
    best = max(rows, key=lambda r: r["windows_per_s"]) if rows else None
    return {"candidates": [{"label": c.label, "backend": c.backend, **c.info} for c in candidates],
            "rows": rows, "best": best}
