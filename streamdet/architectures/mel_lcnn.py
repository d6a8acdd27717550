"""Mel-LCNN: the Light CNN over 80-band mel power (505 frames x 80 mels)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamdet.architectures.frontends import MEL
from streamdet.architectures.spec import Architecture

if TYPE_CHECKING:
    from torch import nn


def build_backend() -> nn.Module:
    from streamdet.models.lcnn import LCNN, MEL_FLAT_FEATURES

    return LCNN(MEL_FLAT_FEATURES)


ARCHITECTURE = Architecture(
    name="mel_lcnn",
    frontend=MEL,
    build_backend=build_backend,
    logit_layer="fc_mu",
    paper_columns=("Mel", "LCNN"),
    channels_last=True,
    traceable=True,
    authors_checkpoints=True,
)
