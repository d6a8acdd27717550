"""StreamPolicy: the one verdict, threshold resolution, window geometry, and the deprecated names."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from streamdet.audio import WINDOW_SAMPLES
from streamdet.errors import ConfigError
from streamdet.manifest import Calibration, CMManifest, EngineManifest
from streamdet.stream.policy import (
    DEFAULT_HOP,
    NEVER_SPOOF_THRESHOLD,
    PAPER_SPOOF_THRESHOLD,
    StreamPolicy,
    WindowGeometry,
    manifest_calibration,
    read_serve_config,
    resolve_spoof_threshold,
    spoof_probability,
)
from streamdet.stream.windower import Windower

# --- the verdict ---------------------------------------------------------------------------------


def test_spoof_probability_is_the_same_for_scalars_and_arrays() -> None:
    p_bonafide = np.array([0.0, 1e-17, 0.3, 0.5, 0.7, 1.0, 0.1234567], dtype=np.float32)
    as_array = spoof_probability(p_bonafide)
    assert as_array.dtype == np.float64
    assert [spoof_probability(float(p)) for p in p_bonafide] == as_array.tolist()
    assert [spoof_probability(p) for p in p_bonafide] == as_array.tolist()  # numpy scalars too
    assert isinstance(spoof_probability(np.float32(0.25)), float)


def _neighbours(value: float) -> list[float]:
    return [math.nextafter(value, -math.inf), value, math.nextafter(value, math.inf)]


@pytest.mark.parametrize("threshold", [0.0, 1e-17, 0.3, 0.5, 1 - 0.3, 0.9807469351217151, 1.0,
                                       NEVER_SPOOF_THRESHOLD])
def test_verdict_at_the_boundary(threshold: float) -> None:
    policy = StreamPolicy(threshold)
    below, at, above = _neighbours(threshold)
    assert policy.is_spoof(at) and policy.is_spoof(above)
    assert not policy.is_spoof(below)
    values = np.array([v for v in (below, at, above, 0.0, 1.0, 1e-17, 0.5) if 0.0 <= v <= 1.0])
    assert policy.are_spoof(values).tolist() == [policy.is_spoof(float(v)) for v in values]


def test_never_threshold_refuses_even_certain_spoof_and_zero_takes_everything() -> None:
    assert not StreamPolicy(NEVER_SPOOF_THRESHOLD).is_spoof(1.0)
    assert StreamPolicy(0.0).is_spoof(0.0)


def test_the_one_place_p_bonafide_03_meets_threshold_07() -> None:
    # Two spaces used to disagree here: P(bona fide) one ulp above 0.3 is "not below 0.3", while
    # 1 - p lands exactly on 1 - 0.3 in float64. With one space the verdict is the policy's, always.
    p_bonafide = math.nextafter(0.3, 1.0)
    assert spoof_probability(p_bonafide) == spoof_probability(0.3)
    policy = StreamPolicy(spoof_probability(0.3))
    assert policy.is_spoof(spoof_probability(p_bonafide))
    assert policy.are_spoof(spoof_probability(np.array([p_bonafide]))).tolist() == [True]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_thresholds_outside_probabilities_are_refused(bad: float) -> None:
    with pytest.raises(ConfigError):
        StreamPolicy(bad)


@pytest.mark.parametrize("rule", [dict(k=3, n=2), dict(k=0), dict(m=0), dict(hop=0), dict(window=0)])
def test_invalid_rules_are_refused(rule: dict) -> None:
    with pytest.raises(ConfigError):
        StreamPolicy(**rule)


# --- where the threshold comes from --------------------------------------------------------------


def test_resolution_order() -> None:
    calibration = Calibration(spoof_threshold=0.98, criterion="target_far=0.01")
    assert resolve_spoof_threshold(0.3, calibration) == (0.3, "settings")
    assert resolve_spoof_threshold(0.3, calibration, "--spoof-threshold") == (0.3, "--spoof-threshold")
    assert resolve_spoof_threshold(None, calibration) == (0.98, "manifest: target_far=0.01")
    assert resolve_spoof_threshold(None, None) == (PAPER_SPOOF_THRESHOLD, "paper default")
    policy = StreamPolicy.resolve(None, calibration, k=1, n=1)
    assert (policy.spoof_threshold, policy.k, policy.n) == (0.98, 1, 1)
    assert policy.describe() == "alert when p_spoof >= 0.98 (manifest: target_far=0.01)"


def test_calibration_is_found_in_a_cm_and_in_an_engine_manifest() -> None:
    calibration = Calibration(spoof_threshold=0.9, criterion="eer")
    cm = CMManifest(name="x", architecture="mel_lcnn", calibration=calibration)
    engine = EngineManifest(name="x", engine="onnx", cm=cm)
    assert manifest_calibration(cm) == calibration == manifest_calibration(engine)
    assert manifest_calibration(CMManifest(name="x", architecture="mel_lcnn")) is None


def test_old_manifest_threshold_is_read_once_as_a_spoof_threshold() -> None:
    with pytest.warns(DeprecationWarning, match="calibration.threshold"):
        old = Calibration.model_validate({"threshold": 0.01925306487828493, "criterion": "target_far=0.01"})
    assert old.spoof_threshold == spoof_probability(0.01925306487828493)
    assert "threshold" not in old.model_dump() and old.model_dump()["spoof_threshold"] == old.spoof_threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new field reads without a warning
        assert Calibration.model_validate_json(old.model_dump_json()) == old


def test_serve_config_is_read_for_offline_use(tmp_path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text("[window]\nhop_samples = 8000\nmin_tail_samples = 8000\n[alerts]\nspoof_threshold = 0.75\n"
                    "k = 1\nn = 2\nm = 4\n[scoring]\nengine = 'x'\n")
    assert read_serve_config(path) == {"spoof_threshold": 0.75, "hop": 8000, "k": 1, "n": 2, "m": 4,
                                       "min_tail": 8000}
    path.write_text("[alerts]\nthreshold = 0.75\n")
    with pytest.warns(DeprecationWarning, match="alerts.spoof_threshold"):
        assert read_serve_config(path) == {"spoof_threshold": 0.75}
    path.write_text("[alerts\n")
    with pytest.raises(ConfigError):
        read_serve_config(path)
    with pytest.raises(ConfigError):
        read_serve_config(tmp_path / "missing.toml")


# --- window geometry -----------------------------------------------------------------------------


def _windower_spans(total: int, hop: int, window: int, chunk: int, early: tuple[int, ...] = (),
                    min_tail: int = 0) -> list[tuple[int, int]]:
    windower = Windower(hop, window, early, min_tail)
    out = []
    for start in range(0, total, chunk):
        out += windower.push(np.zeros(min(chunk, total - start), np.float32))
    tail = windower.finish()
    return [(w.start, w.end) for w in out + ([tail] if tail is not None else [])]


@pytest.mark.parametrize("window, hop", [(100, 30), (100, 100), (100, 1), (100, 250), (7, 3)])
def test_geometry_is_what_the_windower_emits(window: int, hop: int) -> None:
    geometry = WindowGeometry(window, hop)
    for total in range(0, 4 * window + 2 * hop):
        expected = _windower_spans(total, hop, window, chunk=37)
        assert geometry.spans(total) == expected, total
        assert geometry.count(total) == len(expected)
        assert geometry.offsets(total) == [start for start, _ in expected]


@pytest.mark.parametrize("seconds", [0.5, 4.0375, 4.04, 5.0375, 6.5, 10.0, 61.3])
def test_geometry_at_the_services_numbers(seconds: float) -> None:
    total = round(seconds * 16_000)
    policy = StreamPolicy()
    assert (policy.window, policy.hop) == (WINDOW_SAMPLES, DEFAULT_HOP)
    assert policy.geometry.spans(total) == _windower_spans(total, policy.hop, policy.window, chunk=3_200,
                                                           min_tail=policy.min_tail)


@pytest.mark.parametrize("window, hop, min_tail, early", [(100, 30, 50, ()), (100, 30, 100, ()), (100, 30, 150, ()),
                                                          (100, 30, 50, (20, 70)), (7, 3, 4, ())])
def test_geometry_with_a_shortest_tail_is_what_the_windower_emits(window: int, hop: int, min_tail: int,
                                                                 early: tuple[int, ...]) -> None:
    geometry = WindowGeometry(window, hop, early, min_tail)
    for total in range(0, 4 * window + 2 * hop):
        expected = _windower_spans(total, hop, window, chunk=13, early=early, min_tail=min_tail)
        assert geometry.spans(total) == expected, total
        assert geometry.count(total) == len(expected)


def test_a_stream_shorter_than_1s_ends_with_no_window_and_one_of_1s_with_one_tiled() -> None:
    # One sample and an end mark used to buy a full 64,600-sample window of scoring.
    policy = StreamPolicy()
    assert policy.min_tail == 16_000
    assert policy.geometry.spans(1) == policy.geometry.spans(15_999) == []
    assert policy.geometry.spans(16_000) == [(0, 16_000)]
    assert policy.geometry.spans(WINDOW_SAMPLES + 1) == [(0, WINDOW_SAMPLES), (1, WINDOW_SAMPLES + 1)]
    assert StreamPolicy(min_tail=0).geometry.spans(1) == [(0, 1)]
    assert WindowGeometry().spans(1) == [(0, 1)]  # the bare geometry (a clip's windows) keeps every tail


def test_a_negative_shortest_tail_is_refused() -> None:
    with pytest.raises(ConfigError, match="shortest tail"):
        StreamPolicy(min_tail=-1)


def test_earliest_alert() -> None:
    assert StreamPolicy().earliest_alert_s == pytest.approx((WINDOW_SAMPLES + DEFAULT_HOP) / 16_000)
    assert StreamPolicy(k=1, n=1).earliest_alert_s == pytest.approx(WINDOW_SAMPLES / 16_000)


@pytest.mark.parametrize("window, hop, early", [(100, 30, (40, 70)), (100, 100, (99,)), (7, 3, (1, 2, 6))])
def test_geometry_with_early_windows_is_what_the_windower_emits(window: int, hop: int, early: tuple[int, ...]) -> None:
    geometry = WindowGeometry(window, hop, early)
    for total in range(0, 4 * window + 2 * hop):
        expected = _windower_spans(total, hop, window, chunk=13, early=early)
        assert geometry.spans(total) == expected, total
        assert geometry.count(total) == len(expected)
        assert expected[:len(geometry.early_spans(total))] == [(0, e) for e in early if e <= total]


def test_early_windows_are_tiled_and_marked() -> None:
    windower = Windower(16_000, early=(32_000, 48_000))
    ramp = np.arange(70_000, dtype=np.float32)
    windows = windower.push(ramp)
    assert [(w.start, w.end, w.early) for w in windows] == [(0, 32_000, True), (0, 48_000, True),
                                                            (0, WINDOW_SAMPLES, False)]
    assert windows[0].samples.shape == (WINDOW_SAMPLES,)
    assert np.array_equal(windows[0].samples, np.tile(ramp[:32_000], 3)[:WINDOW_SAMPLES])


@pytest.mark.parametrize("early", [(0,), (WINDOW_SAMPLES,), (48_000, 32_000), (32_000, 32_000)])
def test_bad_early_windows_are_refused(early: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError):
        StreamPolicy(early=early)


def test_first_decision_and_gate_verdicts() -> None:
    policy = StreamPolicy(0.9, early=(32_000, 48_000), first_spoof_threshold=0.99, min_speech=0.3)
    assert policy.earliest_alert_s == 3.0  # the second early window, with k = 2
    assert policy.judge(0.95, 0.5) == (True, False)
    assert policy.judge(0.95, 0.5, early=True) == (False, False)  # the stricter threshold
    assert policy.judge(0.995, 0.29, early=True) == (True, True)  # evidence, but too little speech
    assert policy.judge(0.95, None) == (True, False)  # not measured: never gated
    assert policy.are_spoof([0.95, 0.95], early=[True, False]).tolist() == [False, True]
    assert policy.are_gated([0.0, 0.3, np.nan]).tolist() == [True, False, False]
    assert StreamPolicy(0.9, early=(32_000,)).threshold_for(early=True) == 0.9  # none given: the same
    assert not StreamPolicy(min_speech=0.0).is_gated(0.0)


def test_serve_config_carries_the_gate_and_the_first_decision(tmp_path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text("[window]\nearly_samples = [32000, 48000]\n[alerts]\nmin_speech = 0.5\n"
                    "first_spoof_threshold = 0.999\n")
    assert read_serve_config(path) == {"spoof_threshold": None, "early": (32_000, 48_000), "min_speech": 0.5,
                                       "first_spoof_threshold": 0.999}
