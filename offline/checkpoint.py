"""Safe import of the authors' released checkpoints.

The released files are whole pickled ``torch.nn.Module`` objects (``torch.save(model)``). Loading
them with ``torch.load`` would execute whatever the pickle names, and ``weights_only=True`` refuses
them because they reference the authors' ``model`` module. This importer reads the pickle with a
restricted unpickler that resolves only tensor-rebuild functions, storages and a few containers;
every module class (the authors' or torch's) becomes an inert placeholder whose state is plain data.
Nothing named by the file is ever called, except the allow-listed torch rebuild functions.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from offline.download import sha256_of
from streamdet import architectures
from streamdet.cm import build_backend, save_cm
from streamdet.errors import CheckpointError
from streamdet.manifest import CMManifest
from streamdet.models.w2v2 import XLSR_300M

# Globals a whole-module torch pickle may name that are data, not behaviour.
_ALLOWED_CALLABLES: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    # DataParallel wrappers pickle the device they ran on; building a torch.device runs no code.
    ("torch", "device"): torch.device,
}
_STORAGE_TYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ModulePlaceholder:
    """Stands in for a pickled nn.Module: keeps its ``__dict__``, runs nothing."""

    qualified_name = "?"

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"unexpected state for {self.qualified_name}")
        self.__dict__.update(state)


def _placeholder_class(module: str, name: str) -> type:
    return type(name, (_ModulePlaceholder,), {"qualified_name": f"{module}.{name}"})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self.module_classes: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[(module, name)]
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        # Classes (the authors' ``model.LCNN``, torch's ``Conv2d``...) become inert placeholders: the
        # real class is never resolved, so whatever it names cannot run. Functions are refused.
        if name[:1].isupper() and name.isidentifier():
            self.module_classes.append(f"{module}.{name}")
            return _placeholder_class(module, name)
        raise CheckpointError(
            f"refused to load {module}.{name}: the checkpoint names a global that is not model data"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id in checkpoint: {pid!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"unexpected storage type in checkpoint: {dtype!r}")
        raw = self._archive.read(f"{self._prefix}/data/{key}")
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) != numel * itemsize:
            raise CheckpointError(f"storage {key} has {len(raw)} bytes, expected {numel * itemsize}")
        buffer = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        return torch.storage.TypedStorage(wrap_storage=buffer.untyped_storage(), dtype=dtype, _internal=True)


def _collect_state(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Walk placeholder modules like ``nn.Module.state_dict`` does."""
    for name, value in obj.__dict__.get("_parameters", {}).items():
        if value is not None:
            out[prefix + name] = value.detach()
    non_persistent = obj.__dict__.get("_non_persistent_buffers_set", set())
    for name, value in obj.__dict__.get("_buffers", {}).items():
        if value is not None and name not in non_persistent:
            out[prefix + name] = value
    for name, child in obj.__dict__.get("_modules", {}).items():
        if child is not None:
            _collect_state(child, f"{prefix}{name}.", out)


def read_released_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read a released checkpoint's state dict without executing it.

    Returns the state dict (``module.`` prefixes of DataParallel stripped) and the qualified name of
    the top-level class the pickle names (e.g. ``model.LCNN``).
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a torch zip checkpoint ({exc})") from exc
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("/data.pkl")]
        unpickler = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix)
        try:
            root = unpickler.load()
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        except Exception as exc:  # malformed pickle streams raise many types
            raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc

    state: dict[str, torch.Tensor] = {}
    if isinstance(root, _ModulePlaceholder):
        # DataParallel wraps the real model as its child "module".
        _collect_state(root, "", state)
        top = root.qualified_name
        if top.endswith("DataParallel"):
            inner = root.__dict__.get("_modules", {}).get("module")
            top = getattr(inner, "qualified_name", top)
    elif isinstance(root, dict) and all(isinstance(v, torch.Tensor) for v in root.values()):
        state = dict(root)
        top = "state_dict"
    else:
        raise CheckpointError(f"{path}: holds neither a module nor a state dict ({type(root).__name__})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if not state:
        raise CheckpointError(f"{path}: no tensors found")
    return state, top


def infer_architecture(state: dict[str, torch.Tensor], top_class: str) -> str:
    """The registered architecture whose backend has exactly these tensors (names and shapes).

    Only architectures that declare ``authors_checkpoints`` are candidates: their backends keep the
    authors' parameter paths, so a released pickle's tensors name its architecture unambiguously.
    """
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    for name in architectures.names():
        architecture = architectures.get(name)
        if not architecture.authors_checkpoints:
            continue
        expected = {k: tuple(v.shape) for k, v in architecture.build_backend().state_dict().items()}
        if expected == shapes:
            return name
    raise CheckpointError(f"cannot tell which CM this is ({top_class}, {len(state)} tensors)")


def import_checkpoint(
    src: str | Path,
    out: str | Path,
    name: str | None = None,
    trained_on: str = "",
    expected_sha256: str | None = None,
) -> CMManifest:
    """Convert a released pickle into a CM directory (safetensors + manifest), without running it.

    The backend is rebuilt from streamdet's own code and loaded strictly, so a file whose tensors do
    not fit the architecture is refused here rather than at serving time.
    """
    src = Path(src)
    digest = sha256_of(src)
    if expected_sha256 and digest != expected_sha256:
        raise CheckpointError(f"{src}: sha256 {digest} does not match the pinned {expected_sha256}")
    state, top_class = read_released_state_dict(src)
    architecture = infer_architecture(state, top_class)
    backend = build_backend(architecture)
    try:
        backend.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{src}: tensors do not fit {architecture}: {exc}") from exc
    manifest = CMManifest(
        name=name or src.parent.name,
        **architectures.get(architecture).manifest_fields(XLSR_300M),
        trained_on=trained_on,
        source=str(src),
        source_sha256=digest,
    )
    return save_cm(out, backend.state_dict(), manifest)
