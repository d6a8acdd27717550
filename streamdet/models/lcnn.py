"""Light CNN backend (paper recipe §4), for mel and for W2V2 features.

Module names (``conv1``..``conv9``, ``out``, ``fc_mu``) and the positions of layers inside each
``Sequential`` are those of the released checkpoints, so their state dicts load strictly.
"""

from __future__ import annotations

import torch
from torch import nn

MEL_FLAT_FEATURES = 32 * 31 * 5  # (channels, height, width) after conv9 for (505 frames, 80 mels)
W2V2_FLAT_FEATURES = 32 * 64 * 12  # ... for (1024 features, 201 frames)
HIDDEN_SIZE = 256


class MaxFeatureMap(nn.Module):
    """Split the channel (dim 1) or feature (last dim) axis in halves and keep the element-wise max."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=self.dim)
        return torch.maximum(first, second)


def _block(
    in_channels: int, out_channels: int, kernel: int, pool: bool = False, norm: bool = False
) -> nn.Sequential:
    """Conv → MFM (halves the channels) → optional MaxPool → optional BatchNorm without affine."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=1, padding=kernel // 2),
        MaxFeatureMap(dim=1),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    if norm:
        layers.append(nn.BatchNorm2d(out_channels // 2, affine=False))
    return nn.Sequential(*layers)


class LCNN(nn.Module):
    """LCNN backend: (batch, 1, H, W) features → (logits (batch, 2), hidden (batch, 256)).

    ``flat_features`` is 4960 for mel input (505 x 80) and 24576 for W2V2 input (1024 x 201).
    """

    def __init__(self, flat_features: int = MEL_FLAT_FEATURES, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv1 = _block(1, 64, 5, pool=True)
        self.conv2 = _block(32, 64, 1, norm=True)
        self.conv3 = _block(32, 96, 3, pool=True, norm=True)
        self.conv4 = _block(48, 96, 1, norm=True)
        self.conv5 = _block(48, 128, 3, pool=True)
        self.conv6 = _block(64, 128, 1, norm=True)
        self.conv7 = _block(64, 64, 3, norm=True)
        self.conv8 = _block(32, 64, 1, norm=True)
        self.conv9 = _block(32, 64, 3, pool=True)
        self.out = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(flat_features, 160),
            MaxFeatureMap(dim=-1),
            nn.Linear(80, HIDDEN_SIZE),
        )
        self.fc_mu = nn.Linear(HIDDEN_SIZE, 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features
        for block in (
            self.conv1, self.conv2, self.conv3, self.conv4, self.conv5,
            self.conv6, self.conv7, self.conv8, self.conv9,
        ):
            x = block(x)
        hidden = self.out(torch.flatten(x, 1))
        return self.fc_mu(hidden), hidden
