"""Settings: precedence of flags > environment > TOML > defaults, and the deprecated threshold key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streamdet.errors import ConfigError
from streamdet.service.settings import load_settings

REPO = Path(__file__).resolve().parents[3]


def test_defaults() -> None:
    s = load_settings()
    assert (s.window.hop_samples, s.alerts.k, s.alerts.n, s.alerts.m, s.alerts.spoof_threshold) == (16000, 2, 3, 3, None)
    assert s.scoring.engine is None
    assert (s.alerts.min_speech, s.window.early_samples, s.alerts.first_spoof_threshold) == (0.3, [], None)


def test_speech_gate_and_first_decision_reach_the_service_policy(monkeypatch: pytest.MonkeyPatch, kit) -> None:
    from streamdet.service.server import Service

    monkeypatch.setenv("STREAMDET_ALERTS__MIN_SPEECH", "0.5")
    settings = load_settings(None, {"window": {"early_samples": [32000, 48000]},
                                    "alerts": {"first_spoof_threshold": 0.999}, "http": {"enabled": False}})
    policy = Service(settings, kit.FakeScorer()).policy
    assert (policy.min_speech, policy.early, policy.first_spoof_threshold) == (0.5, (32000, 48000), 0.999)
    with pytest.raises(ConfigError, match="early window"):
        Service(load_settings(None, {"window": {"early_samples": [70000]}}), kit.FakeScorer())
    with pytest.raises(ConfigError):
        load_settings(None, {"alerts": {"min_speech": 1.5}})


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
    defaults = load_settings()  # the example's overload bounds are the defaults it says they are
    assert (s.scoring.max_pending_windows, s.scoring.max_pending_bytes, s.scoring.max_latency_s,
            s.window.min_tail_samples) == (defaults.scoring.max_pending_windows, defaults.scoring.max_pending_bytes,
                                           defaults.scoring.max_latency_s, defaults.window.min_tail_samples)


@pytest.mark.parametrize("text", ["[scoring\n", "[alerts]\nk = 5\nn = 2\n", "[nope]\nx = 1\n",
                                  "[limits]\nmax_streams = 0\n", "[scoring]\nmax_latency_s = 0\n",
                                  "[window]\nmin_tail_samples = -1\n"])
def test_invalid_settings_are_config_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_settings(path)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError):
        load_settings("/nonexistent/serve.toml")


def test_spoof_threshold_key_from_toml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text("[alerts]\nspoof_threshold = 0.25\n")
    assert load_settings(toml).alerts.spoof_threshold == 0.25
    monkeypatch.setenv("STREAMDET_ALERTS__SPOOF_THRESHOLD", "0.75")
    assert load_settings(toml).alerts.spoof_threshold == 0.75


def test_old_threshold_key_still_works_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # alerts.threshold was already a spoof probability: the same value under the new name.
    toml = tmp_path / "serve.toml"
    toml.write_text("[alerts]\nthreshold = 0.25\n")
    with pytest.warns(DeprecationWarning, match="alerts.spoof_threshold"):
        assert load_settings(toml).alerts.spoof_threshold == 0.25
    monkeypatch.setenv("STREAMDET_ALERTS__THRESHOLD", "0.75")
    with pytest.warns(DeprecationWarning):
        assert load_settings().alerts.spoof_threshold == 0.75
    with pytest.warns(DeprecationWarning):  # the new name wins when both are given
        assert load_settings(None, {"alerts": {"spoof_threshold": 0.5}}).alerts.spoof_threshold == 0.5


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_spoof_threshold_outside_probabilities_is_refused(value: float) -> None:
    with pytest.raises(ConfigError):
        load_settings(None, {"alerts": {"spoof_threshold": value}})


async def test_the_log_names_the_threshold_and_where_it_came_from(start_service, kit, caplog) -> None:
    from streamdet.cm import read_cm_manifest
    from streamdet.pretrained import default_cm_dir

    scorer = kit.FakeScorer()
    scorer.contract = read_cm_manifest(default_cm_dir())  # the shipped CM's calibration
    caplog.set_level(logging.INFO, logger="streamdet.service.server")
    service = await start_service(scorer, http={"enabled": False})
    assert service.policy.spoof_threshold == 0.9993941235588863
    assert "threshold: alert when p_spoof >= 0.9993941235588863 (manifest: target_far=0.005)" in caplog.text


def test_every_socket_binds_loopback_by_default() -> None:
    """ZeroMQ ingest and events, HTTP (WHIP and the WebSockets ride on it), and every ingest plugin
    with an address of its own (AudioSocket, RTP): nothing is reachable from another host out of the box."""
    from streamdet.service.curve import is_local_endpoint
    from streamdet.service.ingest.plugins import registered_plugins

    s = load_settings()
    assert is_local_endpoint(s.ingest.endpoint) and is_local_endpoint(s.alerts.endpoint)
    assert s.http.host == "127.0.0.1"
    hosts = {plugin.name: plugin.section_of(s).host for plugin in registered_plugins()
             if "host" in type(plugin.section_of(s)).model_fields}
    assert hosts and set(hosts.values()) == {"127.0.0.1"}, hosts
