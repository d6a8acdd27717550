"""Countermeasures with random weights of the real shapes, built in memory.

The cost of a forward pass does not depend on the weights' values, so throughput can be measured
without the released checkpoints or XLS-R's weights (which cannot be downloaded on the build and CI
machines). Random LCNN/AASIST heads put nearly every window at P(bona fide) ≈ 0.5, which would hide
differences between two ways of scoring; ``LOGIT_SCALE`` spreads the probabilities over (0, 1).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamdet import architectures
from streamdet.cm import Countermeasure, save_cm
from streamdet.manifest import CMManifest
from streamdet.models.w2v2 import HIDDEN_LAYER, W2V2Frontend, xlsr_300m_config

XLSR_LAYERS = 24
LOGIT_SCALE = 30.0


def random_xlsr(num_hidden_layers: int = XLSR_LAYERS, seed: int = 0) -> nn.Module:
    """A ``Wav2Vec2Model`` of XLS-R 300M's shape with random weights, in eval mode."""
    from transformers import Wav2Vec2Model

    torch.manual_seed(seed)
    return Wav2Vec2Model(xlsr_300m_config(num_hidden_layers)).eval()


def load_xlsr(source: str, num_hidden_layers: int | None = None) -> nn.Module:
    """XLS-R from a hub id or local directory (eval mode), optionally keeping only the first layers
    (layers beyond are never built: ``hidden_states[k]`` for k <= that count is unchanged)."""
    from transformers import Wav2Vec2Model

    options = {} if num_hidden_layers is None else {"num_hidden_layers": num_hidden_layers}
    return Wav2Vec2Model.from_pretrained(source, **options).eval()


def random_backend(architecture: str, seed: int = 0, logit_scale: float = LOGIT_SCALE) -> nn.Module:
    """A backend with random weights whose last layer is scaled so that probabilities spread."""
    spec = architectures.get(architecture)
    torch.manual_seed(seed)
    backend = spec.build_backend()
    with torch.no_grad():
        getattr(backend, spec.logit_layer).weight.mul_(logit_scale)
    return backend.eval()


def five_layer_copy(xlsr: nn.Module) -> nn.Module:
    """A new model holding the first ``HIDDEN_LAYER`` layers of ``xlsr`` with the same weights (the
    full model stays intact, for the reference path)."""
    import copy

    config = copy.deepcopy(xlsr.config)
    config.num_hidden_layers = HIDDEN_LAYER
    model = type(xlsr)(config).eval()
    missing, _unexpected = model.load_state_dict(xlsr.state_dict(), strict=False)
    if missing:
        raise ValueError(f"the five-layer copy lacks weights: {missing[:5]}")
    return model


def manifest_for(architecture: str, name: str | None = None) -> CMManifest:
    return CMManifest(name=name or f"random_{architecture}", **architectures.get(architecture).manifest_fields())


def random_countermeasure(architecture: str, seed: int = 0, w2v2_source: str | None = None,
                          xlsr: nn.Module | None = None) -> Countermeasure:
    """A whole CM in streamdet's five-layer form: random backend; a W2V2 front-end is ``xlsr``
    (truncated copy), else XLS-R from ``w2v2_source``, else random XLS-R 300M-shaped weights."""
    backend = random_backend(architecture, seed)
    spec = architectures.get(architecture)
    if not spec.frontend.needs_xlsr:
        frontend = spec.frontend.build()
    else:
        if xlsr is not None:
            model = five_layer_copy(xlsr)
        elif w2v2_source:
            model = load_xlsr(w2v2_source, HIDDEN_LAYER)
        else:
            model = random_xlsr(HIDDEN_LAYER, seed)
        frontend = W2V2Frontend.from_model(model, HIDDEN_LAYER)
    return Countermeasure(frontend, backend, manifest_for(architecture)).eval()


def save_random_cm(directory: str | Path, architecture: str = "mel_lcnn", seed: int = 0) -> CMManifest:
    """A CM directory (streamdet's format) with a random backend, e.g. to serve in a CI benchmark."""
    return save_cm(directory, random_backend(architecture, seed).state_dict(), manifest_for(architecture))
