"""Frozen XLS-R front-end of the W2V2 CMs (paper recipe §3).

The CMs use ``hidden_states[5]`` of ``facebook/wav2vec2-xls-r-300m``: the output of the fifth
transformer layer. XLS-R is a "stable layer norm" model whose encoder applies its final
``layer_norm`` only after the last layer, so ``hidden_states[5]`` carries no final norm. Running only
the first five layers and skipping that norm is therefore exact, and saves layers 6-24 (about two
thirds of the front-end's compute).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamdet.errors import PretrainedModelError

XLSR_300M = "facebook/wav2vec2-xls-r-300m"
HIDDEN_LAYER = 5
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's do_normalize epsilon
HUB_PROBE_TIMEOUT_S = 5.0
SOURCE_REMEDY = "pass --w2v2-source DIR, a local directory holding XLS-R (config.json and model.safetensors)"


def xlsr_300m_config(num_hidden_layers: int = 24):
    """The architecture of ``facebook/wav2vec2-xls-r-300m`` (24 layers), for random-weight stand-ins.

    The weights cannot be downloaded on machines without hub access; benchmarks and export checks
    build this shape with random weights, since their cost does not depend on the values.
    """
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=1024,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=16,
        intermediate_size=4096,
        conv_dim=(512,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_bias=True,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        feat_extract_activation="gelu",
        hidden_act="gelu",
    )


def _hub_unreachable() -> str | None:
    """Why the model hub cannot be used now (offline mode, no answer), or None if it answers.

    One request with a short timeout and no retries: transformers itself retries an unreachable hub
    for about half a minute before giving up, which is no way to tell an operator it is offline.
    """
    from huggingface_hub import constants, get_session

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as exc:  # any transport failure (DNS, refused, timeout, proxy) means: not reachable
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"the model hub {constants.ENDPOINT} is not reachable ({detail})"
    return None


def load_pretrained(source: str, remedy: str = SOURCE_REMEDY) -> nn.Module:
    """The ``Wav2Vec2Model`` at ``source``: a local directory, or a hub id (downloaded, or cached).

    When the hub is offline or unreachable, a hub id is taken from the local cache only, at once.
    Any failure raises ``PretrainedModelError`` (one line, ending with ``remedy``).
    """
    from transformers import Wav2Vec2Model

    local_only = False
    reason = ""
    if not Path(source).is_dir():
        unreachable = _hub_unreachable()
        if unreachable is not None:
            local_only = True
            reason = f"{unreachable} and it is not in the local cache"
    try:
        return Wav2Vec2Model.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:  # transformers: not found, not downloadable, not a model
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PretrainedModelError(source, reason or first_line, remedy) from exc


def normalize_waveform(waveform: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per example, as ``Wav2Vec2FeatureExtractor(do_normalize=True)``."""
    mean = waveform.mean(dim=-1, keepdim=True)
    var = waveform.var(dim=-1, keepdim=True, unbiased=False)
    return (waveform - mean) / torch.sqrt(var + NORM_EPS)


def truncate_to_layer(model: nn.Module, layer: int = HIDDEN_LAYER) -> nn.Module:
    """Keep the first ``layer`` transformer layers and drop the encoder's final norm, in place.

    Afterwards ``model(x).last_hidden_state`` equals the full model's ``hidden_states[layer]``.
    Only valid for stable-layer-norm models (XLS-R); others normalise before the layers.
    """
    if not model.config.do_stable_layer_norm:
        raise ValueError("layer truncation is exact only for do_stable_layer_norm=True models (XLS-R)")
    encoder = model.encoder
    if layer > len(encoder.layers):
        raise ValueError(f"model has {len(encoder.layers)} layers, cannot keep {layer}")
    encoder.layers = encoder.layers[:layer]
    encoder.layer_norm = nn.Identity()
    model.config.num_hidden_layers = layer
    return model


class W2V2Frontend(nn.Module):
    """(batch, samples) at 16 kHz → (batch, 1, hidden_size, frames): frozen XLS-R layer-5 features.

    ``source`` is a hub id or a local directory holding a ``Wav2Vec2Model`` (config and weights);
    see ``load_pretrained`` for what happens when it cannot be loaded.
    """

    def __init__(self, source: str = XLSR_300M, layer: int = HIDDEN_LAYER) -> None:
        super().__init__()
        model = load_pretrained(source)
        self.source = source
        self.layer = layer
        self.model = truncate_to_layer(model, layer).eval()
        self.model.requires_grad_(False)

    @classmethod
    def from_model(cls, model: nn.Module, layer: int = HIDDEN_LAYER) -> W2V2Frontend:
        """Wrap an already-built ``Wav2Vec2Model`` (tests, exports)."""
        frontend = cls.__new__(cls)
        nn.Module.__init__(frontend)
        frontend.source = getattr(model.config, "_name_or_path", "") or "<in-memory>"
        frontend.layer = layer
        frontend.model = truncate_to_layer(model, layer).eval()
        frontend.model.requires_grad_(False)
        return frontend

    def train(self, mode: bool = True) -> W2V2Frontend:
        # Frozen: the front-end stays in eval mode (no dropout, no masking) even while training.
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        hidden = self.model(normalize_waveform(waveform)).last_hidden_state  # (batch, frames, dim)
        return hidden.transpose(1, 2).unsqueeze(1)
