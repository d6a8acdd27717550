"""Stage 3: per fold and candidate, a head, its threshold, and the held-out groups' window scores."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from offline.calibrate import threshold_for_false_alarm_rate
from offline.crossval.config import CandidateSettings, CrossvalConfig
from offline.crossval.embed import GroupReplay
from offline.crossval.folds import Fold
from offline.crossval.head import balanced_weights, initial_head, subsample, train_head
from offline.crossval.stages import replay_policy
from offline.datasets import BONAFIDE
from streamdet.cm import Countermeasure
from streamdet.errors import ConfigError
from streamdet.stream.policy import StreamPolicy, spoof_probability

log = logging.getLogger(__name__)

Replays = Mapping[str, Mapping[str, GroupReplay]]
"""channel → group → replay."""


def row_labels(replay: GroupReplay) -> np.ndarray:
    """The class of every feature row of a replay (a row belongs to exactly one stream)."""
    labels = np.full(replay.features.shape[0], -1, np.int64)
    for stream in replay.streams:
        labels[stream.scores.astype(np.int64)] = stream.label
    return labels


def row_speech(replay: GroupReplay) -> np.ndarray:
    """The speech fraction of every feature row of a replay (NaN where it was not measured)."""
    speech = np.full(replay.features.shape[0], np.nan)
    for stream in replay.streams:
        if stream.speech.size == stream.scores.size:
            speech[stream.scores.astype(np.int64)] = stream.speech
    return speech


def counted_real(replay: GroupReplay, policy: StreamPolicy) -> np.ndarray:
    """Rows of real speech the alert rule counts: real windows the speech gate lets through. Gated
    windows can neither raise nor clear an alert, so they say nothing about false alerts and do not
    calibrate the threshold."""
    return (row_labels(replay) == BONAFIDE) & ~policy.are_gated(row_speech(replay))


def training_set(fold: Fold, replays: Replays, augmented: Mapping[str, Mapping[str, np.ndarray]],
                 use_augmented: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, labels and groups of a fold's training side: the replayed windows of its evaluated
    training groups under every channel, plus (``use_augmented``) augmented windows of all its
    training groups."""
    xs, ys, gs = [], [], []
    for by_group in replays.values():
        for group, replay in by_group.items():
            if group in fold.train_groups and replay.features.size:
                xs.append(replay.features)
                ys.append(row_labels(replay))
                gs += [group] * replay.features.shape[0]
    if use_augmented:
        for group, data in augmented.items():
            if group in fold.train_groups and data["features"].size:
                xs.append(data["features"])
                ys.append(data["labels"])
                gs += [group] * data["features"].shape[0]
    if not xs:
        raise ConfigError(f"fold {fold.index}: nothing to train on")
    return np.concatenate(xs), np.concatenate(ys), gs


@dataclass
class FoldScores:
    """One candidate on one fold: the spoof threshold and P(bona fide) per held-out (channel, group)."""

    spoof_threshold: float
    scores: dict[tuple[str, str], np.ndarray]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "scores.tmp.npz", **{f"{c}|{g}": v for (c, g), v in self.scores.items()})
        (directory / "scores.tmp.npz").replace(directory / "scores.npz")
        (directory / "threshold.json").write_text(json.dumps({"spoof_threshold": self.spoof_threshold}) + "\n")

    @staticmethod
    def load(directory: Path) -> FoldScores | None:
        if not (directory / "threshold.json").is_file() or not (directory / "scores.npz").is_file():
            return None
        threshold = json.loads((directory / "threshold.json").read_text())["spoof_threshold"]
        with np.load(directory / "scores.npz") as data:
            scores = {tuple(k.split("|", 1)): data[k] for k in data.files}
        return FoldScores(threshold, scores)  # type: ignore[arg-type]


def fold_dir(config: CrossvalConfig, fold: Fold, candidate: CandidateSettings) -> Path:
    return config.out / "folds" / str(fold.index) / candidate.name.replace("@", "-at-")


def calibration_threshold(p_bonafide_real: np.ndarray, target_far: float) -> float:
    return threshold_for_false_alarm_rate(spoof_probability(p_bonafide_real), target_far)


def fit_head(candidate: CandidateSettings, cm: Countermeasure, fold: Fold, replays: Replays,
             augmented: Mapping[str, Mapping[str, np.ndarray]]) -> tuple[torch.nn.Module, int, int]:
    """A candidate's head trained on a fold's training side; also the windows used (all, real)."""
    x, y, groups = training_set(fold, replays, augmented, candidate.head.augmented)
    keep = subsample(y.size, candidate.head.max_windows, y, candidate.head.seed)
    x, y, groups = x[keep], y[keep], [groups[i] for i in keep]
    weights = balanced_weights(y, groups) if candidate.head.balance_groups else np.ones(y.shape[0])
    head = train_head(initial_head(candidate.architecture, cm, candidate.head.seed), x, y, weights, candidate.head)
    return head, int(y.size), int((y == BONAFIDE).sum())


def _fixed_threshold(candidate: CandidateSettings, manifest_threshold: float | None) -> float | None:
    """The threshold a candidate that is not calibrated per fold runs at (None: calibrated per fold)."""
    if candidate.threshold == "train_fold":
        return None
    if candidate.retrain_head:
        raise ConfigError(f"{candidate.name}: a manifest or fixed threshold needs the CM's own head")
    if candidate.threshold == "manifest":
        if manifest_threshold is None:
            raise ConfigError(f"{candidate.name}: the CM's manifest has no calibrated threshold")
        return manifest_threshold
    return float(candidate.threshold)


def run_fold(config: CrossvalConfig, fold: Fold, candidate: CandidateSettings, cm: Countermeasure,
             manifest_threshold: float | None, replays: Replays,
             augmented: Mapping[str, Mapping[str, np.ndarray]]) -> FoldScores:
    """Train (or take) the candidate's head for one fold, calibrate it, score the held-out groups."""
    fixed = _fixed_threshold(candidate, manifest_threshold)
    directory = fold_dir(config, fold, candidate)
    done = FoldScores.load(directory)
    wanted = {(channel, g) for channel, by_group in replays.items() for g in by_group if g in fold.test_groups}
    if done is not None and set(done.scores) == wanted and fixed in (None, done.spoof_threshold):
        return done  # the same channels (and fixed threshold) as this run: reuse
    score = None
    if candidate.retrain_head:
        head, windows, real = fit_head(candidate, cm, fold, replays, augmented)
        score = head.p_bonafide
        log.info("fold %d %s: trained on %d windows (%d real)", fold.index, candidate.name, windows, real)

    def p_bonafide(replay: GroupReplay) -> np.ndarray:
        return replay.own_p_bonafide if score is None else score(replay.features)
    if fixed is not None:
        threshold = fixed
    else:
        calibration = replays[config.calibration_channel]
        policy = replay_policy(config)
        real = [p_bonafide(r)[counted_real(r, policy)] for g, r in calibration.items() if g in fold.train_groups]
        if not sum(r.size for r in real):
            raise ConfigError(f"fold {fold.index}: no real window of the training groups passes the speech gate "
                              f"(min_speech {policy.min_speech:g}); nothing to calibrate {candidate.name} on")
        threshold = calibration_threshold(np.concatenate(real), candidate.far(config))
    scores = {(channel, g): p_bonafide(r) for channel, by_group in replays.items()
              for g, r in by_group.items() if g in fold.test_groups}
    result = FoldScores(threshold, scores)
    result.save(directory)
    return result


def all_fold_scores(config: CrossvalConfig, folds: Sequence[Fold], candidate: CandidateSettings, cm: Countermeasure,
                    manifest_threshold: float | None, replays: Replays,
                    augmented: Mapping[str, Mapping[str, np.ndarray]]) -> list[FoldScores]:
    return [run_fold(config, f, candidate, cm, manifest_threshold, replays, augmented) for f in folds]
