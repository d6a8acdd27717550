"""Training and validation data: raw windows for on-the-fly mel, or features from prepared caches.

Every item is ``(input, label)``: a 64,600-sample float32 window (paper recipe §1, the same window evaluation
scores) when the mel front-end runs on the fly, otherwise the cached front-end output in the backend's
input layout. All checks (audio present, cache complete, ids and labels matching) happen when a split
is built, i.e. before training starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

from offline.datasets import BONAFIDE, Utterance
from offline.features.cache import FeatureCache
from offline.features.specs import FrontendSpec
from offline.training.augment import AugmentedWaveformDataset
from offline.training.config import ExperimentConfig
from streamdet.audio import load_window
from streamdet.errors import FeatureCacheError

_SHOWN = 5  # how many offending items an error message spells out


class WaveformDataset(Dataset):
    """Decoded, resampled, fixed-length windows; the mel front-end runs on the training device."""

    def __init__(self, utterances: list[Utterance]) -> None:
        self.utterances = utterances

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        utterance = self.utterances[i]
        return torch.from_numpy(load_window(utterance.path)), utterance.label


class CachedFeatureDataset(Dataset):
    """Items of one feature cache, selected and labelled by a dataset's utterance list."""

    def __init__(self, cache: FeatureCache, positions: list[int], labels: list[int]) -> None:
        self.cache = cache
        self.positions = positions
        self.labels = labels

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # Copy out of the memory map: the batch must not keep the shard's pages pinned.
        return torch.from_numpy(np.array(self.cache.read(self.positions[i]))), self.labels[i]


@dataclass
class Split:
    """A training or validation split and what it is made of (for logs and the CM manifest)."""

    dataset: Dataset
    labels: list[int]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self) -> str:
        bonafide = sum(1 for label in self.labels if label == BONAFIDE)
        return f"{len(self)} items ({bonafide} bona fide) from {', '.join(self.sources)}"


def build_split(config: ExperimentConfig, role: str) -> Split:
    """The ``train`` or ``dev`` split of a config; raises before training if anything is missing."""
    specs = config.data.train if role == "train" else config.data.dev
    frontend = config.frontend
    if frontend is None:
        utterances = [u for spec in specs for u in spec.read(check_audio=True)]
        augment = config.augment
        dataset: Dataset
        if augment.active and (role == "train" or augment.dev):
            dataset = AugmentedWaveformDataset(utterances, augment, config.train.seed)
        else:
            dataset = WaveformDataset(utterances)
        return Split(dataset, [u.label for u in utterances], [s.label for s in specs])
    parts = []
    for spec in specs:
        # The audio is not needed once cached, so it is not required to exist any more.
        utterances = spec.read(check_audio=False)
        parts.append(cached_dataset(config.cache_dir(spec), frontend, utterances, spec.label))
    labels = [label for part in parts for label in part.labels]
    return Split(ConcatDataset(parts), labels, [s.label for s in specs])


def cached_dataset(
    directory, frontend: FrontendSpec, utterances: list[Utterance], label: str
) -> CachedFeatureDataset:
    """Map a dataset's utterances onto its cache, refusing anything absent, failed or mislabelled."""
    hint = "run `offline prepare-features --config <this config>` first"
    try:
        cache = FeatureCache.open(directory)
    except FeatureCacheError as exc:
        raise FeatureCacheError(f"{label}: {exc}; {hint}") from None
    if cache.index.frontend != frontend:
        raise FeatureCacheError(
            f"{label}: cache {directory} holds {cache.index.frontend.model_dump()}, "
            f"the config needs {frontend.model_dump()}"
        )
    failures = cache.failures()
    positions, absent, failed, mislabelled = [], [], [], []
    for u in utterances:
        position = cache.position(u.utt_id)
        if position is None or position // cache.index.shard_size not in cache.records:
            absent.append(u.utt_id)
        elif u.utt_id in failures:
            failed.append(f"{failures[u.utt_id]['path']} ({failures[u.utt_id]['reason']})")
        elif cache.index.labels[position] != u.label:
            mislabelled.append(u.utt_id)
        else:
            positions.append(position)
    problems = [
        _listed(absent, "not in the cache (not yet computed?)"),
        _listed(failed, "failed to decode when the cache was prepared; fix or remove them"),
        _listed(mislabelled, "have a different label in the cache"),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise FeatureCacheError(f"{label}: cache {directory}: " + "; ".join(problems) + f"; {hint}")
    return CachedFeatureDataset(cache, positions, [u.label for u in utterances])


def _listed(items: list[str], what: str) -> str:
    if not items:
        return ""
    more = f", ... ({len(items)} in all)" if len(items) > _SHOWN else ""
    return f"{len(items)} item(s) {what}: {', '.join(items[:_SHOWN])}{more}"


class ShardSampler(Sampler):
    """This process's share of a dataset: a seeded per-epoch permutation (training) or fixed order.

    The permutation depends only on (seed, epoch), so a resumed run draws the same batches. Training
    (``shuffle``) pads the order by repeating its start until it divides by the world size, as
    DistributedSampler does, because every DDP process must take the same number of steps. Validation
    never pads, so its loss is exact (it only meets the other processes in one final all-reduce).
    """

    def __init__(self, size: int, rank: int, world: int, *, shuffle: bool, seed: int, keyed: bool = False) -> None:
        self.size, self.rank, self.world = size, rank, world
        self.shuffle, self.seed = shuffle, seed
        self.keyed = keyed
        """Yield ``(index, epoch)`` keys (for datasets whose items depend on the epoch: augmentation).
        The key travels with the index to the loader's worker processes, so a persistent worker
        never needs to be told the epoch."""
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        padding = -len(order) % self.world
        return order + (order * (padding // max(len(order), 1) + 1))[:padding]

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        mine = self._order()[self.rank :: self.world]
        if self.keyed:
            return iter([(i, self.epoch) for i in mine])
        return iter(mine)

    def __len__(self) -> int:
        total = self.size + (-self.size % self.world if self.shuffle else 0)
        return len(range(self.rank, total, self.world))
