"""TorchScorer's fast paths keep the scores of the plain CM (within 1e-4, the test vectors' tolerance, paper recipe §4)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdet.bench.models import random_countermeasure
from streamdet.bench.reference import comparison_windows
from streamdet.errors import ConfigError
from streamdet.scoring.torch_scorer import TorchScorer, graph_batch_size


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return comparison_windows(5)


def plain_probabilities(cm, windows: np.ndarray) -> np.ndarray:
    """The CM as ``Countermeasure.bonafide_probability`` computes it: NCHW, fp32, one call."""
    return cm.bonafide_probability(torch.from_numpy(windows)).numpy()


def test_channels_last_lcnn_matches_the_plain_cm(windows: np.ndarray):
    cm = random_countermeasure("mel_lcnn")
    expected = plain_probabilities(copy.deepcopy(cm), windows)
    scorer = TorchScorer.from_cm(cm, max_batch=2)
    assert scorer.channels_last  # the CPU default for LCNN backends
    assert cm.backend.conv3[0].weight.is_contiguous(memory_format=torch.channels_last)
    got = scorer.score_batch(windows)  # three calls of at most two windows
    assert got.shape == (5,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.ptp(expected) > 0.1  # the random head spreads probabilities, so agreement means something


def test_layout_can_be_chosen(mel_cm_dir: Path, windows: np.ndarray):
    nchw = TorchScorer(mel_cm_dir, device="cpu", channels_last=False)
    fast = TorchScorer(mel_cm_dir, device="cpu")
    assert not nchw.channels_last and fast.channels_last
    np.testing.assert_allclose(fast.score_batch(windows), nchw.score_batch(windows), atol=1e-5)


def test_threads_setting_is_applied():
    before = torch.get_num_threads()
    try:
        scorer = TorchScorer.from_cm(random_countermeasure("mel_lcnn"), threads=1)
        assert scorer.threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cuda_only_options_are_refused_on_cpu():
    cm = random_countermeasure("mel_lcnn")
    with pytest.raises(ConfigError, match="CUDA graphs"):
        TorchScorer.from_cm(cm, cuda_graphs=True)
    with pytest.raises(ConfigError, match="fp16"):
        TorchScorer.from_cm(cm, fp16=True)


def test_graph_batch_size_buckets():
    assert [graph_batch_size(n, 64) for n in (1, 2, 3, 5, 16, 17, 64)] == [1, 2, 4, 8, 16, 32, 64]
    assert graph_batch_size(40, 48) == 48
    with pytest.raises(ValueError):
        graph_batch_size(0, 8)


def test_aasist_backend_keeps_its_layout(tiny_xlsr_dir: Path, windows: np.ndarray):
    cm = random_countermeasure("w2v2_aasist", w2v2_source=str(tiny_xlsr_dir))
    expected = plain_probabilities(copy.deepcopy(cm), windows[:2])
    scorer = TorchScorer.from_cm(cm)
    assert not scorer.channels_last
    np.testing.assert_allclose(scorer.score_batch(windows[:2]), expected, atol=1e-5)


def test_workers_split_a_batch_and_keep_its_order(windows: np.ndarray):
    cm = random_countermeasure("mel_lcnn")
    expected = plain_probabilities(copy.deepcopy(cm), windows)
    before = torch.get_num_threads()
    try:
        scorer = TorchScorer.from_cm(cm, max_batch=4, workers=2, threads=1)
        assert scorer.workers == 2 and scorer.threads == 1
        np.testing.assert_allclose(scorer.score_batch(windows), expected, atol=1e-5)  # 4 + 1 windows
        np.testing.assert_allclose(scorer.score_batch(windows[:1]), expected[:1], atol=1e-5)
        scorer.close()
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError):
        TorchScorer.from_cm(cm, workers=0)
