"""What streamdet needs to know about a CM architecture, in one place.

An ``Architecture`` is declared once, in its own module of this package, and registered by name (the
name manifests and experiment configs carry). Every generic path asks the registry instead of
testing names: building and loading CMs, validating manifests, scoring (torch fast paths), export
(the front-end's exportable form), random-weight benchmarks, checkpoint import and training.

Nothing here imports torch at module level: manifests are validated against the registry, and
reading a manifest must stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from streamdet.manifest import CMManifest


class Frontend:
    """A front-end kind: what turns raw 16 kHz windows into the backend's features.

    Subclasses describe one kind each (``frontends.MEL``, ``frontends.W2V2``); architectures share them.
    """

    kind: str
    """The feature kind a training cache stores (``offline.features.specs.FrontendSpec.kind``)."""
    needs_xlsr: bool = False
    """Holds frozen XLS-R weights: loaded from ``w2v2_source`` (a hub id or a directory)."""
    fp16_safe: bool = True
    """May run under fp16 autocast on CUDA (mel power exceeds fp16's range, so mel is not)."""
    on_the_fly: bool = False
    """Cheap enough that training computes it per batch instead of reading prepared caches."""
    bench_windows: int = 8
    """Windows per round of ``streamdet bench --compare-reference`` (the authors' loop is one at a time)."""

    def build(self, w2v2_source: str | None = None, layer: int | None = None) -> nn.Module:
        """The front-end module; ``w2v2_source``/``layer`` matter only where ``needs_xlsr``."""
        raise NotImplementedError

    def exportable(self, frontend: nn.Module) -> nn.Module:
        """The same computation with ops every export target runs (ONNX, TensorRT)."""
        return frontend

    def manifest_fields(self, w2v2_source: str | None) -> dict[str, Any]:
        """What a new CM manifest records about this front-end."""
        return {}

    def check_manifest(self, manifest: CMManifest) -> None:
        """Refuse (ValueError) manifest fields that cannot describe this front-end."""


@dataclass(frozen=True)
class Architecture:
    """A CM architecture: front-end kind plus backend, and how each generic path treats it."""

    name: str
    """As written in manifests and experiment configs, e.g. ``mel_lcnn``."""
    frontend: Frontend
    build_backend: Callable[[], nn.Module]
    """A freshly initialised backend: (batch, 1, H, W) features → (logits (batch, 2), hidden)."""
    logit_layer: str
    """Attribute name of the backend's last ``nn.Linear`` (random CMs scale it so scores spread)."""
    paper_columns: tuple[str, str]
    """Feature and backbone columns of the paper's result tables, e.g. ("Mel", "LCNN")."""
    channels_last: bool = False
    """A CNN backend that runs faster on channels-last activations on CPU (scorer and trainer default)."""
    traceable: bool = False
    """The whole CM (front-end, backend, softmax) traces exactly with ``torch.jit.trace``: no data-dependent
    control flow, so a trace per batch size scores as eager mode does (the scorer's CPU default)."""
    ddp_unused_parameters: bool = False
    """The backend holds parameters its forward never uses (DDP must be told)."""
    authors_checkpoints: bool = False
    """The authors' released pickles of this architecture can be imported (``offline.checkpoint``):
    its backend's parameter paths and shapes are theirs, so a pickle is recognised by its tensors."""

    def check_manifest(self, manifest: CMManifest) -> None:
        self.frontend.check_manifest(manifest)

    def manifest_fields(self, w2v2_source: str | None = None) -> dict[str, Any]:
        """Keyword arguments of ``CMManifest`` a new CM of this architecture records."""
        return {"architecture": self.name, **self.frontend.manifest_fields(w2v2_source)}
