"""The front-end kinds the architectures share: mel power, and frozen XLS-R hidden states."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamdet.architectures.spec import Frontend

if TYPE_CHECKING:
    from torch import nn

    from streamdet.manifest import CMManifest


class MelKind(Frontend):
    """80-band mel power (``streamdet.models.mel``): parameter-free, so CM files carry nothing for it."""

    kind = "mel"
    fp16_safe = False  # raw mel power of loud audio exceeds fp16's 65,504
    on_the_fly = True
    bench_windows = 64

    def build(self, w2v2_source: str | None = None, layer: int | None = None) -> nn.Module:
        from streamdet.models.mel import MelFrontend

        return MelFrontend()

    def exportable(self, frontend: nn.Module) -> nn.Module:
        from streamdet.models.mel import DFTMelFrontend

        return DFTMelFrontend()


class W2V2Kind(Frontend):
    """Frozen XLS-R ``hidden_states[layer]`` (``streamdet.models.w2v2``); weights named by the manifest."""

    kind = "w2v2"
    needs_xlsr = True

    def build(self, w2v2_source: str | None = None, layer: int | None = None) -> nn.Module:
        from streamdet.models.w2v2 import HIDDEN_LAYER, XLSR_300M, W2V2Frontend

        return W2V2Frontend(w2v2_source or XLSR_300M, HIDDEN_LAYER if layer is None else layer)

    def manifest_fields(self, w2v2_source: str | None) -> dict[str, Any]:
        return {"w2v2_source": w2v2_source}

    def check_manifest(self, manifest: CMManifest) -> None:
        if manifest.w2v2_layer < 1:
            raise ValueError(f"w2v2_layer must name a transformer layer (1 or more), got {manifest.w2v2_layer}")


MEL = MelKind()
W2V2 = W2V2Kind()
