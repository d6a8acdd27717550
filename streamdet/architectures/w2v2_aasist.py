"""W2V2-AASIST: the AASIST graph-attention backend over frozen XLS-R layer-5 features."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamdet.architectures.frontends import W2V2
from streamdet.architectures.spec import Architecture

if TYPE_CHECKING:
    from torch import nn


def build_backend() -> nn.Module:
    from streamdet.models.aasist import W2V2AASIST

    return W2V2AASIST()


ARCHITECTURE = Architecture(
    name="w2v2_aasist",
    frontend=W2V2,
    build_backend=build_backend,
    logit_layer="out_layer",
    paper_columns=("W2V2", "AASIST"),
    # Its residual blocks hold a bn1 the released model never uses (a quirk its weights depend on).
    ddp_unused_parameters=True,
    authors_checkpoints=True,
)
