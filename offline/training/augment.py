"""Training-time augmentation of raw windows: random crop, gain, and a telephone channel per example.

Deterministic by construction: item ``i`` in epoch ``e`` draws everything from
``numpy.random.default_rng([seed, e, i])``, whatever the worker, batch or process that loads it, so
an exactly resumed run sees exactly the same audio, and every epoch sees new draws. The sampler hands
the dataset ``(index, epoch)`` keys (``ShardSampler(keyed=True)``); a bare index means epoch 0, which
is also the one fixed draw validation items get.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from offline.channels import apply_channel
from offline.datasets import Utterance
from offline.training.config import AugmentConfig
from streamdet.audio import WINDOW_SAMPLES, fix_length, load_audio


@dataclass(frozen=True)
class Draw:
    """What one example got (for tests and logs)."""

    crop_start: int
    gain_db: float
    channel: str


def draw_window(
    audio: np.ndarray, augment: AugmentConfig, rng: np.random.Generator, window: int = WINDOW_SAMPLES
) -> tuple[np.ndarray, Draw]:
    """One augmented ``window``-sample input from a whole clip (16 kHz mono float32)."""
    start = 0
    if augment.random_crop and audio.shape[0] > window:
        start = int(rng.integers(0, audio.shape[0] - window + 1))
    x = fix_length(audio[start:], window).astype(np.float32, copy=True)
    gain = 0.0
    if augment.gain_db is not None:
        gain = float(rng.uniform(*augment.gain_db))
        x = np.clip(x * np.float32(10.0 ** (gain / 20.0)), -1.0, 1.0).astype(np.float32)
    channel = "wideband"
    if augment.channels and rng.random() < augment.probability:
        channel = augment.channels[int(rng.integers(len(augment.channels)))]
        x = apply_channel(channel, x, rng)
    return x, Draw(start, gain, channel)


class AugmentedWaveformDataset(Dataset):
    """Like ``WaveformDataset`` (a 64,600-sample window per clip), drawn anew per (item, epoch)."""

    def __init__(self, utterances: list[Utterance], augment: AugmentConfig, seed: int,
                 window: int = WINDOW_SAMPLES) -> None:
        self.utterances = utterances
        self.augment = augment
        self.seed = seed
        self.window = window

    def __len__(self) -> int:
        return len(self.utterances)

    def item(self, index: int, epoch: int = 0) -> tuple[np.ndarray, int, Draw]:
        utterance = self.utterances[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        x, draw = draw_window(load_audio(utterance.path), self.augment, rng, self.window)
        return x, utterance.label, draw

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        x, label, _draw = self.item(int(index), int(epoch))
        return torch.from_numpy(x), label
