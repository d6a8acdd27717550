"""The exportable form of a CM: one graph from raw window to logits and bona fide probability.

``torch.stft`` returns complex tensors, which the TorchScript-based ONNX exporter refuses and which
TensorRT cannot run (it has no STFT/DFT layer). ``DFTMelFrontend`` computes the same power
spectrogram as ``streamdet.models.mel.MelFrontend`` with plain ops every runtime has: reflect padding,
then one strided ``conv1d`` whose kernels are the windowed DFT basis (cosine and sine rows), then the
mel filterbank as a matrix product. It is exact up to float rounding (the DFT basis is computed in
float64), and ``tests/offline/export`` checks it against ``MelFrontend``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from streamdet.cm import Countermeasure
from streamdet.models.mel import HOP_LENGTH, N_FFT, MelFrontend, mel_filterbank

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("logits", "bonafide_prob")


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
    """``MelFrontend`` without complex numbers: (batch, samples) → (batch, 1, frames, 80) mel power."""

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


class ExportableCM(nn.Module):
    """A CM with export-friendly layers: waveform (batch, 64600) → (logits (batch, 2), P(bona fide) (batch,))."""

    def __init__(self, cm: Countermeasure) -> None:
        super().__init__()
        frontend = cm.frontend
        self.frontend = DFTMelFrontend() if isinstance(frontend, MelFrontend) else frontend
        self.backend = cm.backend
        self.eval()

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _hidden = self.backend(self.frontend(waveform))
        return logits, torch.softmax(logits, dim=-1)[:, 0]
