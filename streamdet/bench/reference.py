"""The authors' way of scoring, against streamdet's scorer: same weights, same windows, same process.

The authors' style (their released evaluation code, paper recipe §2-§3):

- W2V2 CMs: one window at a time, ``Wav2Vec2FeatureExtractor(do_normalize=True)``, the whole
  24-layer XLS-R called with ``output_hidden_states=True``, ``hidden_states[5]`` to the backend;
- Mel-LCNN: one clip at a time, mel spectrogram then backend, no batching;
- torch's default settings (thread count, NCHW layout) under ``torch.no_grad()``.

streamdet's way is ``TorchScorer`` (five XLS-R layers, windows batched, ``inference_mode``, the
thread count chosen, channels-last LCNN on CPU), optionally also ONNX Runtime on an engine exported
from the same weights. Timed repeats alternate reference / streamdet, so both see the same machine
load; the report gives the median windows/s of each, their ratio, and the largest difference
between their bona fide probabilities (which must stay within 1e-4).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from streamdet import architectures
from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES, load_window
from streamdet.bench.models import (
    XLSR_LAYERS,
    five_layer_copy,
    load_xlsr,
    manifest_for,
    random_backend,
    random_xlsr,
)
from streamdet.bench.stats import median
from streamdet.cm import Countermeasure, build_backend, read_cm_manifest, state_dict_sha256
from streamdet.errors import ConfigError, ManifestError
from streamdet.manifest import WEIGHTS_NAME, CMManifest
from streamdet.models.mel import MelFrontend
from streamdet.models.w2v2 import HIDDEN_LAYER, W2V2Frontend
from streamdet.scoring.base import Scorer

TOLERANCE = 1e-4
"""Largest allowed difference between the two ways' bona fide probabilities (the released CMs' test vectors match to this, paper recipe §4)."""


class ReferenceScorer:
    """Scores one window per call, as the authors' evaluation loop did."""

    def __init__(self, backend: nn.Module, xlsr: nn.Module | None = None, layer: int = HIDDEN_LAYER,
                 frontend: nn.Module | None = None) -> None:
        """``xlsr``: the whole XLS-R of a W2V2 CM; else ``frontend`` (default: mel) computes the features."""
        self.backend = backend.eval()
        self.xlsr = xlsr.eval() if xlsr is not None else None
        self.layer = layer
        self.frontend = (frontend or MelFrontend()) if xlsr is None else None
        self.extractor = None
        if xlsr is not None:
            from transformers import Wav2Vec2FeatureExtractor

            self.extractor = Wav2Vec2FeatureExtractor(
                feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
                return_attention_mask=False)

    def features(self, window: np.ndarray) -> torch.Tensor:
        """One window → the backend's input (1, 1, H, W)."""
        if self.xlsr is None:
            assert self.frontend is not None
            return self.frontend(torch.from_numpy(window)[None])
        assert self.extractor is not None
        inputs = self.extractor(window, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
        hidden = self.xlsr(inputs, output_hidden_states=True).hidden_states[self.layer]  # (1, frames, 1024)
        return hidden.transpose(1, 2).unsqueeze(1)

    def score_one(self, window: np.ndarray) -> float:
        with torch.no_grad():
            logits, _hidden = self.backend(self.features(window))
            return float(torch.softmax(logits, dim=-1)[0, 0])

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        return np.array([self.score_one(w) for w in windows], dtype=np.float32)


@dataclass
class Pair:
    """The same weights in both forms: the reference scorer and streamdet's CM (five layers)."""

    reference: ReferenceScorer
    cm: Countermeasure
    description: dict[str, Any]


def build_pair(architecture: str, cm_dir: str | Path | None = None, w2v2_source: str | None = None,
               seed: int = 0) -> Pair:
    """Reference and streamdet forms of one CM: ``cm_dir``'s backend weights, else random ones;
    XLS-R from ``w2v2_source`` (all 24 layers for the reference), else random XLS-R 300M-shaped."""
    if cm_dir is not None:
        manifest = read_cm_manifest(cm_dir)
        if manifest.architecture != architecture:
            raise ConfigError(f"{cm_dir} holds a {manifest.architecture} CM, not {architecture}")
        backend = load_backend(cm_dir, manifest)
        weights = f"{cm_dir} ({manifest.model_id})"
    else:
        backend = random_backend(architecture, seed)
        manifest = manifest_for(architecture)
        weights = f"random (seed {seed})"
    reference_backend = copy.deepcopy(backend)  # the scorer may change its backend's layout in place
    spec = architectures.get(architecture)
    if not spec.frontend.needs_xlsr:
        frontend: nn.Module = spec.frontend.build()
        xlsr = None
        xlsr_text = None
    else:
        xlsr = load_xlsr(w2v2_source) if w2v2_source else random_xlsr(XLSR_LAYERS, seed)
        layers = len(xlsr.encoder.layers)
        if layers <= HIDDEN_LAYER:
            raise ConfigError(f"{w2v2_source}: the reference needs the whole XLS-R, this one has {layers} layers")
        frontend = W2V2Frontend.from_model(five_layer_copy(xlsr), HIDDEN_LAYER)
        xlsr_text = w2v2_source or f"random XLS-R 300M shape, {layers} layers (seed {seed})"
    cm = Countermeasure(frontend, backend, manifest).eval()
    description = {"architecture": architecture, "backend_weights": weights, "xlsr": xlsr_text,
                   "weights_sha256": state_dict_sha256(backend.state_dict())}
    reference_frontend = None if xlsr is not None else spec.frontend.build()
    return Pair(ReferenceScorer(reference_backend, xlsr, frontend=reference_frontend), cm, description)


def load_backend(cm_dir: str | Path, manifest: CMManifest) -> nn.Module:
    """A CM directory's backend alone, hash checked (a W2V2 front-end is built from the XLS-R given
    separately, whole for the reference and cut to five layers for streamdet)."""
    from safetensors.torch import load_file

    state = load_file(str(Path(cm_dir) / WEIGHTS_NAME))
    if manifest.weights_sha256 and state_dict_sha256(state) != manifest.weights_sha256:
        raise ManifestError(f"{cm_dir}: weights do not match the manifest's hash")
    backend = build_backend(manifest.architecture)
    backend.load_state_dict(state, strict=True)
    return backend.eval()


def check_engine_matches(engine_manifest, pair: Pair) -> None:
    """Refuse an ONNX engine exported from other weights than the pair's (the comparison would be void)."""
    if engine_manifest.source_cm_sha256 and engine_manifest.source_cm_sha256 != pair.description["weights_sha256"]:
        raise ManifestError("the ONNX engine was exported from other backend weights than the CM compared")
    if engine_manifest.frontend_sha256:
        frontend = state_dict_sha256(dict(pair.cm.frontend.state_dict()))
        if frontend != engine_manifest.frontend_sha256:
            raise ManifestError("the ONNX engine holds other XLS-R weights than the reference (pass the "
                                "--w2v2-source it was exported from)")


def comparison_windows(count: int, audio: Sequence[str | Path] = (), seed: int = 0) -> np.ndarray:
    """``count`` windows: the first 4 s of each ``audio`` file (cycled), else speech-level synthetic signals."""
    if audio:
        clips = [load_window(path) for path in audio]
        return np.stack([clips[i % len(clips)] for i in range(count)]).astype(np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    windows = []
    for i in range(count):
        tones = sum(0.05 * np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 4000, size=3))
        windows.append(tones + rng.normal(0.0, 0.02 * (1 + i % 4), WINDOW_SAMPLES))
    return np.stack(windows).astype(np.float32)


@dataclass
class Way:
    """One way of scoring to time: a label, a function (windows → probabilities), its thread count."""

    label: str
    score: Callable[[np.ndarray], np.ndarray]
    threads: int | None
    info: dict[str, Any]


def compare(reference: Way, candidates: Sequence[Way], windows: np.ndarray, repeats: int,
            say: Callable[[str], None] = print) -> dict[str, Any]:
    """Probability agreement, then ``repeats`` rounds of (reference, each candidate) timings."""
    import time

    def run(way: Way) -> tuple[float, np.ndarray]:
        if way.threads:
            torch.set_num_threads(way.threads)
        started = time.perf_counter()
        probs = way.score(windows)
        return time.perf_counter() - started, probs

    ways = [reference, *candidates]
    seconds: dict[str, list[float]] = {w.label: [] for w in ways}
    probabilities: dict[str, np.ndarray] = {}
    say(f"warm-up and agreement on {len(windows)} windows")
    for way in ways:
        _elapsed, probabilities[way.label] = run(way)
    for round_index in range(repeats):
        for way in ways:
            elapsed, _probs = run(way)
            seconds[way.label].append(elapsed)
            say(f"round {round_index + 1}/{repeats} {way.label:<24} {len(windows) / elapsed:9.3f} windows/s")
    ref_rate = len(windows) / median(seconds[reference.label])
    rows = []
    for way in ways:
        rate = len(windows) / median(seconds[way.label])
        paired = [r / s for r, s in zip(seconds[reference.label], seconds[way.label], strict=True)]
        diff = float(np.max(np.abs(probabilities[way.label] - probabilities[reference.label])))
        rows.append({
            "label": way.label, "threads": way.threads, **way.info,
            "windows_per_s": round(rate, 4), "seconds_per_window": round(1.0 / rate, 5),
            "times_s": [round(s, 4) for s in seconds[way.label]],
            "speedup_vs_reference": round(rate / ref_rate, 3),
            "speedup_median_of_rounds": round(median(paired), 3),
            "max_abs_prob_diff": diff, "agrees": diff <= TOLERANCE,
        })
    fastest = max(rows[1:], key=lambda r: r["windows_per_s"]) if len(rows) > 1 else None
    return {"windows": len(windows), "repeats": repeats, "tolerance": TOLERANCE, "rows": rows,
            "reference": rows[0], "streamdet": fastest,
            "probabilities_reference": [round(float(p), 6) for p in probabilities[reference.label]]}


def torch_way(cm: Countermeasure, batch: int, threads: int | None, workers: int = 1,
              label: str = "streamdet-torch") -> Way:
    """streamdet's torch scorer on ``cm`` (five layers, batched, inference_mode, threads, layout, workers,
    trace)."""
    from streamdet.scoring.torch_scorer import TorchScorer

    scorer = TorchScorer.from_cm(cm, max_batch=batch, threads=threads, workers=workers)
    info = {"batch": batch, "channels_last": scorer.channels_last, "trace": scorer.trace, "workers": workers,
            "backend": "torch"}
    return Way(label, scorer.score_batch, scorer.threads, info)


def scorer_way(scorer: Scorer, label: str, batch: int, backend: str) -> Way:
    """Any other scorer (ONNX Runtime); its threads are its own business."""
    scorer.max_batch = batch
    return Way(label, scorer.score_batch, None, {"batch": batch, "backend": backend})


def reference_way(reference: ReferenceScorer, threads: int) -> Way:
    return Way("reference", reference.score_windows, threads,
               {"batch": 1, "backend": "torch (authors' style)", "grad_mode": "no_grad"})
