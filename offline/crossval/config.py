"""The cross-validation config (``configs/field/crossval.toml``): data, folds, replay, heads, augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from offline.field_splits import load_toml_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentSettings(_Strict):
    """Extra training windows: each drawn from a clip through a random field chain (``field_augment``)."""

    windows_per_clip: int = Field(1, ge=0)
    max_clips_per_group: int = Field(120, ge=1)
    """Caps what the largest sources (thousands of spoken digits, hours of prompts) contribute."""
    seed: int = 0


class HeadSettings(_Strict):
    """Training of one fold's head on trunk features (``head.py``)."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    balance_groups: bool = True
    """Weight windows so that every group counts the same within its class (and both classes the same)."""
    augmented: bool = True
    """Train on the augmented windows as well as on the replayed windows of the training groups."""
    max_windows: int | None = Field(None, ge=1)
    """Train on a seeded random subset of this many windows (for CMs trained from scratch on CPU)."""
    seed: int = 0


class CandidateSettings(_Strict):
    """A CM compared by the cross-validation: the trunk's own head, or a head retrained per fold."""

    name: str
    retrain_head: bool
    architecture: str | None = None
    """None: the config CM's head on its frozen trunk. ``logmel_cnn``: that whole CM trained from
    scratch per fold on cached log-mel (``retrain_head`` must be true)."""
    threshold: Literal["train_fold", "manifest"] | float = "train_fold"
    """``train_fold``: calibrated on the fold's training groups (``target_far`` of their counted real
    windows alerting, as ``offline calibrate``); ``manifest``: the CM's shipped threshold; a number:
    that spoof threshold (e.g. an earlier manifest's). The last two only without ``retrain_head``."""
    target_far: float | None = Field(None, ge=0, lt=1)
    """The share of counted real windows allowed to alert when calibrating (None: the config's)."""
    head: HeadSettings = HeadSettings()

    @model_validator(mode="after")
    def _coherent(self) -> CandidateSettings:
        if self.architecture not in (None, "logmel_cnn"):
            raise ValueError(f"{self.name}: architecture must be unset (the CM's head) or logmel_cnn")
        if self.architecture is not None and not self.retrain_head:
            raise ValueError(f"{self.name}: a {self.architecture} candidate is trained, set retrain_head = true")
        return self

    @property
    def trunk(self) -> str:
        """Which trunk's stored features the candidate reads (``offline.crossval.stages.TRUNKS``)."""
        return "cm" if self.architecture is None else "logmel"

    def far(self, config: CrossvalConfig) -> float:
        """The calibration target of this candidate."""
        return config.target_far if self.target_far is None else self.target_far


class CrossvalConfig(_Strict):
    """What ``offline crossval`` reads. ``target_far``: the share of counted (not speech-gated) real
    windows of the training groups allowed to alert at the calibrated threshold."""

    field_list: Path
    out: Path
    cm: Path
    """The CM whose trunk every candidate shares (its own head is the ``retrain_head = false`` candidate)."""
    folds: int = Field(5, ge=2)
    seed: int = 0
    evaluate_origins: list[str] = ["field-data"]
    channels: list[str] = ["wideband", "ulaw"]
    calibration_channel: str = "wideband"
    real_call_minutes: float = Field(3.0, gt=0)
    fake_call_minutes: float = Field(1.0, gt=0)
    within_s: float = Field(10.0, gt=0)
    target_far: float = Field(0.01, ge=0, lt=1)
    min_speech: float | None = Field(None, ge=0, le=1)
    """The speech gate of the replays, the calibration and the report (None: the service's default)."""
    augment: AugmentSettings = AugmentSettings()
    candidates: list[CandidateSettings]


def load_crossval_config(path: str | Path, root: Path | None = None) -> CrossvalConfig:
    """Read a config; relative paths resolve against ``root`` (default: the current directory)."""
    config = load_toml_model(path, CrossvalConfig, "crossval config")
    base = Path.cwd() if root is None else Path(root)
    return config.model_copy(update={k: base / getattr(config, k) for k in ("field_list", "out", "cm")})
