"""A toy CM architecture declared the way a new one would be: this module plus one ``register`` line.

A tiny convolution over the mel front-end's output; nothing else in the code base knows its name.
"""

from __future__ import annotations

import torch
from torch import nn

from streamdet.architectures.frontends import MEL
from streamdet.architectures.spec import Architecture

NAME = "toy_mel_conv"


class ToyConv(nn.Module):
    """(batch, 1, frames, 80) mel power → (logits (batch, 2), hidden (batch, 4))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=5, stride=4)
        self.fc = nn.Linear(4, 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.relu(self.conv(torch.log1p(features))).mean(dim=(2, 3))
        return self.fc(hidden), hidden


ARCHITECTURE = Architecture(
    name=NAME,
    frontend=MEL,
    build_backend=ToyConv,
    logit_layer="fc",
    paper_columns=("Mel", "ToyConv"),
)
