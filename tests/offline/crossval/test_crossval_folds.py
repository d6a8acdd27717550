"""Grouped folds: whole sources and systems held out, never a group on both sides of a fold."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline.crossval.folds import Fold, check_folds, make_folds
from offline.datasets import BONAFIDE, SPOOF
from offline.recipes.field import FieldClip
from streamdet.errors import ConfigError


def _clips() -> list[FieldClip]:
    clips = []
    for i in range(12):  # real sources of very different sizes
        clips += [FieldClip(Path(f"/r{i}/{j}.flac"), BONAFIDE, f"real{i}", "field-data", 1.0 + i) for j in range(1 + i)]
    for i in range(28):
        clips += [FieldClip(Path(f"/f{i}/{j}.flac"), SPOOF, f"sys{i}", "field-data", 2.0) for j in range(1 + i % 5)]
    clips += [FieldClip(Path(f"/a/{j}.wav"), BONAFIDE, "asterisk-en", "asterisk", 1.0) for j in range(5)]
    return clips


def test_no_group_is_both_trained_on_and_held_out_and_each_is_held_out_once() -> None:
    clips = _clips()
    folds = make_folds(clips, 5, seed=3)
    assert len(folds) == 5
    held_out: list[str] = []
    for fold in folds:
        assert not fold.test_groups & fold.train_groups
        train_paths = {c.path for c in fold.train(clips)}
        assert not train_paths & {c.path for c in fold.test(clips)}
        labels = {c.label for c in fold.test(clips)}
        assert labels == {BONAFIDE, SPOOF}, "every fold holds out real speech and fakes"
        held_out += sorted(fold.test_groups)
    evaluated = {c.group for c in clips if c.origin == "field-data"}
    assert sorted(held_out) == sorted(evaluated)
    assert all("asterisk-en" in f.train_groups for f in folds), "other origins always train"


def test_folds_are_balanced_by_seconds_and_deterministic() -> None:
    clips = _clips()
    folds = make_folds(clips, 5, seed=0)
    assert [f.test_groups for f in folds] == [f.test_groups for f in make_folds(clips, 5, seed=0)]
    real_seconds = [sum(c.seconds for c in f.test(clips) if c.label == BONAFIDE) for f in folds]
    assert max(real_seconds) - min(real_seconds) <= max(c.seconds for c in clips) * 12


def test_too_few_groups_and_overlapping_folds_are_refused() -> None:
    clips = [c for c in _clips() if c.group in {"real0", "real1", "sys0", "sys1", "sys2"}]
    with pytest.raises(ConfigError, match="2 real sources cannot fill 5 folds"):
        make_folds(clips, 5)
    with pytest.raises(ConfigError, match="both trained on and held out"):
        check_folds([Fold(0, frozenset({"a"}), frozenset({"a", "b"}))])
    with pytest.raises(ConfigError, match="held out by two folds"):
        check_folds([Fold(0, frozenset({"a"}), frozenset({"b"})), Fold(1, frozenset({"a"}), frozenset({"c"}))])
