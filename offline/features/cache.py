"""The on-disk feature cache: fixed-shape features of one dataset, in shards, with an index.

Layout of a cache directory::

    index.json              what the cache holds: front-end, dataset spec, feature shape and dtype,
                            shard size, and every item's utt_id and label, in dataset order
    shard-00000.npy         rows [0, shard_size) as one (count, *feature_shape) array (memory-mappable)
    shard-00000.json        the shard's commit record: count, and the items that failed (path, reason)
    ...

Item ``i`` lives in shard ``i // shard_size``, row ``i % shard_size``. A shard is *committed* (visible
to readers) only once its record exists; the record is written, by atomic rename, only after the array
itself was completely written and renamed into place. A crash therefore leaves at worst a ``.tmp`` file
or an unrecorded array, both invisible and both redone by the next ``prepare-features``.

Items whose audio could not be read keep a zero row and are listed in their shard's record, so the cache
never silently shrinks; training refuses to use them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from offline.datasets import Utterance
from offline.features.specs import FrontendSpec
from streamdet.errors import FeatureCacheError

INDEX_NAME = "index.json"
CACHE_FORMAT = "streamdet-feature-cache"


class CacheIndex(BaseModel):
    """Contents of ``index.json``; written once when a cache is planned."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["streamdet-feature-cache"] = CACHE_FORMAT
    version: Literal[1] = 1
    frontend: FrontendSpec
    dataset: dict[str, Any]
    """The dataset spec the cache was computed from (``DatasetSpec.describe()``)."""
    feature_shape: tuple[int, ...]
    dtype: Literal["float16", "float32"]
    shard_size: int
    utt_ids: list[str]
    labels: list[int]
    created: str = ""

    @property
    def num_items(self) -> int:
        return len(self.utt_ids)

    @property
    def num_shards(self) -> int:
        return -(-self.num_items // self.shard_size)

    def shard_range(self, shard: int) -> range:
        """Item positions of a shard."""
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.num_items))


class ShardRecord(BaseModel):
    """Contents of ``shard-NNNNN.json``: the commit record of one written shard."""

    model_config = ConfigDict(extra="forbid")

    shard: int
    count: int
    failed: dict[str, dict[str, str]] = {}
    """utt_id → {"path": ..., "reason": ...} for items whose audio could not be read (zero rows)."""


def shard_stem(shard: int) -> str:
    return f"shard-{shard:05d}"


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see either the old content or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def new_index(
    frontend: FrontendSpec,
    dataset: dict[str, Any],
    feature_shape: tuple[int, ...],
    shard_size: int,
    utterances: list[Utterance],
) -> CacheIndex:
    return CacheIndex(
        frontend=frontend,
        dataset=dataset,
        feature_shape=feature_shape,
        dtype=frontend.dtype,
        shard_size=shard_size,
        utt_ids=[u.utt_id for u in utterances],
        labels=[u.label for u in utterances],
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


@dataclass
class CheckReport:
    """Outcome of comparing a cache with its dataset; ``ok`` when there is nothing to report."""

    directory: Path
    num_items: int = 0
    committed_shards: int = 0
    num_shards: int = 0
    problems: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failures

    def summary(self) -> str:
        state = "ok" if self.ok else f"{len(self.problems)} problem(s), {len(self.failures)} failed item(s)"
        return (
            f"{self.directory}: {self.num_items} items, "
            f"{self.committed_shards}/{self.num_shards} shards committed: {state}"
        )


class FeatureCache:
    """Read access to a cache directory; only committed shards are visible.

    Arrays are memory-mapped lazily and per process, so an instance can be handed to DataLoader
    workers (the maps are dropped when pickled and reopened in the worker).
    """

    def __init__(self, directory: Path, index: CacheIndex, records: dict[int, ShardRecord]) -> None:
        self.directory = directory
        self.index = index
        self.records = records
        self._positions: dict[str, int] | None = None
        self._maps: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, directory: str | Path) -> FeatureCache:
        directory = Path(directory)
        index = read_index(directory)
        return cls(directory, index, read_records(directory, index))

    # -- state -------------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        """Every shard committed (failed items may still exist: see ``failures``)."""
        return len(self.records) == self.index.num_shards

    def failures(self) -> dict[str, dict[str, str]]:
        """utt_id → {"path", "reason"} over all committed shards."""
        out: dict[str, dict[str, str]] = {}
        for record in self.records.values():
            out.update(record.failed)
        return out

    def position(self, utt_id: str) -> int | None:
        if self._positions is None:
            self._positions = {u: i for i, u in enumerate(self.index.utt_ids)}
        return self._positions.get(utt_id)

    # -- data --------------------------------------------------------------------------------------
    def read(self, position: int) -> np.ndarray:
        """The feature array of the item at a dataset position (a view into the memory map)."""
        shard, row = divmod(position, self.index.shard_size)
        if shard not in self.records:
            raise FeatureCacheError(f"{self.directory}: shard {shard} is not committed")
        array = self._maps.get(shard)
        if array is None:
            array = np.load(self.directory / f"{shard_stem(shard)}.npy", mmap_mode="r")
            self._maps[shard] = array
        return array[row]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}  # memory maps are per process
        return state

    # -- checks ------------------------------------------------------------------------------------
    def check(self, utterances: list[Utterance] | None = None) -> CheckReport:
        """Compare with the dataset (count, ids, labels) and the shards on disk (presence, shape, dtype)."""
        index = self.index
        report = CheckReport(self.directory, index.num_items, len(self.records), index.num_shards)
        if utterances is not None:
            report.problems += _compare_items(index, utterances)
        missing = [s for s in range(index.num_shards) if s not in self.records]
        if missing:
            report.problems.append(f"{len(missing)} shard(s) not written yet: {_ranges(missing)}")
        for shard, record in sorted(self.records.items()):
            expected = (len(index.shard_range(shard)), *index.feature_shape)
            path = self.directory / f"{shard_stem(shard)}.npy"
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                report.problems.append(f"{path.name}: unreadable ({exc})")
                continue
            if array.shape != expected or str(array.dtype) != index.dtype or record.count != expected[0]:
                report.problems.append(
                    f"{path.name}: shape {array.shape} {array.dtype}, expected {expected} {index.dtype}"
                )
            report.failures += [(f["path"], f["reason"]) for f in record.failed.values()]
        return report


def _compare_items(index: CacheIndex, utterances: list[Utterance]) -> list[str]:
    problems = []
    if len(utterances) != index.num_items:
        problems.append(f"dataset has {len(utterances)} items, cache index {index.num_items}")
    ids = [u.utt_id for u in utterances]
    if ids != index.utt_ids:
        differing = sum(a != b for a, b in zip(ids, index.utt_ids, strict=False))
        problems.append(f"utt_ids differ from the dataset's ({differing} positions differ)")
    elif [u.label for u in utterances] != index.labels:
        differing = sum(u.label != label for u, label in zip(utterances, index.labels, strict=True))
        problems.append(f"labels differ from the dataset's for {differing} items")
    return problems


def _ranges(numbers: list[int], shown: int = 8) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f", ... ({len(numbers)} in all)" if len(numbers) > shown else "")


def read_index(directory: Path) -> CacheIndex:
    path = directory / INDEX_NAME
    try:
        return CacheIndex.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise FeatureCacheError(f"{directory}: no feature cache here (no {INDEX_NAME})") from exc
    except (OSError, ValidationError) as exc:
        raise FeatureCacheError(f"{path}: unreadable cache index: {exc}") from exc


def read_records(directory: Path, index: CacheIndex) -> dict[int, ShardRecord]:
    """Commit records of the shards that are completely written (array and record both present)."""
    records = {}
    for shard in range(index.num_shards):
        stem = shard_stem(shard)
        record_path = directory / f"{stem}.json"
        if not record_path.is_file() or not (directory / f"{stem}.npy").is_file():
            continue
        try:
            records[shard] = ShardRecord.model_validate_json(record_path.read_bytes())
        except ValidationError as exc:
            raise FeatureCacheError(f"{record_path}: unreadable shard record: {exc}") from exc
    return records


def write_index(directory: Path, index: CacheIndex) -> None:
    atomic_write_text(directory / INDEX_NAME, json.dumps(index.model_dump(mode="json")) + "\n")
