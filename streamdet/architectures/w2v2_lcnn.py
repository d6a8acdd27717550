"""W2V2-LCNN: the Light CNN over frozen XLS-R layer-5 features (1024 features x 201 frames)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamdet.architectures.frontends import W2V2
from streamdet.architectures.spec import Architecture

if TYPE_CHECKING:
    from torch import nn


def build_backend() -> nn.Module:
    from streamdet.models.lcnn import LCNN, W2V2_FLAT_FEATURES

    return LCNN(W2V2_FLAT_FEATURES)


ARCHITECTURE = Architecture(
    name="w2v2_lcnn",
    frontend=W2V2,
    build_backend=build_backend,
    logit_layer="fc_mu",
    paper_columns=("W2V2", "LCNN"),
    channels_last=True,
    authors_checkpoints=True,
)
