"""Train / dev / held-out lists for the field (telephone) CM, from the prepared real and fake sets.

Sources (prepared by ``offline data asterisk``, ``offline data tts-spoofs`` and the ALM-ADD mirror):

- Asterisk prompts: one speaker per language. Whole languages are either for training (and dev) or
  held out; a held-out language is therefore a held-out speaker.
- Synthetic spoof systems (``<engine>-<voice>``): whole systems are either for training (and dev) or
  held out.
- ALM-ADD conditions: whole conditions (systems, real *and* fake clips) are either for training (and
  dev) or held out.

Dev is a deterministic slice of the training side: a prompt goes to dev when
``crc32("<seed>:<prompt name>")`` falls in the first ``dev_fraction`` of its range. Keying on the
prompt name, not the file, sends the same sentence to dev in every language and every spoof system
(they all say the Asterisk prompts), so no dev sentence is heard in training. ALM-ADD clips are
keyed on their file name.

Held-out lists are never read by training, model selection or calibration; the recipe only gives
them to ``offline evaluate``. Every list holds ``path label`` lines with paths relative to the list's
folder (what :func:`offline.datasets.list_file` reads), and ``splits.json`` records what went where.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import soundfile as sf
from pydantic import BaseModel, Field, model_validator

from offline import datasets
from offline.features.specs import AbsPath, StrictModel
from streamdet.errors import ConfigError, DatasetError

ModelT = TypeVar("ModelT", bound=BaseModel)


class AsteriskSplit(StrictModel):
    root: AbsPath
    train: list[str] = Field(min_length=1)
    heldout: list[str] = Field(default_factory=list)


class TTSSplit(StrictModel):
    root: AbsPath
    heldout: list[str] = Field(default_factory=list)
    """Systems held out for evaluation; every other system found under ``root`` is for training."""
    exclude: list[str] = Field(default_factory=list)
    """Systems used nowhere."""


class ALMSplit(StrictModel):
    root: AbsPath
    train: list[str] = Field(default_factory=list)
    heldout: list[str] = Field(default_factory=list)
    train_repeat: int = Field(default=1, ge=1)
    """How many times each training (not dev) ALM-ADD clip is listed in ``train.txt``: these are the
    only wideband real clips, and the long ones give a different random crop on every pass."""


class SplitConfig(StrictModel):
    out: AbsPath
    seed: int = 0
    dev_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    asterisk: AsteriskSplit
    tts: TTSSplit
    alm_add: ALMSplit

    @model_validator(mode="after")
    def _disjoint(self) -> SplitConfig:
        for name, a, b in (("asterisk", self.asterisk.train, self.asterisk.heldout),
                           ("alm_add", self.alm_add.train, self.alm_add.heldout),
                           ("tts", self.tts.heldout, self.tts.exclude)):
            both = sorted(set(a) & set(b))
            if both:
                raise ValueError(f"{name}: {both} both trained on and held out")
        return self


@dataclass(frozen=True)
class Clip:
    path: Path
    label: int
    source: str
    """``asterisk-<lang>``, ``tts-<system>`` or ``alm-<condition>``."""
    key: str
    """What decides dev membership: the prompt name, or the ALM-ADD file name."""
    seconds: float


def load_split_config(path: str | Path) -> SplitConfig:
    return load_toml_model(path, SplitConfig, "split config")


def load_toml_model(path: str | Path, model: type[ModelT], what: str) -> ModelT:
    """A TOML file validated as ``model``; an unreadable file or an invalid value is one ConfigError
    naming the file (``what`` says which kind of config it is)."""
    import tomllib

    from pydantic import ValidationError

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc})") from exc
    try:
        return model.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid {what}: {exc}") from None


def in_dev(key: str, seed: int, fraction: float) -> bool:
    """The deterministic dev rule (a stable hash, not Python's salted ``hash``)."""
    return zlib.crc32(f"{seed}:{key}".encode()) < fraction * 2**32


def _tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"{path} not found: run the data recipe first (offline data ...)")
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def asterisk_clips(root: Path, language: str) -> list[Clip]:
    rows = _tsv(root / f"asterisk-{language}.tsv")
    return [Clip(root / r["path"], datasets.parse_label(r["label"]), f"asterisk-{language}", r["prompt"],
                 float(r["seconds"])) for r in rows]


def tts_systems(root: Path) -> list[str]:
    return sorted(p.name[len("tts-"):-len(".tsv")] for p in root.glob("tts-*.tsv"))


def tts_clips(root: Path, system: str) -> list[Clip]:
    rows = _tsv(root / f"tts-{system}.tsv")
    return [Clip(root / r["path"], datasets.parse_label(r["label"]), f"tts-{system}", r["prompt"],
                 float(r["seconds"])) for r in rows]


def alm_clips(root: Path, conditions: Iterable[str]) -> list[Clip]:
    by_condition = datasets.alm_add(root)
    clips = []
    for condition in conditions:
        if condition not in by_condition:
            raise DatasetError(f"ALM-ADD at {root} has no condition {condition}: {list(by_condition)}")
        for u in by_condition[condition]:
            clips.append(Clip(u.path, u.label, f"alm-{condition}", u.utt_id, float(sf.info(u.path).duration)))
    return clips


@dataclass
class Splits:
    lists: dict[str, list[Clip]]
    """List name (file stem) → clips, in a deterministic order."""


def build_splits(config: SplitConfig) -> Splits:
    a, t, m = config.asterisk, config.tts, config.alm_add
    systems = tts_systems(t.root)
    unknown = sorted(set(t.heldout + t.exclude) - set(systems))
    if unknown:
        raise DatasetError(f"{t.root}: no spoof system(s) {unknown}; found {systems}")
    train_systems = [s for s in systems if s not in t.heldout and s not in t.exclude]

    train_side = [c for lang in a.train for c in asterisk_clips(a.root, lang)]
    train_side += [c for s in train_systems for c in tts_clips(t.root, s)]
    alm_train = alm_clips(m.root, m.train)

    def dev(c: Clip) -> bool:
        return in_dev(c.key, config.seed, config.dev_fraction)

    train = [c for c in train_side if not dev(c)]
    train += [c for c in alm_train if not dev(c)] * m.train_repeat
    dev_clips = [c for c in train_side + alm_train if dev(c)]
    alm_heldout = alm_clips(m.root, m.heldout)
    lists = {
        "train": train,
        "dev": dev_clips,
        "dev_real": [c for c in dev_clips if c.label == datasets.BONAFIDE],
        "dev_fake": [c for c in dev_clips if c.label == datasets.SPOOF],
        "heldout_real_asterisk": [c for lang in a.heldout for c in asterisk_clips(a.root, lang)],
        "heldout_real_alm": [c for c in alm_heldout if c.label == datasets.BONAFIDE],
        "heldout_fake_alm": [c for c in alm_heldout if c.label == datasets.SPOOF],
        "heldout_fake_tts": [c for s in t.heldout for c in tts_clips(t.root, s)],
    }
    return Splits(lists)


def write_splits(config: SplitConfig, splits: Splits) -> dict[str, object]:
    """Write ``<out>/<name>.txt`` for every list and ``<out>/splits.json``; returns the summary."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {"config": config.model_dump(mode="json"), "lists": {}}
    for name, clips in splits.lists.items():
        lines = [f"{os.path.relpath(c.path, out)} {'real' if c.label == datasets.BONAFIDE else 'fake'}"
                 for c in clips]
        (out / f"{name}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        sources: dict[str, dict[str, float]] = {}
        for c in clips:
            entry = sources.setdefault(c.source, {"real": 0, "fake": 0, "minutes": 0.0})
            entry["real" if c.label == datasets.BONAFIDE else "fake"] += 1
            entry["minutes"] += c.seconds / 60
        summary["lists"][name] = {  # type: ignore[index]
            "clips": len(clips),
            "real": sum(c.label == datasets.BONAFIDE for c in clips),
            "fake": sum(c.label == datasets.SPOOF for c in clips),
            "minutes": round(sum(c.seconds for c in clips) / 60, 2),
            "sources": {k: {**v, "minutes": round(v["minutes"], 2)} for k, v in sorted(sources.items())},
        }
    (out / "splits.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
