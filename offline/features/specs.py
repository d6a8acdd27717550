"""What a feature cache or a training split is computed from: dataset and front-end specs.

Both are small, strictly validated pydantic models, shared by ``offline prepare-features``, the
feature cache's index (which records them, so a cache says what it holds) and the training config.
Relative paths resolve against the current directory when a spec is validated: configs name
``data/...`` relative to the repository root, and the resolved (absolute) spec is what gets recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from offline import datasets
from offline.datasets import Utterance
from streamdet.errors import ManifestError
from streamdet.models.w2v2 import HIDDEN_LAYER, XLSR_300M


def _absolute(path: Path) -> Path:
    return path.expanduser().absolute()


AbsPath = Annotated[Path, AfterValidator(_absolute)]


class StrictModel(BaseModel):
    """Unknown keys are errors and values are never coerced from another type ("128" is not 128)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _DatasetBase(StrictModel):
    cache: AbsPath | None = None
    """Feature cache directory for this dataset; by default derived from the config's ``cache_root``."""

    def read(self, *, check_audio: bool = True) -> list[Utterance]:
        raise NotImplementedError

    @property
    def slug(self) -> str:
        """A short file-system-safe name, used to derive cache directory names."""
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        """The spec as recorded in cache indexes and manifests (without the cache location)."""
        return self.model_dump(mode="json", exclude={"cache"})

    @property
    def label(self) -> str:
        """One-line human description, e.g. ``codecfake:train``."""
        raise NotImplementedError


class ASVspoof2019LA(_DatasetBase):
    kind: Literal["asvspoof2019_la"]
    root: AbsPath
    part: Literal["train", "dev", "eval"]

    def read(self, *, check_audio: bool = True) -> list[Utterance]:
        return datasets.asvspoof2019_la(self.root, self.part, check_audio=check_audio)

    @property
    def slug(self) -> str:
        return f"asvspoof2019_la-{self.part}"

    @property
    def label(self) -> str:
        return f"asvspoof2019_la:{self.part}"


class Codecfake(_DatasetBase):
    kind: Literal["codecfake"]
    root: AbsPath
    part: Literal[datasets.CODECFAKE_PARTS]  # type: ignore[valid-type]

    def read(self, *, check_audio: bool = True) -> list[Utterance]:
        return datasets.codecfake(self.root, self.part, check_audio=check_audio)

    @property
    def slug(self) -> str:
        return f"codecfake-{self.part}"

    @property
    def label(self) -> str:
        return f"codecfake:{self.part}"


class ListFile(_DatasetBase):
    """Own data: a text file of ``path label`` lines (label real/bonafide or fake/spoof)."""

    kind: Literal["list"]
    path: AbsPath

    def read(self, *, check_audio: bool = True) -> list[Utterance]:
        return datasets.list_file(self.path, check_audio=check_audio)

    @property
    def slug(self) -> str:
        # The stem alone could collide (two folders' train.txt); a short hash of the full path cannot.
        digest = hashlib.sha1(str(self.path).encode()).hexdigest()[:8]
        return f"list-{_safe(self.path.stem)}-{digest}"

    @property
    def label(self) -> str:
        return f"list:{self.path}"


class ALMADD(_DatasetBase):
    kind: Literal["alm_add"]
    root: AbsPath
    conditions: list[str] | None = None
    """Conditions to include (``A01``...); all when absent."""

    def read(self, *, check_audio: bool = True) -> list[Utterance]:
        by_condition = datasets.alm_add(self.root, check_audio=check_audio)
        wanted = self.conditions or list(by_condition)
        unknown = sorted(set(wanted) - set(by_condition))
        if unknown:
            raise ManifestError(f"ALM-ADD at {self.root} has no condition(s) {unknown}: {list(by_condition)}")
        return [u for condition in wanted for u in by_condition[condition]]

    @property
    def slug(self) -> str:
        return "alm_add-" + ("+".join(self.conditions) if self.conditions else "all")

    @property
    def label(self) -> str:
        return "alm_add:" + (",".join(self.conditions) if self.conditions else "all")


class InTheWild(_DatasetBase):
    kind: Literal["in_the_wild"]
    root: AbsPath

    def read(self, *, check_audio: bool = True) -> list[Utterance]:
        return datasets.in_the_wild(self.root, check_audio=check_audio)

    @property
    def slug(self) -> str:
        return "in_the_wild"

    @property
    def label(self) -> str:
        return "in_the_wild"


DatasetSpec = Annotated[
    ASVspoof2019LA | Codecfake | ListFile | ALMADD | InTheWild, Field(discriminator="kind")
]
DATASET_KINDS = ("asvspoof2019_la", "codecfake", "list", "alm_add", "in_the_wild")


def dataset_spec(data: dict[str, object]) -> ASVspoof2019LA | Codecfake | ListFile | ALMADD | InTheWild:
    """Validate a dataset spec from plain data (command-line flags, a cache index's record)."""
    # JSON mode: strict validation then accepts strings for paths, as in config files.
    return TypeAdapter(DatasetSpec).validate_json(json.dumps(data))


class FrontendSpec(StrictModel):
    """The frozen front-end whose output a cache stores: mel power, or W2V2 ``hidden_states[layer]``."""

    kind: Literal["mel", "w2v2"]
    source: str | None = None
    """W2V2 only: hub id or local directory of the ``Wav2Vec2Model``."""
    layer: int = HIDDEN_LAYER

    @property
    def slug(self) -> str:
        if self.kind == "mel":
            return "mel"
        name = Path((self.source or XLSR_300M).rstrip("/")).name
        return f"w2v2-{_safe(name)}-l{self.layer}"

    @property
    def dtype(self) -> str:
        # W2V2 hidden states are stored in fp16 (half the disk, as the authors did). Mel power is
        # not log-compressed and exceeds fp16's range (65,504) for loud audio, so it stays float32.
        return "float16" if self.kind == "w2v2" else "float32"


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name).strip("_") or "x"


def cache_dir_for(spec: _DatasetBase, frontend: FrontendSpec, cache_root: Path) -> Path:
    """Where a dataset's cache lives: its explicit ``cache`` or ``<cache_root>/<dataset>__<front-end>``."""
    return spec.cache or cache_root / f"{spec.slug}__{frontend.slug}"
