"""The live service and ``offline evaluate --streaming``'s replay agree window for window.

The same audio goes through a started service (ZeroMQ ingest on loopback, f32le frames so the
samples arrive bit for bit) and through ``offline.streaming_eval.replay``; both score with the same
deterministic scorer. For thresholds exactly at some window's p_spoof, one ulp either side, and tiny
or extreme values, every window's verdict, every alert state and every raised/cleared transition
must be the same: both sides go through ``streamdet.stream.policy`` and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from offline.datasets import Utterance
from offline.streaming_eval import StreamResult, replay
from streamdet.audio import SAMPLE_RATE
from streamdet.manifest import InputContract
from streamdet.scoring.base import Scorer
from streamdet.stream.policy import NEVER_SPOOF_THRESHOLD, StreamPolicy, spoof_probability

SCALE = 2.0**-19
"""Sample i of the test audio is i * SCALE: exact in float32, so a window's first sample names its start."""
TOTAL = 64_600 + 12 * 16_000 + 5_000  # 13 regular windows and a tail window
GEOMETRY = StreamPolicy().geometry

P_BONAFIDE = np.array([0.9, 0.2, 0.3, 0.3, 1.0, 0.0, 0.7, 0.7, np.nextafter(np.float32(0.3), 1),
                       np.nextafter(np.float32(0.3), 0), 1e-30, 0.5, 0.5, 0.3], dtype=np.float32)
"""One P(bona fide) per window, in window order (the tail is the last)."""


class PositionScorer(Scorer):
    """P(bona fide) looked up by the window's position in the test audio: deterministic, batch-independent."""

    model_id = "position@0"
    contract = InputContract()

    def __init__(self) -> None:
        self._by_start = {start: P_BONAFIDE[i] for i, start in enumerate(GEOMETRY.offsets(TOTAL))}

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        return np.array([self._by_start[round(float(w[0]) / SCALE)] for w in windows], dtype=np.float32)


def _window_p_spoof() -> list[float]:
    return [spoof_probability(float(p)) for p in P_BONAFIDE]


def _thresholds() -> list[float]:
    values = sorted(set(_window_p_spoof()))
    edges = {t for v in values for t in (math.nextafter(v, -math.inf), v, math.nextafter(v, math.inf))}
    edges |= {0.0, 1e-17, 1e-300, 0.5, 1.0, NEVER_SPOOF_THRESHOLD}
    return sorted(t for t in edges if 0.0 <= t <= NEVER_SPOOF_THRESHOLD)


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> tuple[np.ndarray, Path]:
    samples = (np.arange(TOTAL, dtype=np.float64) * SCALE).astype(np.float32)
    path = tmp_path_factory.mktemp("equivalence") / "stream.wav"
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    return samples, path


def _transitions(raised_after: list[bool]) -> list[tuple[str, int]]:
    out, before = [], False
    for i, raised in enumerate(raised_after):
        if raised != before:
            out.append(("raised" if raised else "cleared", i))
        before = raised
    return out


def test_the_scorer_sees_each_window_once_in_order(audio) -> None:
    assert GEOMETRY.count(TOTAL) == len(P_BONAFIDE) == 14


@pytest.mark.parametrize("threshold", _thresholds())
async def test_service_and_replay_agree_window_for_window(threshold, audio, start_service, kit, push) -> None:
    samples, path = audio
    service = await start_service(PositionScorer(), alerts={"spoof_threshold": threshold}, http={"enabled": False},
                                  scoring={"max_pending_per_stream": 64})  # sent at once: keep every window
    listener = service.listen()
    await kit.send_all(push(service.ingest_endpoint),
                       kit.frames_of("eq", samples[:, None], fmt="f32le", chunk=3_200))
    events = await kit.collect_until_end(listener, "eq")
    scores = [e for e in events if e.event == "score"]
    assert events[-1].event == "end" and events[-1].dropped == 0
    live_transitions = [(e.event, e.window) for e in events if e.event in ("raised", "cleared")]

    policy = StreamPolicy.resolve(threshold, None, min_speech=0.0)  # the fixture's service does not gate
    (stream,), failures = replay(PositionScorer(), "eq", [Utterance("eq", path, 1)], policy, batch_size=3)
    assert not failures
    assert isinstance(stream, StreamResult)

    assert [e.window for e in scores] == list(range(len(P_BONAFIDE)))
    assert [(round(e.start * SAMPLE_RATE), round(e.end * SAMPLE_RATE)) for e in scores] == \
        list(zip(stream.starts.tolist(), stream.ends.tolist(), strict=True))
    assert [e.p_spoof for e in scores] == spoof_probability(stream.scores).tolist() == _window_p_spoof()
    assert [e.spoof for e in scores] == stream.spoof.tolist()
    assert [e.alert for e in scores] == stream.raised_after.tolist()
    assert live_transitions == _transitions(stream.raised_after.tolist())
    assert all(e.spoof_threshold == e.threshold == threshold for e in scores)


def test_the_thresholds_exercise_both_verdicts_and_both_transitions() -> None:
    # Guard against a vacuous comparison: across the thresholds, windows go both ways at the edge.
    p_spoof = np.array(_window_p_spoof())
    some_flip = 0
    for threshold in _thresholds():
        verdicts = StreamPolicy(threshold).are_spoof(p_spoof)
        machine, transitions = StreamPolicy(threshold).alert_machine(), set()
        for verdict in verdicts:
            transitions.add(machine.update(bool(verdict)))
        some_flip += {"raised", "cleared"} <= transitions
        assert verdicts.tolist() == [threshold <= p for p in p_spoof]  # the rule, said plainly
    assert some_flip >= 3
    at = spoof_probability(float(np.float32(0.3)))
    assert StreamPolicy(at).are_spoof(p_spoof).sum() > StreamPolicy(math.nextafter(at, 1)).are_spoof(p_spoof).sum()


# --- the speech gate and the first decision --------------------------------------------------------

GATED_CLIPS = ["alm-add/audio/AudioLM/speech_0944c955-dc0b-4c87-a006-02d0f12adeec_fake.wav",
               "alm-add/audio/HAM_TTS/speech_ground_truth_BAC009S0764W0158_real.wav"]


class ContentScorer(Scorer):
    """P(bona fide) from the window's samples alone (deterministic, batch-independent, spread over [0, 1))."""

    model_id = "content@0"
    contract = InputContract()

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        return np.array([(np.abs(w.astype(np.float64)).sum() * 7.31) % 1.0 for w in windows], dtype=np.float32)


@pytest.mark.reference
async def test_gate_and_early_windows_agree_between_service_and_replay(shared_dir, tmp_path, start_service, kit,
                                                                       push) -> None:
    from streamdet.audio import load_audio

    rng = np.random.default_rng(3)
    pieces = [load_audio(shared_dir / GATED_CLIPS[0]), np.zeros(5 * SAMPLE_RATE, np.float32),
              (0.05 * rng.standard_normal(6 * SAMPLE_RATE)).astype(np.float32), load_audio(shared_dir / GATED_CLIPS[1])]
    samples = np.concatenate(pieces).astype(np.float32)
    path = tmp_path / "gated.wav"
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    rule = {"min_speech": 0.3, "first_spoof_threshold": 0.8, "spoof_threshold": 0.5, "m": 1}
    service = await start_service(ContentScorer(), alerts=rule, window={"early_samples": [32_000, 48_000]},
                                  http={"enabled": False}, scoring={"max_pending_per_stream": 64})
    listener = service.listen()
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("gq", samples[:, None], fmt="f32le", chunk=3_000))
    events = await kit.collect_until_end(listener, "gq")
    scores = [e for e in events if e.event == "score"]
    assert events[-1].dropped == 0

    policy = StreamPolicy.resolve(0.5, None, min_speech=0.3, first_spoof_threshold=0.8, early=(32_000, 48_000), m=1)
    assert replace(service.policy, threshold_source=policy.threshold_source) == policy  # the service's own
    (stream,), failures = replay(ContentScorer(), "gq", [Utterance("gq", path, 1)], policy, batch_size=5)
    assert not failures

    assert [(round(e.start * SAMPLE_RATE), round(e.end * SAMPLE_RATE)) for e in scores] == \
        list(zip(stream.starts.tolist(), stream.ends.tolist(), strict=True))
    assert [e.early for e in scores] == stream.early.tolist() == [True, True] + [False] * (len(scores) - 2)
    assert [e.p_spoof for e in scores] == spoof_probability(stream.scores).tolist()
    assert [e.speech for e in scores] == stream.speech.tolist()
    assert [e.gated for e in scores] == stream.gated.tolist()
    assert [e.spoof for e in scores] == stream.spoof.tolist()
    assert [e.spoof_threshold for e in scores] == [0.8, 0.8] + [0.5] * (len(scores) - 2)
    assert [e.alert for e in scores] == stream.raised_after.tolist()
    live_transitions = [(e.event, e.window) for e in events if e.event in ("raised", "cleared")]
    assert live_transitions == _transitions(stream.raised_after.tolist())
    # Not vacuous: the audio has windows on both sides of the gate, and the rule changes state.
    assert 0 < sum(stream.gated) < len(scores) and {"raised", "cleared"} <= {t for t, _ in live_transitions}
