"""Mel front-end of the Mel-LCNN, in plain torch (paper recipe §2).

Bit-for-bit the recipe of torchaudio's ``MelSpectrogram(sample_rate=16000, n_fft=512,
hop_length=128, n_mels=80)``: power spectrogram of a centred, reflect-padded STFT with a periodic
Hann window, then 80 triangular HTK-scale filters from 0 to 8 kHz without area normalisation. No log
and no normalisation: the released CMs were trained on the raw mel power.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


def dft_basis(n_fft: int = N_FFT) -> torch.Tensor:
    """(2 * (n_fft // 2 + 1), 1, n_fft) conv1d kernels: periodic-Hann-windowed cos rows, then -sin rows."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    angle = 2.0 * math.pi * torch.outer(k, n) / n_fft  # (freqs, n_fft)
    real = torch.cos(angle) * window
    imag = -torch.sin(angle) * window
    return torch.cat([real, imag], dim=0).unsqueeze(1).to(torch.float32)


class DFTMelFrontend(nn.Module):
    """``MelFrontend`` without complex numbers, for export: (batch, samples) → (batch, 1, frames, 80).

    ``torch.stft`` returns complex tensors, which ONNX exporters refuse and TensorRT cannot run (it
    has no STFT layer). This computes the same power spectrogram with plain ops every runtime has:
    reflect padding, one strided ``conv1d`` whose kernels are the windowed DFT basis (computed in
    float64), then the mel filterbank as a matrix product. Exact up to float rounding.
    """

    def __init__(self) -> None:
        super().__init__()
        self.n_freqs = N_FFT // 2 + 1
        self.register_buffer("basis", dft_basis(N_FFT), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        half = N_FFT // 2
        padded = F.pad(waveform.unsqueeze(1), (half, half), mode="reflect")  # (batch, 1, samples + n_fft)
        spectrum = F.conv1d(padded, self.basis, stride=HOP_LENGTH)  # (batch, 2 * freqs, frames)
        real, imag = spectrum[:, : self.n_freqs], spectrum[:, self.n_freqs :]
        power = real * real + imag * imag  # (batch, freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self.filterbank)  # (batch, frames, mels)
        return mel.unsqueeze(1)
