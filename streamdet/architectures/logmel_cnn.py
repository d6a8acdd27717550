"""LogMel-CNN: a small strided CNN over normalised log-mel (``streamdet.models.logmel_cnn``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamdet.architectures.frontends import MEL
from streamdet.architectures.spec import Architecture

if TYPE_CHECKING:
    from torch import nn


def build_backend() -> nn.Module:
    from streamdet.models.logmel_cnn import LogMelCNN

    return LogMelCNN()


ARCHITECTURE = Architecture(
    name="logmel_cnn",
    frontend=MEL,
    build_backend=build_backend,
    logit_layer="fc",
    paper_columns=("Mel", "CNN"),  # not a paper CM; the column names only label tables
    channels_last=True,
    traceable=True,
)
