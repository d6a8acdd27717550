"""Calibration: window offsets, thresholds on synthetic scores, manifest round trip, the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from offline.calibrate import (
    WindowScores,
    alert_rate,
    calibrate,
    clip_windows,
    threshold_at_eer,
    threshold_for_false_alarm_rate,
    window_offsets,
    write_calibration,
)
from offline.cli import main
from offline.datasets import Utterance
from offline.metrics import compute_eer
from streamdet.audio import WINDOW_SAMPLES
from streamdet.cm import load_cm, read_cm_manifest, save_cm
from streamdet.errors import ConfigError
from streamdet.manifest import Calibration, CMManifest
from streamdet.models.lcnn import LCNN, MEL_FLAT_FEATURES
from streamdet.stream.policy import NEVER_SPOOF_THRESHOLD, spoof_probability


@pytest.fixture(scope="module")
def tiny_cm(tmp_path_factory):
    """A randomly initialised Mel-LCNN in streamdet's format (plumbing only: its scores mean nothing)."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("cm") / "tiny"
    save_cm(directory, LCNN(MEL_FLAT_FEATURES).state_dict(), CMManifest(name="tiny", architecture="mel_lcnn"))
    return directory


def test_window_offsets() -> None:
    w, hop = WINDOW_SAMPLES, 16_000
    assert window_offsets(1, w, hop) == [0]
    assert window_offsets(w, w, hop) == [0]
    assert window_offsets(w + hop - 1, w, hop) == [0, hop - 1]  # the tail window, as the service emits it
    assert window_offsets(w + hop, w, hop) == [0, hop]
    assert window_offsets(10 * w, w, hop)[-1] + w <= 10 * w
    assert window_offsets(10 * w, w, None) == [0]
    with pytest.raises(ValueError):
        window_offsets(0, w, hop)
    with pytest.raises(ValueError):
        window_offsets(5, w, 0)


def test_clip_windows_tiles_short_clips_and_slides_over_long_ones() -> None:
    short = np.arange(1000, dtype=np.float32)
    windows = clip_windows(short, 2500, 1000)
    assert windows.shape == (1, 2500) and windows[0, 1000] == 0 and windows[0, 2499] == 499
    long = np.arange(5000, dtype=np.float32)
    windows = clip_windows(long, 2500, 1000)
    assert windows.shape == (4, 2500) and [w[0] for w in windows] == [0, 1000, 2000, 2500]  # + tail


@pytest.mark.parametrize("target", [0.0, 0.001, 0.01, 0.05, 0.2])
def test_false_alarm_threshold_hits_the_target(target: float) -> None:
    rng = np.random.default_rng(0)
    real = spoof_probability(rng.beta(5, 2, size=10_000))
    threshold = threshold_for_false_alarm_rate(real, target)
    achieved = alert_rate(real, threshold)
    assert achieved <= target
    assert achieved >= target - 1 / real.size
    # On fresh windows from the same distribution the rate generalises.
    assert abs(alert_rate(spoof_probability(rng.beta(5, 2, size=50_000)), threshold) - target) < 0.005


def test_false_alarm_threshold_with_ties_and_saturated_scores() -> None:
    real = spoof_probability(np.array([0.0] * 50 + [0.2] * 50))  # p_spoof 1.0 and 0.8
    threshold = threshold_for_false_alarm_rate(real, 0.1)
    assert alert_rate(real, threshold) == 0.0  # 10 % cannot be met without alerting on all 50 tied ones
    assert threshold == NEVER_SPOOF_THRESHOLD  # above 1: not even p_spoof = 1 alerts
    assert threshold_for_false_alarm_rate(real, 0.5) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        threshold_for_false_alarm_rate(real, 1.0)
    with pytest.raises(ValueError):
        threshold_for_false_alarm_rate([], 0.1)


def test_eer_threshold_matches_the_eer() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(0.7, 0.1, 4000).clip(0, 1)
    fake = rng.normal(0.4, 0.1, 3000).clip(0, 1)
    threshold, eer = threshold_at_eer(spoof_probability(real), spoof_probability(fake))
    assert eer == pytest.approx(compute_eer(real, fake)[0])
    false_alarms = alert_rate(spoof_probability(real), threshold)
    misses = 1 - alert_rate(spoof_probability(fake), threshold)
    assert abs(false_alarms - eer) < 0.002 and abs(misses - eer) < 0.002
    assert 0.4 < threshold < 0.5


def _scores(values: np.ndarray) -> WindowScores:
    utts = [Utterance(f"u{i}", None, 0) for i in range(values.size)]  # type: ignore[arg-type]
    return WindowScores(utts, values, np.arange(values.size))


def test_calibrate_describes_its_data() -> None:
    rng = np.random.default_rng(2)
    real, fake = _scores(rng.uniform(0.3, 1, 500)), _scores(rng.uniform(0, 0.6, 400))
    result = calibrate(real, fake, target_far=0.02, data="real a.txt; fake b.txt", channel="ulaw",
                       today=dt.date(2025, 1, 2))
    c = result.calibration
    assert c.criterion == "target_far=0.02"
    assert result.false_alarm_rate <= 0.02 and result.detection_rate > 0.3
    for part in ("a.txt", "b.txt", "500 windows", "400 windows", "ulaw", "2025-01-02"):
        assert part in c.description
    eer = calibrate(real, fake, at_eer=True).calibration
    assert eer.criterion == "eer" and "EER" in eer.description
    with pytest.raises(ConfigError):
        calibrate(real, fake)
    with pytest.raises(ConfigError):
        calibrate(real, None, at_eer=True)


def test_manifest_round_trip_keeps_weights_loadable(tiny_cm, tmp_path) -> None:
    weights = (tiny_cm / "model.safetensors").read_bytes()
    calibration = Calibration(spoof_threshold=0.9877, criterion="target_far=0.01", description="test data")
    updated = write_calibration(tiny_cm, calibration)
    assert updated.calibration == calibration
    assert read_cm_manifest(tiny_cm).calibration == calibration
    assert (tiny_cm / "model.safetensors").read_bytes() == weights
    cm = load_cm(tiny_cm)  # the weights hash still matches
    assert cm.manifest.calibration.spoof_threshold == 0.9877
    stored = json.loads((tiny_cm / "manifest.json").read_text())["calibration"]
    assert "threshold" not in stored and stored["spoof_threshold"] == 0.9877  # only the new field
    assert cm.manifest.weights_sha256 == read_cm_manifest(tiny_cm).weights_sha256


def _write_clip(path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * 8000))).astype(np.float32), 8000)


def test_calibrate_cli_writes_the_manifest(tiny_cm, tmp_path, capsys) -> None:
    for i, seconds in enumerate((1.0, 6.5)):
        _write_clip(tmp_path / f"real{i}.wav", seconds, i)
        _write_clip(tmp_path / f"fake{i}.wav", seconds, 10 + i)
    (tmp_path / "real.txt").write_text("real0.wav real\nreal1.wav real\n")
    (tmp_path / "fake.txt").write_text("fake0.wav fake\nfake1.wav fake\n")
    weights_hash = hashlib.sha256((tiny_cm / "model.safetensors").read_bytes()).hexdigest()
    code = main(["calibrate", str(tiny_cm), "--real", str(tmp_path / "real.txt"), "--fake", str(tmp_path / "fake.txt"),
                 "--target-far", "0.25", "--channel", "ulaw+loss5", "--device", "cpu", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    # 1 s clip: one tiled window; 6.5 s clip: windows at 0, 1 and 2 s (a 4.04 s window fits thrice)
    # and the tail window ending at 6.5 s, as the service scores it.
    assert report["real"]["windows"] == 5 and report["fake"]["windows"] == 5
    assert report["written"] and report["false_alarm_rate"] <= 0.25
    calibration = read_cm_manifest(tiny_cm).calibration
    assert calibration.spoof_threshold == report["calibration"]["spoof_threshold"]
    assert "ulaw+loss5" in calibration.description and "real.txt" in calibration.description
    assert hashlib.sha256((tiny_cm / "model.safetensors").read_bytes()).hexdigest() == weights_hash
    load_cm(tiny_cm)

    # --dry-run reports without writing; a fake list passed as real is refused.
    before = (tiny_cm / "manifest.json").read_text()
    assert main(["calibrate", str(tiny_cm), "--real", str(tmp_path / "real.txt"), "--fake", str(tmp_path / "fake.txt"),
                 "--at-eer", "--first-window", "--dry-run", "--device", "cpu"]) == 0
    assert (tiny_cm / "manifest.json").read_text() == before
    assert main(["calibrate", str(tiny_cm), "--real", str(tmp_path / "fake.txt"), "--device", "cpu"]) == 2
    assert main(["calibrate", str(tiny_cm), "--real", str(tmp_path / "real.txt"), "--channel", "gsm"]) == 2
    assert "unknown channel" in capsys.readouterr().err
