"""The plain-torch mel front-end (paper recipe §2)."""

from __future__ import annotations

import numpy as np
import torch

from streamdet.audio import WINDOW_SAMPLES
from streamdet.models.mel import MelFrontend, mel_filterbank


def test_output_layout_is_time_by_mels():
    out = MelFrontend()(torch.randn(3, WINDOW_SAMPLES))
    assert out.shape == (3, 1, 505, 80)


def test_filterbank_is_htk_triangles_without_normalisation():
    fb = mel_filterbank()
    assert fb.shape == (257, 80)
    assert torch.all(fb >= 0)
    assert torch.isclose(fb.max(), torch.tensor(1.0), atol=0.05)  # unnormalised peaks near 1
    # HTK scale: the first filter's peak sits at mel(0) + 1/81 of the 0-8 kHz mel range.
    mel_max = 2595 * np.log10(1 + 8000 / 700)
    peak_hz = 700 * (10 ** (mel_max / 81 / 2595) - 1)
    assert abs(int(fb[:, 0].argmax()) * 16000 / 512 - peak_hz) < 16000 / 512


def test_power_spectrum_of_a_tone_peaks_in_its_band():
    t = torch.arange(WINDOW_SAMPLES) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t)[None]
    mel = MelFrontend()(tone)[0, 0]  # (frames, mels)
    peak_band = int(mel.mean(0).argmax())
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 82)[1:-1] / 2595) - 1)
    assert abs(centres[peak_band] - 1000) < 80
    # A sine of amplitude 1 carries (n_fft/4)^2 power per bin pair in |STFT|^2: no log, no scaling.
    assert mel.max() > 1000


def test_batch_items_are_independent():
    x = torch.randn(2, WINDOW_SAMPLES)
    front = MelFrontend()
    torch.testing.assert_close(front(x)[1:], front(x[1:]))
