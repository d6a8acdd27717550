"""The embedding exploration's own pieces: subsampled embedding rows, the mel filters, the grouped head."""

from __future__ import annotations

import numpy as np
import pytest

from offline.crossval.explore_embeddings import EveryNth, crossvalidate, slaney_mel_filterbank
from offline.crossval.folds import Fold


def test_every_nth_embeds_only_every_nth_row_across_batches() -> None:
    calls: list[int] = []

    def extractor(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(windows))
        return windows[:, :2].astype(np.float16), np.zeros(len(windows))

    trunk = EveryNth(extractor, 3)
    rows = np.arange(7, dtype=np.float32)[:, None].repeat(4, 1)
    first, _ = trunk(rows[:4])
    second, _ = trunk(rows[4:])
    features = np.concatenate([first, second]).astype(np.float32)
    kept = np.flatnonzero(~np.isnan(features[:, 0]))
    assert kept.tolist() == [0, 3, 6]
    assert features[kept, 0].tolist() == [0.0, 3.0, 6.0], "rows keep their own window's features"
    assert calls == [2, 1]


def test_slaney_filters_are_area_normalised_triangles_covering_the_band() -> None:
    filters = slaney_mel_filterbank(400, 40)
    assert filters.shape == (40, 201)
    assert (filters >= 0).all()
    assert (filters.max(1) > 0).all(), "no empty filter"
    peaks = filters.argmax(1)
    assert (np.diff(peaks) >= 0).all(), "filters ordered by frequency"
    # Slaney normalisation: every filter's area (in Hz) is about 1, so the narrow low filters are taller.
    areas = filters.sum(1) * (8000 / 200)
    assert areas[5:-1] == pytest.approx(1.0, rel=0.15)
    assert filters[1].max() > filters[-1].max()


def test_crossvalidate_separates_a_feature_that_marks_fakes_in_every_group() -> None:
    rng = np.random.default_rng(0)
    windows = {}
    for g in range(6):
        for label in (0, 1):
            x = rng.standard_normal((40, 5)).astype(np.float32)
            x[:, 0] += 4.0 * label  # the cue holds in unseen groups too
            x[:, 1] += g  # a group cue that must not matter
            windows[f"{label}-{g}"] = (x, np.full(40, label))
    names = sorted(windows)
    folds = [Fold(i, frozenset(names[i::3]), frozenset(set(names) - set(names[i::3]))) for i in range(3)]
    result = crossvalidate(windows, folds, slice(0, 5), hidden=0)
    assert result["eer"] < 5.0
    assert result["detected_at_1pct"] > 80.0
    assert result["real_windows"] == result["fake_windows"] == 240
