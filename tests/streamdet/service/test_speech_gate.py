"""Acceptance of the speech gate, through a real service (ZeroMQ ingest and events on loopback):

ten minutes of silence, tones, DTMF, white and pink noise and music-like chords raise no alert even
with a scorer that calls every window spoof, and their score events say so (``gated``, ``speech``
under the gate); speech after them (an ALM-ADD fake clip) still raises an alert.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from streamdet.audio import SAMPLE_RATE, load_audio
from streamdet.stream.policy import DEFAULT_MIN_SPEECH

_spec = importlib.util.spec_from_file_location(
    "streamdet_tests_nonspeech", Path(__file__).parents[1] / "stream" / "nonspeech.py")
nonspeech = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nonspeech)

pytestmark = pytest.mark.reference

FAKE = "alm-add/audio/AudioLM/speech_0944c955-dc0b-4c87-a006-02d0f12adeec_fake.wav"
SEGMENT_S = 20.0
"""Each kind of non-speech lasts 20 s, cycling through all kinds for ten minutes."""


def _ten_minutes_without_speech() -> np.ndarray:
    kinds = [nonspeech.KINDS[name] for name in sorted(nonspeech.KINDS)]
    segments = [kinds[i % len(kinds)](SEGMENT_S) for i in range(int(600 / SEGMENT_S))]
    return np.concatenate(segments)


async def test_non_speech_raises_nothing_and_speech_after_it_still_alerts(shared_dir, start_service, kit,
                                                                           push) -> None:
    # Every window is spoof evidence for this scorer (p_spoof 1): only the gate can keep alerts off.
    service = await start_service(kit.FakeScorer(p_bonafide=0.0), http={"enabled": False},
                                  alerts={"min_speech": DEFAULT_MIN_SPEECH},
                                  scoring={"max_pending_per_stream": 1_000, "max_pending_windows": 1_000,
                                           "max_latency_s": 3_600})  # sent at once: keep every window
    listener = service.listen(maxsize=10_000)
    quiet = _ten_minutes_without_speech()
    speech = load_audio(shared_dir / FAKE)
    audio = np.concatenate([quiet, speech])[:, None]
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("gate", audio, fmt="f32le", chunk=8_000))
    events = await kit.collect_until_end(listener, "gate", timeout=300)

    assert events[-1].event == "end" and events[-1].dropped == 0
    scores = [e for e in events if e.event == "score"]
    speech_starts = quiet.size / SAMPLE_RATE
    before = [e for e in scores if e.end <= speech_starts]
    assert len(before) >= 590
    assert all(e.spoof and e.gated and e.speech < DEFAULT_MIN_SPEECH and not e.alert for e in before)
    raised = [e for e in events if e.event == "raised"]
    assert len(raised) == 1 and raised[0].start >= speech_starts - 4.1  # a window that holds the speech
    assert not raised[0].gated and raised[0].speech >= DEFAULT_MIN_SPEECH
    assert events[-1].alert
