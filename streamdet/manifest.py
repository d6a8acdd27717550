"""Manifests: the JSON that travels with every CM and engine, so that a file says what it is.

A CM directory holds ``model.safetensors`` (backend weights) and ``manifest.json``. Engines (ONNX,
TensorRT, Triton) carry an ``EngineManifest`` that extends the same input contract. ``streamdet``
checks these before scoring anything and never needs ``offline`` to do so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES
from streamdet.errors import ManifestError

CLASS_ORDER = ("bonafide", "spoof")
"""Logit 0 is bona fide, logit 1 is spoof; scores are the probability of bona fide (FACTS §5)."""

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.safetensors"

Architecture = Literal["mel_lcnn", "w2v2_lcnn", "w2v2_aasist"]

PAPER_NAMES: dict[str, tuple[str, str]] = {
    "mel_lcnn": ("Mel", "LCNN"),
    "w2v2_lcnn": ("W2V2", "LCNN"),
    "w2v2_aasist": ("W2V2", "AASIST"),
}
"""Feature and backbone columns of the paper's tables, per architecture."""


class Calibration(BaseModel):
    """An operating point: alert when the bona fide probability falls below ``threshold``."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0.0, le=1.0)
    criterion: str
    description: str = ""


class InputContract(BaseModel):
    """What a scorer expects: raw mono windows at a fixed rate and length."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: int = SAMPLE_RATE
    window_samples: int = WINDOW_SAMPLES
    class_order: tuple[str, str] = CLASS_ORDER

    def check_compatible(self, sample_rate: int, window_samples: int) -> None:
        """Refuse to serve a model whose input contract differs from the service's."""
        if (self.sample_rate, self.window_samples) != (sample_rate, window_samples):
            raise ManifestError(
                f"model expects {self.window_samples} samples at {self.sample_rate} Hz, "
                f"the service windows {window_samples} samples at {sample_rate} Hz"
            )
        if tuple(self.class_order) != CLASS_ORDER:
            raise ManifestError(f"unsupported class order {self.class_order}, expected {CLASS_ORDER}")


class CMManifest(InputContract):
    """Describes a CM in streamdet's own format."""

    format: Literal["streamdet-cm"] = "streamdet-cm"
    version: Literal[1] = 1
    name: str
    architecture: Architecture
    w2v2_source: str | None = None
    w2v2_layer: int = 5
    trained_on: str = ""
    source: str = ""
    source_sha256: str = ""
    weights_sha256: str = ""
    calibration: Calibration | None = None

    @property
    def model_id(self) -> str:
        """Short identifier published with every score: name plus the first 12 hex of the weights' hash."""
        return f"{self.name}@{self.weights_sha256[:12]}" if self.weights_sha256 else self.name


class EngineManifest(InputContract):
    """Describes an exported engine (ONNX graph, TensorRT plan, Triton model)."""

    format: Literal["streamdet-engine"] = "streamdet-engine"
    version: Literal[1] = 1
    name: str
    engine: Literal["onnx", "tensorrt", "triton"]
    input_name: str = "waveform"
    output_names: tuple[str, ...] = ("logits", "bonafide_prob")
    precision: Literal["fp32", "fp16"] = "fp32"
    cm: CMManifest
    extra: dict[str, object] = Field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"{self.cm.model_id}:{self.engine}-{self.precision}"


def read_manifest(path: str | Path, kind: type[BaseModel]) -> BaseModel:
    """Read and validate a manifest file; any problem is a ManifestError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: no manifest") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from exc
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(f"{path}: invalid manifest: {exc}") from exc


def write_manifest(path: str | Path, manifest: BaseModel) -> None:
    Path(path).write_text(manifest.model_dump_json(indent=2) + "\n")
