"""OnnxScorer: ONNX Runtime behind the Scorer interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offline.export.common import verification_windows
from streamdet.errors import ManifestError
from streamdet.scoring.onnx_scorer import CPU_PROVIDER, CUDA_PROVIDER, OnnxScorer, choose_providers
from streamdet.scoring.torch_scorer import TorchScorer


def test_providers():
    assert choose_providers("cpu", [CUDA_PROVIDER, CPU_PROVIDER]) == [CPU_PROVIDER]
    assert choose_providers("auto", [CPU_PROVIDER]) == [CPU_PROVIDER]
    assert choose_providers("auto", [CUDA_PROVIDER, CPU_PROVIDER]) == [CUDA_PROVIDER, CPU_PROVIDER]
    assert choose_providers("cuda:0", [CUDA_PROVIDER, CPU_PROVIDER])[0] == CUDA_PROVIDER
    with pytest.raises(ManifestError, match="onnxruntime-gpu"):
        choose_providers("cuda", [CPU_PROVIDER])
    with pytest.raises(ManifestError, match="unknown device"):
        choose_providers("tpu", [CPU_PROVIDER])


async def test_sync_and_async_scores_match_torch(mel_onnx_engine: Path, random_mel_cm: Path):
    scorer = OnnxScorer(mel_onnx_engine / "model.onnx", device="cpu", max_batch=2, threads=1)
    windows = verification_windows(batch=5, seed=3)
    expected = TorchScorer(random_mel_cm, device="cpu").score_batch(windows)
    got = scorer.score_batch(windows)  # three ONNX Runtime calls: 2 + 2 + 1
    assert got.shape == (5,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(await scorer.score(windows), got, atol=1e-7)
    assert scorer.score_batch(np.zeros((0, 64600), np.float32)).shape == (0,)
    scorer.warmup()


def test_wrong_window_shape_is_an_error(mel_onnx_engine: Path):
    scorer = OnnxScorer(mel_onnx_engine / "model.onnx", device="cpu")
    with pytest.raises(ValueError, match="64600"):
        scorer.score_batch(np.zeros((1, 16000), np.float32))
