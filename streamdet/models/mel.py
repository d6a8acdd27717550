"""Mel front-end of the Mel-LCNN, in plain torch (paper recipe §2).

Bit-for-bit the recipe of torchaudio's ``MelSpectrogram(sample_rate=16000, n_fft=512,
hop_length=128, n_mels=80)``: power spectrogram of a centred, reflect-padded STFT with a periodic
Hann window, then 80 triangular HTK-scale filters from 0 to 8 kHz without area normalisation. No log
and no normalisation: the released CMs were trained on the raw mel power.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from streamdet.audio import SAMPLE_RATE

N_FFT = 512
HOP_LENGTH = 128
N_MELS = 80


def _hz_to_mel(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def mel_filterbank(
    n_freqs: int = N_FFT // 2 + 1,
    n_mels: int = N_MELS,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """(n_freqs, n_mels) triangular HTK filters, computed in float32 as torchaudio does."""
    f_max = sample_rate / 2 if f_max is None else f_max
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_points = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    hz_points = 700.0 * (10 ** (mel_points / 2595.0) - 1.0)
    spacing = hz_points[1:] - hz_points[:-1]
    slopes = hz_points.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    rising = -slopes[:, :-2] / spacing[:-1]
    falling = slopes[:, 2:] / spacing[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class MelFrontend(nn.Module):
    """(batch, samples) waveform at 16 kHz → (batch, 1, frames, 80) mel power, time on the height axis."""

    def __init__(self) -> None:
        super().__init__()
        # Non-persistent: derived from constants, so CM weight files need not carry them.
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(
            waveform,
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            win_length=N_FFT,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spectrum.real.square() + spectrum.imag.square()  # (batch, freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self.filterbank)  # (batch, frames, mels)
        return mel.unsqueeze(1)
