"""A small CNN over log-mel: the cheap second CM of the field cross-validation.

Mel power (the shared mel front-end) → ``log(mel + 1e-6)``, normalised per band over the window
(so a level or a fixed channel colouring shifts nothing) → four strided 3x3 convolutions with batch
norm and ReLU (8, 16, 32, 64 channels; every one halves time and frequency) → mean and max over the
remaining time-frequency map → a linear layer. About 10 M multiply-adds per 4-s window, a small fraction of
the LCNN's, so it trains from scratch in CPU minutes.
"""

from __future__ import annotations

import torch
from torch import nn

LOG_FLOOR = 1e-6
CHANNELS = (8, 16, 32, 64)


def log_mel(mel_power: torch.Tensor) -> torch.Tensor:
    """The features the convolutions see, before per-band normalisation (what training caches)."""
    return torch.log(mel_power + LOG_FLOOR)


class LogMelCNN(nn.Module):
    """(batch, 1, frames, 80) mel power → (logits (batch, 2), hidden (batch, 128))."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for channels in CHANNELS:
            layers += [nn.Conv2d(previous, channels, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            previous = channels
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(2 * previous, 2)

    def forward_log(self, log_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same network from log-mel input (cached features skip the log)."""
        x = log_features - log_features.mean(dim=2, keepdim=True)
        x = self.body(x / (x.std(dim=2, keepdim=True) + 1e-3))
        hidden = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.fc(self.dropout(hidden)), hidden

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_log(log_mel(features))
