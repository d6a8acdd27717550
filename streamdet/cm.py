"""A countermeasure (CM) = front-end + backend, and streamdet's own on-disk format for it.

A CM directory holds ``model.safetensors`` (the backend's state dict: the front-end is either
parameter-free (mel) or a frozen public model named in the manifest (XLS-R)) and ``manifest.json``.
Loading needs no pickle. The manifest's ``weights_sha256`` is checked against the weights; a manifest
without one is refused unless the caller trusts unhashed CMs (``streamdet serve --trust-unhashed``,
setting ``scoring.trust_unhashed``), since nothing else would notice weights swapped on disk.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from streamdet import architectures
from streamdet.errors import ManifestError
from streamdet.manifest import MANIFEST_NAME, WEIGHTS_NAME, CMManifest, read_manifest, write_manifest


def build_backend(architecture: str) -> nn.Module:
    """A freshly initialised backend for an architecture name (a ManifestError for an unknown one)."""
    return architectures.get(architecture).build_backend()


def build_frontend(manifest: CMManifest, w2v2_source: str | None = None) -> nn.Module:
    """The front-end a CM needs; ``w2v2_source`` overrides the manifest's XLS-R location."""
    frontend = architectures.get(manifest.architecture).frontend
    return frontend.build(w2v2_source or manifest.w2v2_source, manifest.w2v2_layer)


class Countermeasure(nn.Module):
    """Raw 16 kHz windows (batch, 64600) → logits (batch, 2), logit 0 = bona fide."""

    def __init__(self, frontend: nn.Module, backend: nn.Module, manifest: CMManifest) -> None:
        super().__init__()
        self.frontend = frontend
        self.backend = backend
        self.manifest = manifest

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        logits, _hidden = self.backend(self.frontend(waveform))
        return logits

    @torch.inference_mode()
    def bonafide_probability(self, waveform: torch.Tensor) -> torch.Tensor:
        """softmax(logits)[:, 0]: the score written to score files and compared to the threshold."""
        return torch.softmax(self(waveform), dim=-1)[:, 0]


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """A content hash of a state dict, independent of how it was serialised."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_cm(directory: str | Path, backend_state: dict[str, torch.Tensor], manifest: CMManifest) -> CMManifest:
    """Write a CM directory; the manifest gets the weights' hash. Returns the manifest written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in backend_state.items()}
    manifest = manifest.model_copy(update={"weights_sha256": state_dict_sha256(state)})
    # Written like any other file (mode 0666 less the umask): safetensors' save_file leaves 0600.
    (directory / WEIGHTS_NAME).write_bytes(save(state))
    write_manifest(directory / MANIFEST_NAME, manifest)
    return manifest


def read_cm_manifest(directory: str | Path) -> CMManifest:
    directory = Path(directory)
    if directory.is_file() and directory.name == MANIFEST_NAME:
        directory = directory.parent
    return read_manifest(directory / MANIFEST_NAME, CMManifest)  # type: ignore[return-value]


MAX_SAFETENSORS_HEADER = 16 << 20
"""A CM's safetensors header (JSON: tensor names, shapes, offsets) is a few KiB; larger is refused
before it is read."""


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated, damaged or absurd file is a one-line ManifestError."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read weights ({exc})") from exc
    if len(prefix) < 8:
        raise ManifestError(f"{path}: not a safetensors file ({len(prefix)} bytes)")
    header = int.from_bytes(prefix, "little")
    if header > MAX_SAFETENSORS_HEADER or header + 8 > path.stat().st_size:
        raise ManifestError(f"{path}: not a safetensors file (header of {header} bytes in a file of "
                            f"{path.stat().st_size}; truncated or damaged)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ManifestError(f"{path}: damaged safetensors file ({exc})".splitlines()[0]) from exc


def load_cm(
    directory: str | Path, w2v2_source: str | None = None, device: str | torch.device = "cpu",
    *, trust_unhashed: bool = False,
) -> Countermeasure:
    """Load a CM directory written by ``save_cm`` (strict weights, hash checked), in eval mode.
    ``trust_unhashed``: load a manifest without ``weights_sha256`` (refused otherwise)."""
    directory = Path(directory)
    manifest = read_cm_manifest(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ManifestError(f"{directory}: no {WEIGHTS_NAME}")
    if not manifest.weights_sha256 and not trust_unhashed:
        raise ManifestError(f"{directory / MANIFEST_NAME}: no weights_sha256, so altered weights would go "
                            "unnoticed; re-save the CM, or load it anyway with --trust-unhashed "
                            "(setting scoring.trust_unhashed)")
    state = load_weights(weights)
    if manifest.weights_sha256 and state_dict_sha256(state) != manifest.weights_sha256:
        raise ManifestError(f"{weights}: weights do not match the manifest's hash")
    backend = build_backend(manifest.architecture)
    try:
        backend.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ManifestError(f"{weights}: weights do not fit {manifest.architecture}: {exc}") from exc
    cm = Countermeasure(build_frontend(manifest, w2v2_source), backend, manifest)
    return cm.to(device).eval()
