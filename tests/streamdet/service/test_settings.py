"""Settings: precedence of flags > environment > TOML > defaults, and the threshold rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdet.errors import ConfigError
from streamdet.manifest import Calibration
from streamdet.service.settings import PAPER_THRESHOLD, load_settings, resolve_threshold

REPO = Path(__file__).resolve().parents[3]


def test_defaults() -> None:
    s = load_settings()
    assert (s.window.hop_samples, s.alerts.k, s.alerts.n, s.alerts.m, s.alerts.threshold) == (16000, 2, 3, 3, None)
    assert s.scoring.engine is None


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text('[scoring]\nmax_batch = 3\nmax_wait_ms = 7\n[alerts]\nk = 1\nn = 2\n[limits]\nmax_streams = 9\n')
    monkeypatch.setenv("STREAMDET_SCORING__MAX_BATCH", "5")
    monkeypatch.setenv("STREAMDET_ALERTS__K", "2")
    s = load_settings(toml, {"alerts": {"k": 1}})
    assert s.scoring.max_batch == 5       # environment beats TOML
    assert s.scoring.max_wait_ms == 7     # TOML beats defaults
    assert s.alerts.k == 1                # flags beat environment
    assert s.alerts.n == 2 and s.limits.max_streams == 9
    assert s.alerts.m == 3                # untouched fields of a section keep their defaults


def test_example_config_is_valid() -> None:
    s = load_settings(REPO / "configs" / "serve.toml")
    assert s.scoring.engine == "engines/codec_mellcnn"


@pytest.mark.parametrize("text", ["[scoring\n", "[alerts]\nk = 5\nn = 2\n", "[nope]\nx = 1\n",
                                  "[limits]\nmax_streams = 0\n"])
def test_invalid_settings_are_config_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_settings(path)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError):
        load_settings("/nonexistent/serve.toml")


def test_threshold_precedence() -> None:
    calibration = Calibration(threshold=0.8, criterion="eer")
    assert resolve_threshold(0.3, calibration)[0] == 0.3
    # the manifest's threshold is on P(bona fide) (alert below it): on P(spoof) it is 1 - t
    assert resolve_threshold(None, calibration)[0] == pytest.approx(0.2)
    assert resolve_threshold(None, None) == (PAPER_THRESHOLD, "paper default")
