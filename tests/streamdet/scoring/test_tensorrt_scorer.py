"""TensorRTScorer: plan compatibility checks and batch chunking (TensorRT itself only where installed)."""

from __future__ import annotations

import importlib.util

import pytest

from streamdet.errors import ManifestError
from streamdet.manifest import BatchProfile, CMManifest, EngineManifest, TensorRTInfo
from streamdet.scoring.tensorrt_scorer import batch_chunks, check_plan_compatible, major_minor

H100 = "NVIDIA H100 80GB HBM3"


def plan_manifest(version: str = "10.9.0.34", gpu: str = H100) -> EngineManifest:
    return EngineManifest(
        name="mel", engine="tensorrt", file="model.plan", precision="fp16",
        cm=CMManifest(name="mel", architecture="mel_lcnn"),
        tensorrt=TensorRTInfo(version=version, gpu_name=gpu, profile=BatchProfile(min=2, opt=8, max=16)),
    )


def test_compatible_plan_passes():
    check_plan_compatible(plan_manifest(), "10.9.1", H100)
    assert major_minor("10.13.0.35") == (10, 13)


def test_other_release_or_gpu_is_refused():
    with pytest.raises(ManifestError, match="TensorRT 10.9.0.34, this is TensorRT 10.13.0"):
        check_plan_compatible(plan_manifest(), "10.13.0", H100)
    with pytest.raises(ManifestError, match="built for NVIDIA H100 80GB HBM3, this GPU is NVIDIA L4"):
        check_plan_compatible(plan_manifest(), "10.9.0", "NVIDIA L4")
    onnx = plan_manifest().model_copy(update={"engine": "onnx", "tensorrt": None})
    with pytest.raises(ManifestError, match="not a TensorRT plan"):
        check_plan_compatible(onnx, "10.9.0", H100)


def test_batches_fit_the_profile():
    profile = BatchProfile(min=2, opt=8, max=16)
    assert batch_chunks(40, profile, max_batch=64) == [(0, 16, 16), (16, 32, 16), (32, 40, 8)]
    assert batch_chunks(5, profile, max_batch=4) == [(0, 4, 4), (4, 5, 2)]  # the last one padded to min
    assert batch_chunks(1, BatchProfile(), max_batch=64) == [(0, 1, 1)]
    assert batch_chunks(0, profile, max_batch=4) == []


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_missing_tensorrt_is_a_clear_error(tmp_path):
    from streamdet.scoring.tensorrt_scorer import TensorRTScorer

    with pytest.raises(ManifestError, match=r"streamdet\[tensorrt\]"):
        TensorRTScorer(tmp_path / "model.plan")
