"""``offline crossval`` end to end on a tiny synthetic field set with a random Mel-LCNN (a few CPU seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offline.cli import main
from offline.crossval.config import load_crossval_config
from offline.crossval.folds import make_folds
from offline.recipes.field import read_field_list
from streamdet.cm import load_cm


@pytest.fixture()
def tiny_run(tmp_path: Path, random_mel_cm: Path, make_field_data) -> Path:
    field = make_field_data(tmp_path / "field-data", real=5, fake=5, clips=1, seconds=4.5)
    assert main(["data", "field", "--field-data", str(field), "--asterisk-root", str(tmp_path / "none"),
                 "--tts-root", str(tmp_path / "none"), "--out", str(tmp_path / "data")]) == 0
    config = tmp_path / "crossval.toml"
    config.write_text(f"""
field_list = "data/field.tsv"
out = "run"
cm = "{random_mel_cm}"
folds = 5
channels = ["wideband", "ulaw"]
real_call_minutes = 0.1
fake_call_minutes = 0.05
min_speech = 0.0  # the synthetic clips are tones, not speech
[augment]
windows_per_clip = 1
[[candidates]]
name = "own_head"
retrain_head = false
[[candidates]]
name = "new_head"
retrain_head = true
[candidates.head]
epochs = 1
[[candidates]]
name = "small_cnn"
retrain_head = true
architecture = "logmel_cnn"
[candidates.head]
epochs = 1
batch_size = 8
max_windows = 20
""", encoding="utf-8")
    return config


def test_crossval_reports_pooled_numbers_resumes_and_ships(tiny_run: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["crossval", "--config", str(tiny_run)]) == 0
    out = tmp_path / "run"
    report = json.loads((out / "report.json").read_text())
    assert list(report) == ["own_head", "new_head", "small_cnn"]
    for candidate in report.values():
        assert len(candidate["thresholds"]) == 5
        for channel in ("wideband", "ulaw"):
            pooled = candidate["channels"][channel]["pooled"]
            assert pooled["real"]["hours"] == pytest.approx(5 * 4.5 / 3600, rel=0.01)
            assert 0.0 <= pooled["fake"]["window_detection_rate"] <= 1.0
            assert len(candidate["channels"][channel]["groups"]) == 10, "every source and system reported"
    assert (out / "det-wideband.png").stat().st_size > 0 and (out / "det-ulaw.png").is_file()
    assert "| new_head | ulaw |" in (out / "report.md").read_text()

    # The folds the run used hold out whole groups only.
    config = load_crossval_config(tiny_run)
    for fold in make_folds(read_field_list(config.field_list), config.folds, config.seed, config.evaluate_origins):
        assert not fold.test_groups & fold.train_groups

    # A second run reuses every stage's files.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")} | {p: p.stat().st_mtime_ns for p in out.rglob("*.pkl")}
    assert main(["crossval", "--config", str(tiny_run)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    assert main(["crossval", "--config", str(tiny_run), "--ship", "new_head", "--ship-out", str(tmp_path / "cm")]) == 0
    cm = load_cm(tmp_path / "cm")
    assert cm.manifest.name == "new_head" and cm.manifest.calibration is not None
    assert "fakesrc3" in (tmp_path / "cm" / "DATA.md").read_text()

    # The CM's own head is shipped recalibrated: same weights, a threshold from every source.
    assert main(["crossval", "--config", str(tiny_run), "--ship", "own_head", "--ship-out", str(tmp_path / "own")]) == 0
    own = load_cm(tmp_path / "own")
    assert own.manifest.weights_sha256 == load_cm(config.cm).manifest.weights_sha256
    assert own.manifest.calibration is not None and "speech windows" in own.manifest.calibration.description
    assert main(["crossval", "--config", str(tiny_run), "--ship", "missing"]) == 2

    assert main(["crossval", "--config", str(tiny_run), "--ship", "small_cnn", "--ship-out", str(tmp_path / "cnn")]) == 0
    assert load_cm(tmp_path / "cnn").manifest.architecture == "logmel_cnn"
