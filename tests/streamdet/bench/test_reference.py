"""``streamdet bench --compare-reference``: the authors' loop and streamdet's scorer agree, and the
report says by how much streamdet is faster (the ratio itself is not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdet.bench.reference import TOLERANCE, build_pair, check_engine_matches
from streamdet.cli import main
from streamdet.errors import ConfigError, ManifestError
from streamdet.manifest import CMManifest, EngineManifest

ROW_FIELDS = {"label", "threads", "batch", "windows_per_s", "seconds_per_window", "times_s", "speedup_vs_reference",
              "speedup_median_of_rounds", "max_abs_prob_diff", "agrees"}


def _check_report(path: Path, architecture: str) -> dict:
    report = json.loads(path.read_text())
    assert report["kind"] == "compare_reference" and report["agree"] is True
    assert report["pair"]["architecture"] == architecture
    assert report["tolerance"] == TOLERANCE
    labels = [r["label"] for r in report["rows"]]
    assert labels[0] == "reference" and "streamdet-torch" in labels
    for row in report["rows"]:
        assert ROW_FIELDS <= set(row) and row["agrees"] and row["max_abs_prob_diff"] <= TOLERANCE
    assert report["reference"]["batch"] == 1 and report["reference"]["speedup_vs_reference"] == 1.0
    assert report["streamdet"]["label"] != "reference"
    assert len(report["probabilities_reference"]) == report["windows"]
    return report


def test_compare_reference_mel(tmp_path: Path, capsys):
    out = tmp_path / "mel.json"
    assert main(["bench", "--compare-reference", "--arch", "mel_lcnn", "--windows", "4", "--batch", "2",
                 "--repeats", "1", "--out", str(out)]) == 0
    report = _check_report(out, "mel_lcnn")
    assert report["config"]["batch"] == 2 and report["rows"][1]["channels_last"] is True
    assert "the reference's windows/s" in capsys.readouterr().out


def test_compare_reference_w2v2_runs_the_whole_xlsr_for_the_reference(tiny_whole_xlsr_dir: Path, tmp_path: Path):
    out = tmp_path / "w2v2.json"
    before = torch.get_num_threads()
    assert main(["bench", "--compare-reference", "--arch", "w2v2_aasist", "--w2v2-source", str(tiny_whole_xlsr_dir),
                 "--windows", "2", "--repeats", "1", "--threads", "1", "--out", str(out)]) == 0
    assert torch.get_num_threads() == before  # the comparison leaves torch's default in place
    report = _check_report(out, "w2v2_aasist")
    assert report["config"]["threads"] == 1
    assert "7 layers" not in report["pair"]["xlsr"] and report["pair"]["xlsr"] == str(tiny_whole_xlsr_dir)


def test_pair_uses_a_cm_directorys_weights(mel_cm_dir: Path):
    pair = build_pair("mel_lcnn", mel_cm_dir)
    assert pair.description["weights_sha256"] == CMManifest.model_validate_json(
        (mel_cm_dir / "manifest.json").read_text()).weights_sha256
    window = np.zeros((1, 64_600), dtype=np.float32)
    with torch.inference_mode():
        expected = pair.cm.bonafide_probability(torch.from_numpy(window)).numpy()
    np.testing.assert_allclose(pair.reference.score_windows(window), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="mel_lcnn CM"):
        build_pair("w2v2_aasist", mel_cm_dir)


def test_reference_refuses_a_truncated_xlsr(tiny_xlsr_dir: Path):
    with pytest.raises(ConfigError, match="whole XLS-R"):
        build_pair("w2v2_aasist", w2v2_source=str(tiny_xlsr_dir))


def test_an_engine_of_other_weights_is_refused(mel_cm_dir: Path):
    pair = build_pair("mel_lcnn")  # random backend weights
    cm_manifest = CMManifest(name="x", architecture="mel_lcnn", weights_sha256="0" * 64)
    engine = EngineManifest(name="x", engine="onnx", cm=cm_manifest, source_cm_sha256="0" * 64)
    with pytest.raises(ManifestError, match="other backend weights"):
        check_engine_matches(engine, pair)
    same = engine.model_copy(update={"source_cm_sha256": pair.description["weights_sha256"],
                                     "cm": cm_manifest.model_copy(update={"weights_sha256": ""})})
    check_engine_matches(same, pair)
