"""The VAD behind the speech gate: non-speech signals hold no speech, real speech does, and a stream's
fractions do not depend on how its samples arrive."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from streamdet.audio import WINDOW_SAMPLES, load_audio
from streamdet.stream.policy import DEFAULT_MIN_SPEECH, StreamPolicy
from streamdet.stream.speech import FRAME, SpeechTracker, speech_fraction
from streamdet.stream.windower import Windower

_spec = importlib.util.spec_from_file_location("streamdet_tests_nonspeech", Path(__file__).with_name("nonspeech.py"))
nonspeech = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nonspeech)

SPEECH = ["alm-add/audio/AudioLM/speech_0944c955-dc0b-4c87-a006-02d0f12adeec_fake.wav",
          "alm-add/audio/HAM_TTS/speech_ground_truth_BAC009S0764W0158_real.wav"]


@pytest.mark.parametrize("kind", sorted(nonspeech.KINDS))
def test_non_speech_signals_hold_almost_no_speech(kind: str) -> None:
    fraction = speech_fraction(nonspeech.KINDS[kind](8.0))
    assert fraction <= 0.05 < DEFAULT_MIN_SPEECH
    assert StreamPolicy().is_gated(fraction)


@pytest.mark.reference
@pytest.mark.parametrize("relpath", SPEECH)
def test_real_speech_is_speech(shared_dir: Path, relpath: str) -> None:
    audio = load_audio(shared_dir / relpath)
    fraction = speech_fraction(audio[:WINDOW_SAMPLES])
    assert fraction >= 0.6
    assert not StreamPolicy().is_gated(fraction)


def test_a_span_without_a_complete_frame_holds_no_speech() -> None:
    tracker = SpeechTracker()
    tracker.push(nonspeech.chords(2.0))
    assert tracker.fraction(0, FRAME - 1) == 0.0
    assert tracker.fraction(0, 32_000) <= 0.05


def _fractions(samples: np.ndarray, chunk: int) -> list[float]:
    """The service's way: windows cut from chunks, each window's fraction asked in order."""
    windower, tracker, out = Windower(16_000, early=(32_000, 48_000)), SpeechTracker(), []
    for start in range(0, samples.size, chunk):
        piece = samples[start:start + chunk]
        tracker.push(piece)
        out += [tracker.fraction(w.start, w.end) for w in windower.push(piece)]
    tail = windower.finish()
    return out + ([tracker.fraction(tail.start, tail.end)] if tail is not None else [])


def test_fractions_do_not_depend_on_how_the_samples_arrive() -> None:
    samples = np.concatenate([nonspeech.chords(3.0), nonspeech.pink_noise(3.0), nonspeech.dtmf(4.3)])
    whole = _fractions(samples, samples.size)
    assert len(whole) == 2 + 7 + 1  # two early windows, seven regular, the tail
    for chunk in (160, 3_200, 17_777):
        assert _fractions(samples, chunk) == whole
