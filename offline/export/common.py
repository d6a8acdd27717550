"""What every export format shares: errors, output directories, hashes, the reference CM."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from streamdet.cm import Countermeasure, load_cm, state_dict_sha256
from streamdet.errors import ExportError
from streamdet.manifest import MANIFEST_NAME, CMManifest, EngineManifest
from streamdet.models.w2v2 import W2V2Frontend


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_source_cm(cm_dir: str | Path, w2v2_source: str | None = None) -> Countermeasure:
    """Load a CM directory for export (CPU, fp32, eval); the manifest records the W2V2 source used."""
    try:
        cm = load_cm(cm_dir, w2v2_source=w2v2_source, device="cpu")
    except OSError as exc:  # transformers could not find or download the XLS-R weights
        raise ExportError(f"{cm_dir}: cannot load the W2V2 front-end ({exc}); pass --w2v2-source DIR") from exc
    if isinstance(cm.frontend, W2V2Frontend):
        cm.manifest = cm.manifest.model_copy(update={"w2v2_source": cm.frontend.source})
    return cm


def frontend_sha256(cm: Countermeasure) -> str:
    """Hash of the weights the front-end bakes into the engine ('' for the parameter-free mel front-end)."""
    state = {k: v for k, v in cm.frontend.state_dict().items()}
    return state_dict_sha256(state) if state else ""


def prepare_out_dir(out: str | Path) -> Path:
    """Create ``out``; refuse to write an engine over a CM directory (their manifests share a name)."""
    out = Path(out)
    manifest = out / MANIFEST_NAME
    if manifest.is_file():
        try:
            kind = json.loads(manifest.read_text()).get("format")
        except (OSError, json.JSONDecodeError):
            kind = None
        if kind != EngineManifest.model_fields["format"].default:
            raise ExportError(f"{out} already holds {MANIFEST_NAME} of something else (a CM?); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def default_engine_dir(cm_manifest: CMManifest, kind: str, precision: str = "fp32") -> Path:
    """``engines/<cm name>-onnx``, ``engines/<cm name>-tensorrt-fp16``, ..."""
    suffix = kind if kind == "onnx" else f"{kind}-{precision}"
    return Path("engines") / f"{cm_manifest.name}-{suffix}"


def verification_windows(batch: int = 3, seed: int = 0, samples: int | None = None) -> np.ndarray:
    """Deterministic speech-level test windows: noise plus a few tones, about -20 dBFS."""
    rng = np.random.default_rng(seed)
    samples = samples or CMManifest.model_fields["window_samples"].default
    t = np.arange(samples) / 16_000
    windows = []
    for i in range(batch):
        tone = sum(0.05 * np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 4000, size=3))
        windows.append(tone + rng.normal(0.0, 0.03 * (i + 1), samples))
    return np.stack(windows).astype(np.float32)


@torch.inference_mode()
def torch_probabilities(cm: Countermeasure, windows: np.ndarray) -> np.ndarray:
    """The reference: the torch CM's bona fide probability, fp32 on CPU."""
    return cm.bonafide_probability(torch.from_numpy(windows)).numpy()
