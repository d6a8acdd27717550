"""TensorRT export: everything around the builder (TensorRT itself only where it is installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import ValidationError

from offline.export.tensorrt import (
    fp32_layer_indices,
    make_profile,
    profile_shapes,
    tensorrt_manifest,
)
from streamdet.errors import ExportError
from streamdet.manifest import MANIFEST_NAME, BatchProfile, EngineManifest, TensorRTInfo, read_manifest

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_profile_defaults_and_shapes():
    assert make_profile(64) == BatchProfile(min=1, opt=16, max=64)
    assert make_profile(8) == BatchProfile(min=1, opt=8, max=8)
    assert make_profile(6) == BatchProfile(min=1, opt=4, max=6)
    assert make_profile(256, opt_batch=32, min_batch=2) == BatchProfile(min=2, opt=32, max=256)
    assert profile_shapes(BatchProfile(min=1, opt=16, max=64), 64600) == ((1, 64600), (16, 64600), (64, 64600))


@pytest.mark.parametrize("bounds", [(0, 1, 1), (4, 2, 8), (1, 16, 8)])
def test_invalid_profiles_are_refused(bounds):
    low, opt, high = bounds
    with pytest.raises(ValidationError):
        BatchProfile(min=low, opt=opt, max=high)
    if low >= 1:
        with pytest.raises(ExportError, match="profile"):
            make_profile(high, opt, low)


def test_fp16_keeps_front_end_and_normalisation_in_fp32():
    # A mel-LCNN-like network: front-end, first conv, MFM, then the first BatchNorm (a SCALE layer).
    mel = ["PADDING", "CONSTANT", "CONVOLUTION", "SLICE", "SLICE", "ELEMENTWISE", "ELEMENTWISE",
           "MATRIX_MULTIPLY", "SHUFFLE", "CONVOLUTION", "ELEMENTWISE", "POOLING", "SCALE", "CONVOLUTION", "SCALE"]
    assert fp32_layer_indices(mel) == [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    # W2V2: waveform normalisation and the first conv, then LayerNorm (NORMALIZATION) everywhere after.
    w2v2 = ["REDUCE", "ELEMENTWISE", "UNARY", "CONVOLUTION", "NORMALIZATION", "ACTIVATION",
            "MATRIX_MULTIPLY", "SOFTMAX", "NORMALIZATION", "MATRIX_MULTIPLY"]
    assert fp32_layer_indices(w2v2) == [0, 1, 2, 3, 4, 8]
    assert fp32_layer_indices([]) == []


def test_tensorrt_manifest_extends_the_onnx_one(mel_onnx_engine: Path, tmp_path: Path):
    onnx_manifest = read_manifest(mel_onnx_engine / MANIFEST_NAME, EngineManifest)
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really a plan")
    info = TensorRTInfo(version="10.9.0.34", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                        profile=make_profile(128), workspace_bytes=4 << 30, fp32_layers=12)
    manifest = tensorrt_manifest(onnx_manifest, plan, info, fp16=True)
    assert (manifest.engine, manifest.file, manifest.precision) == ("tensorrt", "model.plan", "fp16")
    assert manifest.tensorrt == info and manifest.tensorrt.profile.max == 128
    assert manifest.file_sha256 != onnx_manifest.file_sha256 and manifest.cm == onnx_manifest.cm
    assert manifest.model_id.endswith(":tensorrt-fp16")
    # Round trip through JSON, as the scorer reads it.
    assert EngineManifest.model_validate_json(manifest.model_dump_json()) == manifest


def test_tensorrt_manifest_needs_its_section(mel_onnx_engine: Path):
    onnx_manifest = read_manifest(mel_onnx_engine / MANIFEST_NAME, EngineManifest)
    data = onnx_manifest.model_dump(mode="json") | {"engine": "tensorrt"}
    with pytest.raises(ValidationError, match="tensorrt section"):
        EngineManifest.model_validate(data)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_export_without_tensorrt_says_how_to_get_it(random_mel_cm: Path, tmp_path: Path, capsys):
    from offline.cli import main

    assert main(["export", str(random_mel_cm), "--format", "tensorrt", "--out", str(tmp_path / "trt")]) == 2
    assert "streamdet[tensorrt]" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed (pip install 'streamdet[tensorrt]')")
@pytest.mark.parametrize("fp16", [False, True])
def test_build_and_score_a_plan(random_mel_cm: Path, tmp_path: Path, fp16: bool):
    if not has_cuda():
        pytest.skip("TensorRT needs a CUDA GPU")
    from offline.export.tensorrt import export_tensorrt
    from streamdet.scoring import open_scorer

    manifest = export_tensorrt(random_mel_cm, tmp_path / "trt", fp16=fp16, profile=make_profile(8),
                               timing_cache=tmp_path / "timing.cache")
    assert manifest.verification["max_abs_prob_diff"] <= (1e-2 if fp16 else 1e-3)
    assert (tmp_path / "timing.cache").is_file()
    scorer = open_scorer(tmp_path / "trt" / "model.plan")
    assert scorer.model_id == manifest.model_id and scorer.max_batch == 8
