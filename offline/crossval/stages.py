"""The resumable stages of a cross-validation run, each writing under ``config.out``.

1. ``replay``: every evaluated group under every channel, through the trunk (``embed/<channel>/``);
2. ``augment``: augmented training windows of every group, through the trunk (``embed/augmented/``);
3. per fold and candidate: head training (``folds/<k>/<candidate>/head.pt``), calibration on the
   training groups, scores of the held-out groups (``scores.npz``);
4. the pooled report (``report.py``).

A file that exists is read back instead of recomputed, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from offline.crossval.config import CrossvalConfig
from offline.crossval.embed import GroupReplay, LogMelTrunk, Trunk, TrunkLike, replay_group
from offline.datasets import BONAFIDE
from offline.recipes.field import FieldClip
from offline.training.field_augment import FieldAugmenter
from streamdet.audio import WINDOW_SAMPLES, fix_length, load_audio
from streamdet.stream.policy import StreamPolicy

log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


TRUNKS = ("cm", "logmel")
"""``cm``: the config's CM up to its head (``embed/``); ``logmel``: log-mel for CMs trained from
scratch (``embed-logmel/``)."""


def embed_dir(config: CrossvalConfig, kind: str) -> Path:
    return config.out / ("embed" if kind == "cm" else f"embed-{kind}")


def trunk_loader(config: CrossvalConfig, kind: str) -> Callable[[], TrunkLike]:
    return (lambda: Trunk.load(config.cm)) if kind == "cm" else LogMelTrunk


def replay_path(config: CrossvalConfig, channel: str, group: str, kind: str = "cm") -> Path:
    return embed_dir(config, kind) / channel / f"{_safe(group)}.pkl"


def evaluated_groups(config: CrossvalConfig, clips: Sequence[FieldClip]) -> list[str]:
    return sorted({c.group for c in clips if c.origin in config.evaluate_origins})


def replay_policy(config: CrossvalConfig) -> StreamPolicy:
    """The service's default window geometry, k/n/m and speech gate (unless the config sets its own);
    the threshold is set per candidate later."""
    return StreamPolicy() if config.min_speech is None else StreamPolicy(min_speech=config.min_speech)


def run_replays(config: CrossvalConfig, clips: Sequence[FieldClip], trunk: TrunkLike | Callable[[], TrunkLike],
                channels: Sequence[str] | None = None, kind: str = "cm") -> None:
    """Stage 1: replay every evaluated group under each channel (skipping groups already stored)."""
    for channel in channels or config.channels:
        for group in evaluated_groups(config, clips):
            path = replay_path(config, channel, group, kind)
            if path.is_file():
                continue
            if not isinstance(trunk, Trunk | LogMelTrunk):
                trunk = trunk()
            members = [c for c in clips if c.group == group]
            result = replay_group(trunk, group, members, replay_policy(config), channel,
                                  real_call_seconds=60 * config.real_call_minutes,
                                  fake_call_seconds=60 * config.fake_call_minutes, seed=config.seed)
            result.save(path)
            log.info("replayed %s (%s): %d streams, %d windows", group, channel, len(result.streams),
                     result.features.shape[0])


def load_replays(config: CrossvalConfig, clips: Sequence[FieldClip], channel: str,
                 kind: str = "cm") -> dict[str, GroupReplay]:
    return {g: GroupReplay.load(replay_path(config, channel, g, kind)) for g in evaluated_groups(config, clips)}



# ---------------------------------------------------------------------------------------------
# Stage 2: augmented training windows


def augmented_path(config: CrossvalConfig, group: str, kind: str = "cm") -> Path:
    return embed_dir(config, kind) / "augmented" / f"{_safe(group)}.npz"


def _clip_rng(seed: int, clip: FieldClip, draw: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(clip.utt_id.encode("utf-8")), draw])


def babble_pool(clips: Sequence[FieldClip], group: str, evaluate_origins: Sequence[str], size: int,
                seed: int) -> list[FieldClip]:
    """Real clips babble for ``group`` is made of: its own real clips and real clips of groups that
    always train, i.e. clips that are on the training side of every fold ``group`` trains in."""
    own = [c for c in clips if c.group == group and c.label == BONAFIDE]
    always = [c for c in clips if c.label == BONAFIDE and c.origin not in evaluate_origins]
    rng = np.random.default_rng([seed, zlib.crc32(group.encode("utf-8"))])
    pick = lambda items, n: [items[i] for i in rng.permutation(len(items))[:n]]  # noqa: E731
    return pick(own, size // 2) + pick(always, size - min(len(own), size // 2))


def run_augmented(config: CrossvalConfig, clips: Sequence[FieldClip], trunk: TrunkLike | Callable[[], TrunkLike],
                  batch: int = 32, kind: str = "cm") -> None:
    """Stage 2: ``windows_per_clip`` augmented windows of up to ``max_clips_per_group`` clips per group."""
    settings = config.augment
    if settings.windows_per_clip == 0:
        return
    for group in sorted({c.group for c in clips}):
        path = augmented_path(config, group, kind)
        if path.is_file():
            continue
        if not isinstance(trunk, Trunk | LogMelTrunk):
            trunk = trunk()
        members = [c for c in clips if c.group == group]
        order = np.random.default_rng([settings.seed, zlib.crc32(group.encode("utf-8"))]).permutation(len(members))
        members = [members[i] for i in order[: settings.max_clips_per_group]]
        pool = [load_audio(c.path) for c in babble_pool(clips, group, config.evaluate_origins, 12, settings.seed)]
        augmenter = FieldAugmenter(babble_sources=pool)
        windows, labels, steps = [], [], []
        for clip in members:
            audio = load_audio(clip.path)
            for draw in range(settings.windows_per_clip):
                rng = _clip_rng(settings.seed, clip, draw)
                start = int(rng.integers(0, max(audio.shape[0] - WINDOW_SAMPLES, 0) + 1))
                x, done = augmenter(fix_length(audio[start:], WINDOW_SAMPLES), rng)
                windows.append(x)
                labels.append(clip.label)
                steps.append("+".join(done) or "none")
        features = [trunk(np.stack(windows[i : i + batch]))[0] for i in range(0, len(windows), batch)]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, features=np.concatenate(features), labels=np.asarray(labels, np.int64),
                 steps=np.asarray(steps))
        tmp.replace(path)
        log.info("augmented %s: %d windows", group, len(windows))


def load_augmented(config: CrossvalConfig, groups: Sequence[str], kind: str = "cm") -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for group in groups:
        path = augmented_path(config, group, kind)
        if path.is_file():
            with np.load(path) as data:
                out[group] = {k: data[k] for k in data.files}
    return out
