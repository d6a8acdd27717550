"""Fixtures of the ingest tests: a released CM for the acceptance tests (needs ../shared)."""

from __future__ import annotations

import pytest

FAKE = "alm-add/audio/AudioLM/speech_497b5be1-e5f7-49dd-b244-67df3817d25b_fake.wav"
"""10.0 s, 16 kHz. To ``vocoder_mellcnn`` every window is spoof (p_bonafide < 2e-7) offline, after
G.711 μ-law at 8 kHz (< 2e-7) and after Opus (< 6e-6)."""
REAL = "alm-add/audio/AudioLM/speech_4093adea-d36c-42b8-a165-14cc5fceb461_real.wav"
"""4.0 s, 16 kHz: one (tiled) window, p_bonafide 0.990 to ``vocoder_mellcnn``."""


@pytest.fixture(scope="session")
def vocoder_scorer(released_checkpoint, tmp_path_factory):
    """The released ``vocoder_mellcnn`` (Mel-LCNN trained on ASVspoof2019 LA), on CPU. Not the
    codec-trained CM: that one calls codec-coded bona fide speech (μ-law, Opus) fake."""
    from offline.checkpoint import import_checkpoint
    from streamdet.scoring.torch_scorer import TorchScorer

    directory = tmp_path_factory.mktemp("vocoder_mellcnn")
    import_checkpoint(released_checkpoint("vocoder_mellcnn"), directory)
    return TorchScorer(directory, device="cpu")
