"""The architecture registry: built-ins, clear errors for unknown names, and a toy architecture
that works through every generic path (CM format, torch scorer, bench, ONNX export) once registered."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from offline.releases import RELEASES
from offline.training.config import validate_config
from streamdet import architectures
from streamdet.bench.models import manifest_for, random_backend, random_countermeasure
from streamdet.cli import main
from streamdet.cm import load_cm, read_cm_manifest, save_cm
from streamdet.errors import ConfigError, ManifestError
from streamdet.manifest import CMManifest
from streamdet.scoring.torch_scorer import TorchScorer

WINDOWS = 64600


def _toy_module():
    """Import the toy module by path (tests are not a package under pytest's importlib mode)."""
    name = "streamdet_tests_toy_arch"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("toy_arch.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def toy() -> str:
    """The toy architecture, registered for the test and unregistered after it."""
    toy_arch = _toy_module()
    architectures.register(toy_arch.ARCHITECTURE)
    yield toy_arch.NAME
    architectures.unregister(toy_arch.NAME)


@pytest.fixture
def windows() -> np.ndarray:
    """Noise at three levels (the toy's features, and so its scores, differ between them)."""
    rng = np.random.default_rng(0)
    levels = np.array([[0.003], [0.03], [0.3]])
    return (levels * rng.standard_normal((3, WINDOWS))).astype(np.float32)


def test_built_in_architectures_are_registered():
    assert architectures.names() == ("logmel_cnn", "mel_lcnn", "w2v2_aasist", "w2v2_lcnn")
    assert architectures.get("w2v2_aasist").frontend.needs_xlsr
    assert not architectures.get("mel_lcnn").frontend.needs_xlsr


def test_every_release_names_an_architecture_its_pickles_import_into():
    for release in RELEASES.values():
        assert architectures.get(release.architecture).authors_checkpoints, release.name


def test_unknown_name_is_a_clear_error_naming_the_known_ones(tmp_path: Path):
    with pytest.raises(ManifestError, match=r"unknown architecture 'nope'; known: logmel_cnn, mel_lcnn, w2v2_aasist, w2v2_lcnn"):
        architectures.get("nope")
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "x", "architecture": "nope"}))
    with pytest.raises(ManifestError, match=r"(?s)invalid manifest.*unknown architecture 'nope'"):
        read_cm_manifest(tmp_path)
    config = {"name": "x", "architecture": "nope",
              "data": {"train": [{"kind": "list", "path": "a.txt"}], "dev": [{"kind": "list", "path": "b.txt"}]}}
    with pytest.raises(ConfigError, match=r"(?s)architecture: .*unknown architecture 'nope'"):
        validate_config(config)


def test_a_name_is_registered_once_and_unregistering_forgets_it():
    toy = _toy_module().ARCHITECTURE
    architectures.register(toy)
    try:
        with pytest.raises(ValueError, match="already registered"):
            architectures.register(toy)
        assert toy.name in architectures.names()
    finally:
        architectures.unregister(toy.name)
    assert toy.name not in architectures.names()
    with pytest.raises(ValueError, match="unknown architecture"):
        CMManifest(name="x", architecture=toy.name)


def test_toy_cm_saves_loads_and_scores_with_the_torch_scorer(toy: str, tmp_path: Path, windows: np.ndarray):
    manifest = save_cm(tmp_path / "cm", random_backend(toy, seed=1).state_dict(), manifest_for(toy))
    assert read_cm_manifest(tmp_path / "cm") == manifest
    assert manifest.architecture == toy and manifest.w2v2_source is None
    cm = load_cm(tmp_path / "cm")
    assert type(cm.backend).__name__ == "ToyConv"
    expected = cm.bonafide_probability(torch.from_numpy(windows)).numpy()
    assert expected.max() - expected.min() > 1e-3  # the scaled head spreads the scores: the checks mean something

    scorer = TorchScorer(tmp_path / "cm", device="cpu")
    assert not scorer.channels_last  # the toy does not ask for the LCNN's channels-last layout
    np.testing.assert_allclose(scorer.score_batch(windows), expected, atol=1e-6)
    scorer.close()


def test_a_saved_toy_cm_needs_the_registration(toy: str, tmp_path: Path):
    save_cm(tmp_path / "cm", random_backend(toy).state_dict(), manifest_for(toy))
    architectures.unregister(toy)
    try:
        with pytest.raises(ManifestError, match=f"unknown architecture '{toy}'"):
            load_cm(tmp_path / "cm")
    finally:
        architectures.register(_toy_module().ARCHITECTURE)


def test_toy_bench_model_only_and_reference_comparison(toy: str, tmp_path: Path):
    cm = random_countermeasure(toy)
    assert type(cm.backend).__name__ == "ToyConv"
    out = tmp_path / "mo.json"
    assert main(["bench", "--model-only", "--arch", toy, "--batch-sizes", "1,2", "--threads", "1",
                 "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["candidates"][0]["architecture"] == toy
    assert {r["batch_size"] for r in report["rows"]} == {1, 2}
    compare = tmp_path / "compare.json"
    assert main(["bench", "--compare-reference", "--arch", toy, "--windows", "2", "--repeats", "1",
                 "--threads", "1", "--out", str(compare)]) == 0
    assert json.loads(compare.read_text())["agree"] is True


def test_toy_cm_exports_to_onnx_and_scores_with_onnxruntime(toy: str, tmp_path: Path, windows: np.ndarray):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from offline.export.onnx import export_onnx
    from streamdet.scoring.onnx_scorer import OnnxScorer

    save_cm(tmp_path / "cm", random_backend(toy, seed=2).state_dict(), manifest_for(toy))
    engine = export_onnx(tmp_path / "cm", tmp_path / "onnx")
    assert engine.cm.architecture == toy
    scorer = OnnxScorer(tmp_path / "onnx" / "model.onnx", device="cpu")
    expected = load_cm(tmp_path / "cm").bonafide_probability(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(scorer.score_batch(windows), expected, atol=1e-4)
    scorer.close()


def test_logmel_cnn_scores_with_torch_and_onnxruntime_alike(tmp_path: Path, windows: np.ndarray):
    """The built-in small CNN goes through the same generic paths as the toy (it is registered by one line)."""
    save_cm(tmp_path / "cm", random_backend("logmel_cnn", seed=3).state_dict(), manifest_for("logmel_cnn"))
    expected = load_cm(tmp_path / "cm").bonafide_probability(torch.from_numpy(windows)).numpy()
    assert expected.max() - expected.min() > 1e-3
    scorer = TorchScorer(tmp_path / "cm", device="cpu")
    np.testing.assert_allclose(scorer.score_batch(windows), expected, atol=1e-5)
    scorer.close()
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from offline.export.onnx import export_onnx
    from streamdet.scoring.onnx_scorer import OnnxScorer

    export_onnx(tmp_path / "cm", tmp_path / "onnx")
    onnx = OnnxScorer(tmp_path / "onnx" / "model.onnx", device="cpu")
    np.testing.assert_allclose(onnx.score_batch(windows), expected, atol=1e-4)
    onnx.close()
