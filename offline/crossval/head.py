"""A Mel-LCNN's head (``out`` + ``fc_mu``), retrained on frozen trunk features.

The head starts from the CM's own head and is fine-tuned with Adam on the training windows, each
weighted so that every group (source or system) counts the same within its class and the two
classes count the same: otherwise thousands of spoken digits from two sources would decide what
"real" sounds like. Dropout stays as in the backend (the LCNN's 0.7 before the first linear layer).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from offline.crossval.config import HeadSettings
from streamdet.cm import Countermeasure


class Head(nn.Module):
    """Trunk features (batch, 4960) → logits (batch, 2), logit 0 = bona fide."""

    def __init__(self, out: nn.Module, fc_mu: nn.Module) -> None:
        super().__init__()
        self.out, self.fc_mu = out, fc_mu

    @classmethod
    def of(cls, cm: Countermeasure) -> Head:
        return cls(copy.deepcopy(cm.backend.out), copy.deepcopy(cm.backend.fc_mu)).float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc_mu(self.out(features))

    @torch.inference_mode()
    def p_bonafide(self, features: np.ndarray, batch: int = 1024) -> np.ndarray:
        self.eval()
        parts = [torch.softmax(self(torch.from_numpy(np.asarray(features[i : i + batch], np.float32))), -1)[:, 0]
                 for i in range(0, len(features), batch)]
        return torch.cat(parts).double().numpy() if parts else np.zeros(0)

    def backend_state(self, cm: Countermeasure) -> dict[str, torch.Tensor]:
        """The CM's backend state dict with this head in place of the CM's own."""
        state = {k: v.clone() for k, v in cm.backend.state_dict().items()}
        for name, value in self.state_dict().items():
            state[name] = value.detach().clone()
        return state


class LogMelHead(nn.Module):
    """A whole ``logmel_cnn`` backend as a "head" over cached, flattened log-mel features."""

    def __init__(self, backend: nn.Module, bands: int = 80) -> None:
        super().__init__()
        self.backend, self.bands = backend, bands

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.backend.forward_log(features.view(features.shape[0], 1, -1, self.bands))[0]

    p_bonafide = Head.p_bonafide

    def backend_state(self, cm: Countermeasure | None = None) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.backend.state_dict().items()}


def initial_head(architecture: str | None, cm: Countermeasure, seed: int = 0) -> nn.Module:
    """The head a candidate starts from: the CM's own, or a freshly initialised (seeded) architecture."""
    if architecture is None:
        return Head.of(cm)
    from streamdet import architectures

    torch.manual_seed(seed)
    return LogMelHead(architectures.get(architecture).build_backend())


def subsample(count: int, limit: int | None, labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` windows, half of each class where possible (seeded)."""
    if limit is None or count <= limit:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        picked.append(rng.choice(members, min(members.size, limit // 2), replace=False))
    return np.sort(np.concatenate(picked))


def balanced_weights(labels: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Per-window weights: each group totals the same within its class, each class totals 1/2."""
    groups = np.asarray(groups)
    weights = np.zeros(labels.shape[0], np.float64)
    for label in np.unique(labels):
        in_class = labels == label
        names = np.unique(groups[in_class])
        for g in names:
            members = in_class & (groups == g)
            weights[members] = 1.0 / (members.sum() * len(names) * 2)
    return weights / weights.sum() * labels.shape[0]


def train_head(head: nn.Module, features: np.ndarray, labels: np.ndarray, weights: np.ndarray,
               settings: HeadSettings) -> nn.Module:
    """Fine-tune a copy of ``head``; deterministic under ``settings.seed`` (single-threaded torch)."""
    head = copy.deepcopy(head).float()
    torch.manual_seed(settings.seed)
    x = torch.from_numpy(np.asarray(features))  # float16 features are widened per batch
    y = torch.from_numpy(np.asarray(labels, np.int64))
    w = torch.from_numpy(np.asarray(weights, np.float32))
    optimiser = torch.optim.Adam(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    head.train()
    for _ in range(settings.epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = (loss_fn(head(x[batch].float()), y[batch]) * w[batch]).sum() / w[batch].sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return head.eval()
