"""open_scorer: the backend follows from what --engine points at; mismatched manifests are refused."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamdet.errors import ManifestError
from streamdet.scoring import open_scorer
from streamdet.scoring.onnx_scorer import OnnxScorer
from streamdet.scoring.torch_scorer import TorchScorer


def copy_engine(src: Path, dst: Path, **changes) -> Path:
    """A copy of an engine directory with manifest fields changed."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.update(changes)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_cm_directory_gives_torch(random_mel_cm: Path):
    assert isinstance(open_scorer(random_mel_cm, device="cpu"), TorchScorer)
    assert isinstance(open_scorer(random_mel_cm / "manifest.json", device="cpu"), TorchScorer)


@pytest.mark.parametrize("target", ["model.onnx", ".", "manifest.json"])
def test_onnx_engine_file_or_directory(mel_onnx_engine: Path, target: str):
    scorer = open_scorer(mel_onnx_engine / target, device="cpu")
    assert isinstance(scorer, OnnxScorer)
    assert scorer.model_id.endswith(":onnx-fp32") and scorer.contract.window_samples == 64600


def test_contract_is_checked_when_given(mel_onnx_engine: Path):
    open_scorer(mel_onnx_engine, device="cpu", sample_rate=16000, window_samples=64600)
    with pytest.raises(ManifestError, match="64600 samples at 16000 Hz.*32000 samples at 16000 Hz"):
        open_scorer(mel_onnx_engine, device="cpu", sample_rate=16000, window_samples=32000)
    with pytest.raises(ManifestError, match="8000 Hz"):
        open_scorer(mel_onnx_engine, device="cpu", sample_rate=8000)


def test_manifest_that_disagrees_with_the_graph_is_refused(mel_onnx_engine: Path, tmp_path: Path):
    bad = copy_engine(mel_onnx_engine, tmp_path / "bad_window", window_samples=48000)
    with pytest.raises(ManifestError, match="shape"):
        open_scorer(bad / "model.onnx", device="cpu")
    renamed = copy_engine(mel_onnx_engine, tmp_path / "bad_input", input_name="audio")
    with pytest.raises(ManifestError, match="no input 'audio'"):
        open_scorer(renamed, device="cpu")
    order = copy_engine(mel_onnx_engine, tmp_path / "bad_order", class_order=["spoof", "bonafide"])
    with pytest.raises(ManifestError, match="class order"):
        open_scorer(order, device="cpu", sample_rate=16000, window_samples=64600)


def test_tampered_or_foreign_engine_file_is_refused(mel_onnx_engine: Path, tmp_path: Path):
    tampered = copy_engine(mel_onnx_engine, tmp_path / "tampered")
    with open(tampered / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestError, match="file_sha256"):
        open_scorer(tampered / "model.onnx", device="cpu")
    other = copy_engine(mel_onnx_engine, tmp_path / "other")
    (other / "model.onnx").rename(other / "other.onnx")
    with pytest.raises(ManifestError, match="describes model.onnx, not other.onnx"):
        open_scorer(other / "other.onnx", device="cpu")


def test_plan_files_go_to_tensorrt(mel_onnx_engine: Path, tmp_path: Path):
    plan_dir = copy_engine(
        mel_onnx_engine, tmp_path / "plan", engine="tensorrt", file="model.plan", precision="fp16",
        tensorrt={"version": "10.9.0", "gpu_name": "NVIDIA H100 80GB HBM3",
                  "profile": {"min": 1, "opt": 8, "max": 32}},
    )
    (plan_dir / "model.plan").write_bytes(b"plan")
    if importlib.util.find_spec("tensorrt") is None:
        expected = "TensorRT is not installed"
    else:
        expected = "CUDA|built"
    for target in (plan_dir / "model.plan", plan_dir):
        with pytest.raises(ManifestError, match=expected):
            open_scorer(target)


def test_onnx_file_beside_a_tensorrt_manifest_is_refused(mel_onnx_engine: Path, tmp_path: Path):
    engine = copy_engine(mel_onnx_engine, tmp_path / "trt", engine="tensorrt", file="model.onnx",
                         tensorrt={"version": "10.9", "gpu_name": "x", "profile": {}})
    with pytest.raises(ManifestError, match="tensorrt engine, not ONNX"):
        open_scorer(engine / "model.onnx", device="cpu")


def test_what_is_not_an_engine(tmp_path: Path, random_mel_cm: Path):
    with pytest.raises(ManifestError, match="does not exist"):
        open_scorer(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ManifestError, match="don't know how"):
        open_scorer(tmp_path / "notes.txt")
    triton_model = tmp_path / "repo" / "mel"
    triton_model.mkdir(parents=True)
    (triton_model / "config.pbtxt").write_text('name: "mel"')
    with pytest.raises(ManifestError, match="triton://HOST:PORT/mel"):
        open_scorer(triton_model)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(ManifestError, match="not a CM or a local engine"):
        open_scorer(tmp_path / "odd")


def test_triton_url_selects_the_triton_scorer(monkeypatch):
    import streamdet.scoring.triton_scorer as triton_scorer

    seen = []

    class Fake:
        def __init__(self, url: str, max_batch: int) -> None:
            seen.append(url)

    monkeypatch.setattr(triton_scorer, "TritonScorer", Fake)
    open_scorer("triton://127.0.0.1:8001/mel")
    assert seen == ["triton://127.0.0.1:8001/mel"]


def test_scores_of_every_local_backend_agree(random_mel_cm: Path, mel_onnx_engine: Path):
    from offline.export.common import verification_windows

    windows = verification_windows(batch=3, seed=5)
    torch_scores = open_scorer(random_mel_cm, device="cpu").score_batch(windows)
    onnx_scores = open_scorer(mel_onnx_engine, device="cpu", max_batch=2).score_batch(windows)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-4)
