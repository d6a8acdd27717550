"""ONNX export: one graph per CM, checked with ONNX Runtime (CPU) against the torch CM to 1e-4."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from offline.export.common import load_source_cm, verification_windows
from offline.export.onnx import export_onnx
from streamdet.audio import load_window
from streamdet.cm import Countermeasure, load_cm
from streamdet.errors import ExportError
from streamdet.manifest import MANIFEST_NAME, EngineManifest, read_manifest

TOLERANCE = 1e-4
REFERENCE_ENV = "STREAMDET_REFERENCE_DATA"  # as in tests/conftest.py
# Two fakes and two reals from ALM-ADD: the released CMs score them far apart.
CLIPS = [
    "alm-add/audio/AudioLM/speech_0944c955-dc0b-4c87-a006-02d0f12adeec_fake.wav",
    "alm-add/audio/AudioLM/speech_0944c955-dc0b-4c87-a006-02d0f12adeec_real.wav",
    "alm-add/audio/HAM_TTS/speech_ground_truth_BAC009S0764W0158_real.wav",
    "alm-add/audio/AudioLM/speech_103583eb-3eb9-488b-a591-3ffac262c810_fake.wav",
]


def run_onnx(path: Path, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, bonafide_prob) from ONNX Runtime on CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, prob = session.run(["logits", "bonafide_prob"], {"waveform": windows})
    return logits, prob


def assert_equivalent(cm: Countermeasure, engine_dir: Path, windows: np.ndarray) -> None:
    """ONNX Runtime's probabilities within 1e-4 of the torch CM's, logits to float tolerance."""
    with torch.inference_mode():
        expected_logits = cm(torch.from_numpy(windows))
        expected = torch.softmax(expected_logits, dim=-1)[:, 0].numpy()
    logits, prob = run_onnx(engine_dir / "model.onnx", windows)
    np.testing.assert_allclose(prob, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(logits, expected_logits.numpy(), rtol=1e-3, atol=1e-3)


def test_mel_export_writes_graph_and_manifest(mel_onnx_engine: Path, random_mel_cm: Path):
    assert sorted(p.name for p in mel_onnx_engine.iterdir()) == ["manifest.json", "model.onnx"]
    manifest = read_manifest(mel_onnx_engine / MANIFEST_NAME, EngineManifest)
    cm_manifest = json.loads((random_mel_cm / MANIFEST_NAME).read_text())
    assert (manifest.engine, manifest.file, manifest.precision, manifest.opset) == ("onnx", "model.onnx", "fp32", 18)
    assert manifest.source_cm_sha256 == cm_manifest["weights_sha256"] == manifest.cm.weights_sha256
    assert (manifest.sample_rate, manifest.window_samples) == (16000, 64600)
    assert manifest.output_names == ("logits", "bonafide_prob")
    assert manifest.verification["max_abs_prob_diff"] <= TOLERANCE
    assert manifest.model_id == f"random_mel@{cm_manifest['weights_sha256'][:12]}:onnx-fp32"

    graph = onnx.load(str(mel_onnx_engine / "model.onnx"))
    onnx.checker.check_model(graph)
    (inp,) = graph.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "waveform" and dims[1] == 64600 and isinstance(dims[0], str)  # dynamic batch
    assert [o.name for o in graph.graph.output] == ["logits", "bonafide_prob"]
    assert not any(node.op_type in ("STFT", "DFT") for node in graph.graph.node)  # TensorRT-friendly


def test_mel_onnx_matches_torch_at_any_batch_size(mel_onnx_engine: Path, random_mel_cm: Path):
    cm = load_cm(random_mel_cm)
    for batch in (1, 4):
        assert_equivalent(cm, mel_onnx_engine, verification_windows(batch=batch, seed=batch + 10))


def test_w2v2_aasist_with_random_backend(random_w2v2_aasist_cm: Path, tiny_xlsr_dir: Path, tmp_path: Path):
    if os.environ.get(REFERENCE_ENV):
        pytest.skip("reference data present: test_released_codec_w2v2_aasist_on_tiny_xlsr exports this graph")
    cm = load_source_cm(random_w2v2_aasist_cm, w2v2_source=str(tiny_xlsr_dir))
    manifest = export_onnx(cm, tmp_path / "w2v2")
    assert manifest.frontend_sha256 and manifest.cm.w2v2_source == str(tiny_xlsr_dir)
    assert manifest.verification["max_abs_prob_diff"] <= TOLERANCE
    assert_equivalent(cm, tmp_path / "w2v2", verification_windows(batch=2, seed=7))


def test_refuses_to_overwrite_a_cm_directory(random_mel_cm: Path):
    with pytest.raises(ExportError, match="CM"):
        export_onnx(random_mel_cm, random_mel_cm)


def test_cli_refuses_fp16_onnx(random_mel_cm: Path, tmp_path: Path, capsys):
    from offline.cli import main

    assert main(["export", str(random_mel_cm), "--fp16", "--out", str(tmp_path / "x")]) == 2
    assert "fp16" in capsys.readouterr().err


@pytest.mark.reference
def test_released_codec_mellcnn(released_cm, shared_dir: Path, tmp_path: Path):
    cm = load_source_cm(released_cm("codec_mellcnn"))
    export_onnx(cm, tmp_path / "mel")
    windows = np.stack([load_window(shared_dir / clip) for clip in CLIPS])
    assert_equivalent(cm, tmp_path / "mel", windows)


@pytest.mark.reference
def test_released_codec_w2v2_aasist_on_tiny_xlsr(released_cm, shared_dir: Path, tiny_xlsr_dir: Path, tmp_path: Path):
    cm = load_source_cm(released_cm("codec_w2v2aasist"), w2v2_source=str(tiny_xlsr_dir))
    export_onnx(cm, tmp_path / "w2v2")
    windows = np.stack([load_window(shared_dir / clip) for clip in CLIPS[:2]])
    assert_equivalent(cm, tmp_path / "w2v2", windows)
