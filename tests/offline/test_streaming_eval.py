"""Streaming evaluation: the service's windower and alert rule over clips and chained calls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from offline.cli import main
from offline.datasets import Utterance
from offline.streaming_eval import replay, summarise
from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES
from streamdet.manifest import Calibration, InputContract
from streamdet.scoring.base import Scorer
from streamdet.stream.policy import NEVER_SPOOF_THRESHOLD, StreamPolicy
from streamdet.stream.windower import Windower

NO_GATE = {"min_speech": 0.0}
"""The clips here are constant signals, not speech: the speech gate would leave every window out."""


class SignScorer(Scorer):
    """P(bona fide) 0.9 for windows of positive mean, 0.1 otherwise: "real" clips are +DC, "fake" -DC."""

    model_id = "sign"
    contract = InputContract()

    def __init__(self) -> None:
        self.batches: list[int] = []

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        self.batches.append(len(windows))
        return np.where(windows.mean(axis=1) > 0, 0.9, 0.1).astype(np.float32)


def _clip(folder, name: str, seconds: float, sign: float) -> Utterance:
    path = folder / f"{name}.wav"
    sf.write(path, np.full(int(seconds * SAMPLE_RATE), 0.1 * sign, np.float32), SAMPLE_RATE, subtype="FLOAT")
    return Utterance(name, path, 0 if sign > 0 else 1)


def test_one_stream_per_clip_uses_the_service_windows(tmp_path) -> None:
    fake = _clip(tmp_path, "fake10", 10.0, -1)
    scorer = SignScorer()
    policy = StreamPolicy(spoof_threshold=0.5, **NO_GATE)
    (stream,), failures = replay(scorer, "set", [fake], policy, batch_size=4)
    assert not failures
    windower = Windower(policy.hop)
    expected = windower.push(np.zeros(10 * SAMPLE_RATE, np.float32)) + [windower.finish()]
    assert stream.ends.tolist() == [w.end for w in expected]
    assert scorer.batches == [4, 3]  # windows are scored in batches
    # k = 2 of 3: the second window (ending at 1 s + 4.0375 s) raises the alert.
    assert stream.clip_first_alerts() == [pytest.approx(policy.earliest_alert_s)]
    m = summarise([stream], policy, within=5.0)["fake"]
    assert m["alerted"] == 1.0 and m["alerted_within"] == 0.0
    assert summarise([stream], policy, within=5.1)["fake"]["alerted_within"] == 1.0


def test_calls_chain_same_class_clips_and_count_false_alerts(tmp_path) -> None:
    clips = [_clip(tmp_path, f"real{i}", 2.0, +1) for i in range(6)]
    clips += [_clip(tmp_path, f"fake{i}", 3.0, -1) for i in range(4)]
    policy = StreamPolicy(spoof_threshold=0.5, **NO_GATE)
    streams, _ = replay(SignScorer(), "set", clips, policy, calls_seconds=6.0)
    real = [s for s in streams if s.label == 0]
    fake = [s for s in streams if s.label == 1]
    assert [len(s.clips) for s in real] == [3, 3] and [len(s.clips) for s in fake] == [2, 2]
    assert [c.start for c in real[0].clips] == [0, 2 * SAMPLE_RATE, 4 * SAMPLE_RATE]
    report = summarise(streams, policy)
    assert report["real"]["alerts_raised"] == 0 and report["real"]["false_alerts_per_hour"] == 0.0
    assert report["real"]["hours"] == pytest.approx(12 / 3600)
    # Each fake call raises at its 2nd window (5.04 s): 5.04 s after the first clip's start, 2.04 s
    # after the second's (which starts at 3 s).
    firsts = fake[0].clip_first_alerts()
    assert firsts == [pytest.approx(policy.earliest_alert_s), pytest.approx(policy.earliest_alert_s - 3.0)]
    assert report["window_eer"] == 0.0

    everything = StreamPolicy(spoof_threshold=0.0, **NO_GATE)  # every window is spoof evidence: one alert per real call
    for stream in real:
        stream.run_alerts(everything)
    assert summarise(real, everything)["real"]["alerts_raised"] == 2


def test_threshold_precedence() -> None:
    calibration = Calibration(spoof_threshold=0.99, criterion="target_far=0.01")
    policy = StreamPolicy.resolve(0.3, calibration, configured_by="--spoof-threshold")
    assert (policy.spoof_threshold, policy.threshold_source) == (0.3, "--spoof-threshold")
    assert StreamPolicy.resolve(None, calibration).spoof_threshold == 0.99
    assert StreamPolicy.resolve(None, None).spoof_threshold == 0.5


# ---------------------------------------------------------------------------------------------
# The command on real clips (reference data): ALM-ADD A10 clips and 8 kHz stand-ins of telephone prompts


@pytest.fixture(scope="module")
def field_lists(shared_dir, tmp_path_factory):
    """A10 (RALL-E) real and fake clips, plus two real clips cut to 2 s and resampled to 8 kHz
    (Asterisk-like prompts; the Asterisk set itself is not in the reference data)."""
    import soxr

    root = tmp_path_factory.mktemp("field")
    audio = shared_dir / "alm-add" / "audio" / "RALL-E"
    reals = sorted(audio.glob("*_real.wav"))[:2]
    fakes = sorted(audio.glob("*_fake.wav"))[:2]
    lines = [f"{p} real" for p in reals] + [f"{p} fake" for p in fakes]
    for i, path in enumerate(reals):
        x, rate = sf.read(path, dtype="float32")
        narrow = soxr.resample(x[: 2 * rate], rate, 8000)
        sf.write(root / f"prompt{i}.wav", narrow, 8000, subtype="PCM_16")
        lines.append(f"prompt{i}.wav real")
    listing = root / "field.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


@pytest.fixture(scope="module")
def codec_mellcnn(shared_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cm") / "codec_mellcnn"
    assert main(["pull", "codec_mellcnn", "--out", str(out), "--source",
                 str(shared_dir / "codecfake" / "pretrained")]) == 0
    return out


def _run(capsys, *args: str) -> dict:
    assert main(["evaluate", *args, "--streaming", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.reference
def test_field_table_of_the_released_cm(codec_mellcnn, field_lists, tmp_path, capsys) -> None:
    report = _run(capsys, str(codec_mellcnn), "--list", str(field_lists), "--channel", "ulaw",
                  "--calls-minutes", "0.25", "--out", str(tmp_path))
    assert report["threshold_source"] == "paper default" and report["channel"] == "ulaw"
    everything = report["all"]
    assert {"false_alerts_per_hour", "hours", "window_alert_rate", "alerts_raised"} <= set(everything["real"])
    assert {"alerted_within", "median_time_to_first_alert_s", "alerted", "clips"} <= set(everything["fake"])
    assert 0.0 <= everything["window_eer"] <= 100.0
    assert everything["real"]["clips"] == 4 and everything["fake"]["clips"] == 2
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "windows.tsv").read_text().count("\n") == 1 + everything["real"]["windows"] + \
        everything["fake"]["windows"]

    # Spoof threshold 0 with a 1-of-1 rule: every fake clip alerts on its first window.
    report = _run(capsys, str(codec_mellcnn), "--list", str(field_lists), "--spoof-threshold", "0",
                  "--alert-k", "1", "--alert-n", "1")
    fake = report["all"]["fake"]
    assert fake["alerted"] == 1.0 and fake["alerted_within"] == 1.0
    assert fake["median_time_to_first_alert_s"] <= WINDOW_SAMPLES / SAMPLE_RATE
    # A spoof threshold above every probability: nothing ever alerts.
    report = _run(capsys, str(codec_mellcnn), "--list", str(field_lists), "--spoof-threshold",
                  repr(NEVER_SPOOF_THRESHOLD))
    assert report["all"]["real"]["alerts_raised"] == 0 and report["all"]["fake"]["alerted"] == 0.0
    assert report["all"]["real"]["false_alerts_per_hour"] == 0.0
