"""CMs with random weights: engines to export, serve and time where no trained weights are at hand.

The GPU check and the tests use them. Random LCNN/AASIST heads put nearly every window at
P(bona fide) ≈ 0.5, which hides differences between runtimes; ``logit_scale`` multiplies the last
layer's weights so that probabilities spread over (0, 1).
"""

from __future__ import annotations

from pathlib import Path

import torch

from streamdet import architectures
from streamdet.bench.models import random_backend
from streamdet.cm import save_cm
from streamdet.manifest import CMManifest


def save_random_w2v2(directory: str | Path, config: object, seed: int = 0) -> Path:
    """Write a randomly initialised ``Wav2Vec2Model`` to ``directory`` (loadable as a w2v2 source)."""
    from transformers import Wav2Vec2Model

    torch.manual_seed(seed)
    directory = Path(directory)
    Wav2Vec2Model(config).eval().save_pretrained(directory)
    return directory


def save_random_cm(
    directory: str | Path,
    architecture: str,
    name: str | None = None,
    seed: int = 0,
    w2v2_source: str | None = None,
    logit_scale: float = 30.0,
) -> CMManifest:
    """A CM directory with a random backend; ``w2v2_source`` is recorded for W2V2 architectures."""
    backend = random_backend(architecture, seed, logit_scale)
    manifest = CMManifest(
        name=name or f"random_{architecture}", **architectures.get(architecture).manifest_fields(w2v2_source)
    )
    return save_cm(directory, backend.state_dict(), manifest)
