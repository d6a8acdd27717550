"""The exportable form of a CM: one graph from raw window to logits and bona fide probability.

Each architecture's front-end says how it is exported (``streamdet.architectures``): the mel
front-end becomes ``streamdet.models.mel.DFTMelFrontend`` (a conv1d with the windowed DFT basis
instead of ``torch.stft``'s complex output, which neither the ONNX exporter nor TensorRT accepts);
the W2V2 front-end is exported as it is. ``tests/offline/export`` checks the forms agree.
"""

from __future__ import annotations

import torch
from torch import nn

from streamdet import architectures
from streamdet.cm import Countermeasure
from streamdet.models.mel import DFTMelFrontend, dft_basis

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "DFTMelFrontend", "ExportableCM", "dft_basis"]

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("logits", "bonafide_prob")


class ExportableCM(nn.Module):
    """A CM with export-friendly layers: waveform (batch, 64600) → (logits (batch, 2), P(bona fide) (batch,))."""

    def __init__(self, cm: Countermeasure) -> None:
        super().__init__()
        architecture = architectures.get(cm.manifest.architecture)
        self.frontend = architecture.frontend.exportable(cm.frontend)
        self.backend = cm.backend
        self.eval()

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _hidden = self.backend(self.frontend(waveform))
        return logits, torch.softmax(logits, dim=-1)[:, 0]
