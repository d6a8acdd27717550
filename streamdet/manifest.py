"""Manifests: the JSON that travels with every CM and engine, so that a file says what it is.

A CM directory holds ``model.safetensors`` (backend weights) and ``manifest.json``. Engines (ONNX,
TensorRT, Triton) carry an ``EngineManifest`` that extends the same input contract. ``streamdet``
checks these before scoring anything and never needs ``offline`` to do so.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamdet import architectures
from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES
from streamdet.errors import ManifestError
from streamdet.stream.policy import NEVER_SPOOF_THRESHOLD, spoof_probability, warn_deprecated

CLASS_ORDER = ("bonafide", "spoof")
"""Logit 0 is bona fide, logit 1 is spoof; scores are the probability of bona fide (paper recipe §5)."""

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.safetensors"


def _registered(name: str) -> str:
    try:
        architectures.get(name)
    except ManifestError as exc:  # as a ValueError, so that pydantic names the field
        raise ValueError(str(exc)) from None
    return name


ArchitectureName = Annotated[str, AfterValidator(_registered)]
"""The name of an architecture in ``streamdet.architectures``' registry."""


class Calibration(BaseModel):
    """An operating point: a window is spoof evidence when P(spoof) >= ``spoof_threshold``
    (``streamdet.stream.policy``).

    Manifests written before ``spoof_threshold`` hold ``threshold``, a bona fide probability ("alert
    below it"); it is read once as ``spoof_threshold = 1 - threshold``, with a deprecation warning.
    Only ``spoof_threshold`` is written.
    """

    model_config = ConfigDict(extra="forbid")

    spoof_threshold: float = Field(ge=0.0, le=NEVER_SPOOF_THRESHOLD)
    criterion: str
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_bonafide_threshold(cls, data: Any) -> Any:
        if isinstance(data, dict) and "threshold" in data:
            data = dict(data)
            old = data.pop("threshold")
            warn_deprecated("calibration.threshold (a bona fide probability) is deprecated: read as "
                            "spoof_threshold = 1 - threshold; rewriting the manifest stores spoof_threshold")
            if "spoof_threshold" not in data and isinstance(old, int | float):
                data["spoof_threshold"] = spoof_probability(old)
        return data


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
    architecture: ArchitectureName
    w2v2_source: str | None = None
    w2v2_layer: int = 5
    trained_on: str = ""
    source: str = ""
    source_sha256: str = ""
    weights_sha256: str = ""
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _fits_architecture(self) -> CMManifest:
        architectures.get(self.architecture).check_manifest(self)
        return self

    @property
    def model_id(self) -> str:
        """Short identifier published with every score: name plus the first 12 hex of the weights' hash."""
        return f"{self.name}@{self.weights_sha256[:12]}" if self.weights_sha256 else self.name


ENGINE_FILES = {"onnx": "model.onnx", "tensorrt": "model.plan"}
"""Default engine file names inside an engine directory, per engine kind."""

TRITON_MANIFEST_PARAMETER = "streamdet_manifest"
"""Key of the ``config.pbtxt`` parameter holding the engine manifest as JSON (read by TritonScorer)."""


class BatchProfile(BaseModel):
    """A TensorRT optimisation profile over the batch axis: the plan accepts min..max windows per call."""

    model_config = ConfigDict(extra="forbid")

    min: int = Field(default=1, ge=1)
    opt: int = Field(default=16, ge=1)
    max: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> BatchProfile:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"batch profile needs min <= opt <= max, got {self.min}/{self.opt}/{self.max}")
        return self


class TensorRTInfo(BaseModel):
    """Where a TensorRT plan was built: a plan only runs under the same TensorRT version and GPU model."""

    model_config = ConfigDict(extra="forbid")

    version: str
    gpu_name: str
    compute_capability: str = ""
    profile: BatchProfile
    workspace_bytes: int = 0
    fp32_layers: int = 0
    """Layers pinned to fp32 in an fp16 plan (front-end and normalisation layers)."""


class TritonInfo(BaseModel):
    """How a model sits in a Triton model repository (mirrors its ``config.pbtxt``)."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    backend: Literal["onnxruntime", "tensorrt", "python"]
    max_batch_size: int = Field(ge=1)
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = Field(default=2000, ge=0)
    instance_count: int = Field(default=1, ge=1)
    instance_kind: Literal["auto", "cpu", "gpu"] = "auto"


class EngineManifest(InputContract):
    """Describes an exported engine (ONNX graph, TensorRT plan, Triton model).

    The engine is the whole CM as one graph: ``input_name`` takes (batch, window_samples) float32 at
    ``sample_rate``; ``output_names`` are the logits (batch, 2) and the bona fide probability (batch,).
    ``cm`` is the source CM's manifest (its ``weights_sha256`` identifies the backend weights);
    ``frontend_sha256`` identifies the W2V2 weights baked into the graph (empty for mel).
    """

    format: Literal["streamdet-engine"] = "streamdet-engine"
    version: Literal[1] = 1
    name: str
    engine: Literal["onnx", "tensorrt", "triton"]
    file: str = ""
    """The engine file, relative to the manifest's directory (Triton: relative to the model directory)."""
    file_sha256: str = ""
    input_name: str = "waveform"
    output_names: tuple[str, ...] = ("logits", "bonafide_prob")
    precision: Literal["fp32", "fp16"] = "fp32"
    opset: int | None = None
    exporter: str = ""
    source_cm_sha256: str = ""
    """The exported CM's weights hash (equals ``cm.weights_sha256``)."""
    frontend_sha256: str = ""
    cm: CMManifest
    tensorrt: TensorRTInfo | None = None
    triton: TritonInfo | None = None
    verification: dict[str, float] = Field(default_factory=dict)
    """What the exporter measured against the torch CM, e.g. ``max_abs_prob_diff``."""
    extra: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _coherent(self) -> EngineManifest:
        if self.source_cm_sha256 and self.cm.weights_sha256 and self.source_cm_sha256 != self.cm.weights_sha256:
            raise ValueError("source_cm_sha256 differs from the embedded CM manifest's weights_sha256")
        if self.engine == "tensorrt" and self.tensorrt is None:
            raise ValueError("a tensorrt engine manifest needs its tensorrt section (version, GPU, profile)")
        if self.engine == "triton" and self.triton is None:
            raise ValueError("a triton engine manifest needs its triton section")
        if len(self.output_names) != 2:
            raise ValueError(f"expected two outputs (logits, bonafide probability), got {self.output_names}")
        return self

    @property
    def model_id(self) -> str:
        return f"{self.cm.model_id}:{self.engine}-{self.precision}"

    @property
    def logits_name(self) -> str:
        return self.output_names[0]

    @property
    def prob_name(self) -> str:
        return self.output_names[1]

    @classmethod
    def beside(cls, engine_file: str | Path) -> EngineManifest:
        """The manifest in ``engine_file``'s directory; refuses one that describes another file."""
        engine_file = Path(engine_file)
        manifest = read_manifest(engine_file.parent / MANIFEST_NAME, cls)
        assert isinstance(manifest, cls)
        if manifest.file and manifest.file != engine_file.name:
            raise ManifestError(
                f"{engine_file.parent / MANIFEST_NAME} describes {manifest.file}, not {engine_file.name}"
            )
        return manifest

    def verify_file(self, engine_file: str | Path) -> None:
        """Refuse an engine file whose sha256 differs from the one recorded at export."""
        if not self.file_sha256:
            return
        digest = hashlib.sha256()
        with open(engine_file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != self.file_sha256:
            raise ManifestError(f"{engine_file}: contents do not match the manifest's file_sha256 (re-export it)")


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
