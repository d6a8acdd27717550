"""The export graph: the DFT-as-convolution mel front-end equals MelFrontend, the wrapper equals the CM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from offline.export.common import verification_windows
from offline.export.graph import DFTMelFrontend, ExportableCM, dft_basis
from streamdet.cm import load_cm
from streamdet.models.mel import MelFrontend


def test_dft_basis_is_the_windowed_rfft():
    basis = dft_basis(512)[:, 0].double()  # (514, 512)
    frame = torch.randn(512, dtype=torch.float64)
    window = torch.hann_window(512, periodic=True, dtype=torch.float64)
    spectrum = torch.fft.rfft(frame * window)
    got = basis @ frame
    torch.testing.assert_close(got[:257], spectrum.real, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got[257:], spectrum.imag, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("amplitude", [1e-3, 0.1, 1.0])
def test_dft_mel_equals_stft_mel(amplitude: float):
    torch.manual_seed(0)
    x = torch.randn(2, 64600).clamp(-3, 3) * amplitude / 3
    with torch.no_grad():
        expected = MelFrontend()(x)
        got = DFTMelFrontend()(x)
    assert got.shape == expected.shape == (2, 1, 505, 80)
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=scale * 1e-6)


def test_dft_mel_handles_short_and_odd_lengths():
    x = torch.randn(1, 1001)
    with torch.no_grad():
        torch.testing.assert_close(DFTMelFrontend()(x), MelFrontend()(x), rtol=1e-4, atol=1e-4)


def test_exportable_cm_matches_the_countermeasure(random_mel_cm):
    cm = load_cm(random_mel_cm)
    windows = torch.from_numpy(verification_windows(batch=3))
    with torch.no_grad():
        logits, prob = ExportableCM(cm)(windows)
        expected = cm(windows)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(prob.numpy(), cm.bonafide_probability(windows).numpy(), atol=1e-5)
    # The scaled random head spreads the probabilities, so the comparisons above mean something.
    assert prob.max() - prob.min() > 1e-3
