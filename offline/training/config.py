"""Training configuration: typed defaults that are the paper's recipe (paper recipe §8), overridden by a file.

An experiment file (TOML, or the JSON a run directory keeps) states only what differs from the
defaults: the name, the architecture, the datasets and, for Codecfake, the shorter schedule. Unknown
keys and values of the wrong type ("128" for 128) are errors that name the key, raised before any work.

Relative paths resolve against the current directory (run from the repository root: ``data/...``,
``runs/...``); the resolved config, with absolute paths, is what a run directory records.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from offline.features.specs import (
    DATASET_KINDS,
    AbsPath,
    DatasetSpec,
    FrontendSpec,
    StrictModel,
    cache_dir_for,
)
from streamdet import architectures
from streamdet.architectures import Architecture
from streamdet.errors import ConfigError
from streamdet.manifest import ArchitectureName
from streamdet.models.w2v2 import HIDDEN_LAYER, XLSR_300M

PositiveFloat = Annotated[float, Field(gt=0)]


class DataConfig(StrictModel):
    train: list[DatasetSpec] = Field(min_length=1)
    """Training sets; several are concatenated (co-training)."""
    dev: list[DatasetSpec] = Field(min_length=1)
    """Validation sets: only select the checkpoint (lowest loss), never train."""


class FeatureConfig(StrictModel):
    w2v2_source: str = XLSR_300M
    """Hub id or local directory of the frozen XLS-R model (W2V2 architectures)."""
    w2v2_layer: int = Field(default=HIDDEN_LAYER, ge=1)
    # A factory, so that the default resolves against the working directory of each load.
    cache_root: AbsPath = Field(default_factory=lambda: Path("data/features").absolute())
    """Where dataset caches live unless a dataset names its own ``cache``."""
    cache_mel: bool = False
    """Mel is cheap to compute on the fly; set to read mel from prepared caches instead."""


class OptimConfig(StrictModel):
    """Adam, as the authors configured it."""

    lr: PositiveFloat = 5e-4
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4


class ScheduleConfig(StrictModel):
    """lr = optim.lr * decay_factor ** (epoch // decay_every), epochs counted from 0.

    Defaults are the 19LA recipe (100 epochs, halved every 10); Codecfake uses 10 and 2.
    """

    epochs: int = Field(default=100, ge=1)
    decay_every: int = Field(default=10, ge=1)
    decay_factor: Annotated[float, Field(gt=0, le=1)] = 0.5

    def lr(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.decay_factor ** (epoch // self.decay_every)


class TrainConfig(StrictModel):
    batch_size: int = Field(default=128, ge=1)
    """Global batch size: split evenly over the processes of a DDP run."""
    class_weights: tuple[PositiveFloat, PositiveFloat] = (10.0, 1.0)
    """Cross-entropy weights of (bona fide, spoof)."""
    seed: int = 688


class RuntimeConfig(StrictModel):
    """How a run executes; none of this changes the recipe, so it may differ on ``--resume``."""

    run_dir: AbsPath | None = None
    """Default: ``runs/<name>``."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``...; DDP uses ``cuda:<LOCAL_RANK>``."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    """bfloat16 needs no loss scaling and has float32's range, which raw mel power needs."""
    channels_last: bool | None = None
    """LCNN activations in channels-last layout (None: on CPU only, where oneDNN runs it 2-4x faster)."""
    deterministic: bool = True
    """torch.use_deterministic_algorithms (warn-only where an op has no deterministic kernel)."""
    num_workers: int = Field(default=4, ge=0)
    progress: bool = True
    tensorboard: bool = True


class AugmentConfig(StrictModel):
    """On-the-fly training augmentation (waveform in, so mel architectures computing mel on the fly).

    Every training example draws, from a generator seeded by (train.seed, epoch, item index), in this
    order: a random crop of a clip longer than the window (``random_crop``; else its first window, as
    evaluation scores), a gain (``gain_db``), and with probability ``probability`` one channel of
    ``channels`` (uniformly; repeat a name to weight it), applied to the window. The same example
    therefore sees the same draw in a resumed run and a different one in the next epoch. Validation
    items get one fixed draw each (``dev = true``), so the selection loss covers the same channels.
    """

    channels: list[str] = Field(default_factory=list)
    """Channel names of ``offline.channels`` (``ulaw``, ``opus16k``, chains such as ``ulaw+loss5``)."""
    probability: Annotated[float, Field(ge=0, le=1)] = 1.0
    random_crop: bool = False
    gain_db: tuple[float, float] | None = None
    """Uniform gain range in dB, e.g. [-10, 6]; the result is clipped to [-1, 1] as a sound card would."""
    dev: bool = True

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, channels: list[str]) -> list[str]:
        from offline.channels import get_channel

        for name in channels:
            try:
                get_channel(name)
            except ConfigError as exc:  # as a ValueError, so that pydantic names the key
                raise ValueError(str(exc)) from None
        return channels

    @field_validator("gain_db")
    @classmethod
    def _ordered_gain(cls, gain: tuple[float, float] | None) -> tuple[float, float] | None:
        if gain is not None and gain[0] > gain[1]:
            raise ValueError(f"gain_db must be [low, high], got {list(gain)}")
        return gain

    @property
    def active(self) -> bool:
        return bool(self.channels and self.probability > 0) or self.random_crop or self.gain_db is not None


class ExperimentConfig(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    architecture: ArchitectureName
    description: str = ""
    data: DataConfig
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    init_from: AbsPath | None = None
    """A CM directory whose backend weights start the training (fine-tuning); same architecture."""

    @model_validator(mode="after")
    def _augment_needs_waveforms(self) -> ExperimentConfig:
        if self.augment.active and self.frontend is not None:
            raise ValueError(
                "augment works on waveforms: only mel architectures with features.cache_mel = false "
                "(the W2V2 and cached-mel pipelines read precomputed features)"
            )
        return self

    @model_validator(mode="after")
    def _distinct_caches(self) -> ExperimentConfig:
        if self.frontend is not None:
            owners: dict[Path, dict[str, Any]] = {}
            for spec in (*self.data.train, *self.data.dev):
                owner = owners.setdefault(self.cache_dir(spec), spec.describe())
                if owner != spec.describe():
                    raise ValueError(
                        f"datasets {owner} and {spec.describe()} would share the feature cache "
                        f"{self.cache_dir(spec)}; give each its own 'cache'"
                    )
        return self

    @property
    def arch(self) -> Architecture:
        """The registered architecture this experiment trains."""
        return architectures.get(self.architecture)

    @property
    def is_w2v2(self) -> bool:
        return self.arch.frontend.needs_xlsr

    @property
    def frontend(self) -> FrontendSpec | None:
        """The front-end whose cached output training reads; None when it is computed on the fly
        (mel, unless ``features.cache_mel``)."""
        frontend = self.arch.frontend
        if frontend.needs_xlsr:
            return FrontendSpec(kind=frontend.kind, source=self.features.w2v2_source, layer=self.features.w2v2_layer)
        if frontend.on_the_fly and not self.features.cache_mel:
            return None
        return FrontendSpec(kind=frontend.kind)

    def cache_dir(self, spec: Any) -> Path:
        assert self.frontend is not None
        return cache_dir_for(spec, self.frontend, self.features.cache_root)

    @property
    def run_dir(self) -> Path:
        return self.runtime.run_dir or Path("runs", self.name).absolute()

    def recipe(self) -> dict[str, Any]:
        """Everything that determines the trained weights: not runtime, epoch count or cache locations."""
        data = self.model_dump(mode="json", exclude={"runtime", "description"})
        data["schedule"].pop("epochs")
        data["features"].pop("cache_root")
        for spec in (*data["data"]["train"], *data["data"]["dev"]):
            spec.pop("cache")
        return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=VALUE`` → (["section", "key"], value); VALUE is a TOML value, else a bare string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. schedule.epochs=2")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # unquoted strings: paths, device names
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {key!r} is not a table")
            node = child
        node[keys[-1]] = value
    return data


def read_config_data(path: Path) -> dict[str, Any]:
    """The raw mapping of a TOML (experiment) or JSON (run directory) config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from exc


def validate_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a raw mapping; every problem is listed with its dotted key."""
    try:
        # JSON mode: TOML's types map onto JSON's one to one, and strict JSON validation accepts
        # arrays for tuples and strings for paths while still refusing "128" for an int.
        return ExperimentConfig.model_validate_json(json.dumps(data, default=str))
    except ValidationError as exc:
        lines = [f"{_dotted(err['loc'])}: {_message(err)}" for err in exc.errors()]
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    path = Path(path)
    return validate_config(apply_overrides(read_config_data(path), overrides or []), str(path))


def _dotted(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as the key a user wrote: ``data.train[0].root``."""
    text = ""
    for i, item in enumerate(loc):
        if isinstance(item, int):
            text += f"[{item}]"
        elif item in DATASET_KINDS and i > 0 and isinstance(loc[i - 1], int):
            continue  # pydantic's discriminator tag, not a key of the file
        else:
            text += ("." if text else "") + str(item)
    return text or "(top level)"


def _message(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key missing"
    given = err.get("input")
    shown = f" (got {given!r})" if given is not None and not isinstance(given, dict | list) else ""
    return f"{err['msg']}{shown}"
