"""Grouped folds: whole real sources and whole fake systems are held out together, never single clips.

Groups of the evaluated origins are dealt to ``k`` folds, real groups and fake groups separately (so
that every fold holds out both real speech and fakes), largest first, each to the fold that holds the
fewest seconds of its label so far (ties: the fold with fewer groups, then the lower fold number).
A seeded shuffle before the stable size sort breaks ties between equal groups. Groups of other
origins (``always_train``) are in the training part of every fold and never evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from offline.datasets import BONAFIDE, SPOOF
from offline.recipes.field import FieldClip
from streamdet.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    index: int
    test_groups: frozenset[str]
    train_groups: frozenset[str]

    def test(self, clips: Sequence[FieldClip]) -> list[FieldClip]:
        return [c for c in clips if c.group in self.test_groups]

    def train(self, clips: Sequence[FieldClip]) -> list[FieldClip]:
        return [c for c in clips if c.group in self.train_groups]


def group_label(clips: Sequence[FieldClip], group: str) -> int:
    """A group's label: the label of its clips (a group mixing both counts as real for dealing)."""
    labels = {c.label for c in clips if c.group == group}
    return SPOOF if labels == {SPOOF} else BONAFIDE


def make_folds(clips: Sequence[FieldClip], k: int, seed: int = 0,
               evaluate_origins: Sequence[str] = ("field-data",)) -> list[Fold]:
    """``k`` folds over the groups of ``evaluate_origins``; every other group always trains."""
    if k < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {k}")
    seconds: dict[str, float] = {}
    for c in clips:
        if c.origin in evaluate_origins:
            seconds[c.group] = seconds.get(c.group, 0.0) + c.seconds
    all_groups = {c.group for c in clips}
    assigned: dict[int, list[str]] = {i: [] for i in range(k)}
    for label in (BONAFIDE, SPOOF):
        groups = sorted(g for g in seconds if group_label(clips, g) == label)
        if 0 < len(groups) < k:
            kind = "real sources" if label == BONAFIDE else "fake systems"
            raise ConfigError(f"{len(groups)} {kind} cannot fill {k} folds; use fewer folds")
        rng = np.random.default_rng([seed, label])
        groups = [groups[i] for i in rng.permutation(len(groups))]
        groups.sort(key=lambda g: -seconds[g])
        load = [0.0] * k
        count = [0] * k
        for g in groups:
            fold = min(range(k), key=lambda i: (load[i], count[i], i))
            assigned[fold].append(g)
            load[fold] += seconds[g]
            count[fold] += 1
    folds = [Fold(i, frozenset(assigned[i]), frozenset(all_groups - set(assigned[i]))) for i in range(k)]
    check_folds(folds)
    return folds


def check_folds(folds: Sequence[Fold]) -> None:
    """Refuse folds in which a group is both trained on and tested, or tested twice."""
    seen: set[str] = set()
    for fold in folds:
        both = fold.test_groups & fold.train_groups
        if both:
            raise ConfigError(f"fold {fold.index}: {sorted(both)} both trained on and held out")
        twice = fold.test_groups & seen
        if twice:
            raise ConfigError(f"fold {fold.index}: {sorted(twice)} held out by two folds")
        seen |= fold.test_groups
