"""Safe import of the authors' released checkpoints.

The released files are whole pickled ``torch.nn.Module`` objects (``torch.save(model)``). Loading
them with ``torch.load`` would execute whatever the pickle names, and ``weights_only=True`` refuses
them because they reference the authors' ``model`` module. This importer reads the pickle with a
restricted unpickler that resolves only tensor-rebuild functions, storages and a few containers;
every module class (the authors' or torch's) becomes an inert placeholder whose state is plain data.
Nothing named by the file is ever called, except the allow-listed torch rebuild functions.

A hostile file cannot make the import allocate more than the file holds: every storage's declared
size must equal its archive entry's size, entries must be stored uncompressed (as ``torch.save``
writes them; a compressed entry could unpack to far more than the file's size), each storage is read
once however many tensors share it, and a tensor's view must fit inside its storage. Module trees are
walked to ``MAX_MODULE_DEPTH`` at most. Every failure is a one-line ``CheckpointError``.
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

MAX_MODULE_DEPTH = 64
"""Deepest module nesting walked; real CMs are under 10 levels deep."""
MAX_TENSOR_DIMS = 32
MAX_PICKLE_BYTES = 64 << 20
"""Largest ``data.pkl`` read (the released ones are tens of KiB: the tensors live in other entries)."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


def _checked_rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` once the view is known to lie inside its storage (``set_``
    would otherwise grow a storage to whatever size the file claims)."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise CheckpointError(f"a tensor is built on {type(storage).__name__}, not a storage")
    dims = (size, stride)
    if not all(isinstance(d, tuple | list) and len(d) <= MAX_TENSOR_DIMS for d in dims) or len(size) != len(stride):
        raise CheckpointError("a tensor has a malformed shape or stride")
    numbers = [storage_offset, *size, *stride]
    if not all(type(n) is int and n >= 0 for n in numbers):
        raise CheckpointError("a tensor has a negative or non-integer offset, shape or stride")
    if all(size):
        last = storage_offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
        if last >= storage._size():
            raise CheckpointError(f"a tensor reaches element {last} of a storage of {storage._size()}")
    return _sealed(torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride), *rest))


def _checked_rebuild_parameter(data: Any, *rest: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"a parameter is built on {type(data).__name__}, not a tensor")
    return _sealed(torch._utils._rebuild_parameter(data, *rest))


def _refuse_state(state: Any) -> None:
    raise CheckpointError("the checkpoint sets a tensor's state (torch.save never does)")


def _sealed(tensor: torch.Tensor) -> torch.Tensor:
    """Shadow ``Tensor.__setstate__`` on this instance: its legacy form calls ``set_`` with sizes from
    the file, which would grow an empty storage to any size (pickle's BUILD finds instance first)."""
    tensor.__setstate__ = _refuse_state  # type: ignore[method-assign]
    return tensor


# Globals a whole-module torch pickle may name that are data, not behaviour.
_ALLOWED_CALLABLES: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): _checked_rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _checked_rebuild_parameter,
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
        self._storages: dict[str, torch.storage.TypedStorage] = {}

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
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise CheckpointError(f"malformed storage reference in checkpoint: {key!r:.40}, {numel!r:.40}")
        shared = self._storages.get(key)
        if shared is not None:  # one storage behind many tensors: read once, shared as torch does
            if shared.dtype != dtype or shared._size() != numel:
                raise CheckpointError(f"storage {key} is referenced with two different types or sizes")
            return shared
        try:
            entry = self._archive.getinfo(f"{self._prefix}/data/{key}")
        except KeyError:
            raise CheckpointError(f"storage {key} is not in the archive") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        # Checked before anything is read or allocated: the claim, the entry, and the bytes on disk.
        if entry.file_size != numel * itemsize:
            raise CheckpointError(f"storage {key} has {entry.file_size} bytes, its reference claims {numel * itemsize}")
        if entry.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"storage {key} is compressed (torch stores storages uncompressed)")
        raw = self._archive.read(entry)
        buffer = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        storage = torch.storage.TypedStorage(wrap_storage=buffer.untyped_storage(), dtype=dtype, _internal=True)
        self._storages[key] = storage
        return storage


def _entries(obj: _ModulePlaceholder, attribute: str, kind: type | tuple[type, ...]) -> list[tuple[str, Any]]:
    """``obj.<attribute>`` as (name, value) pairs, each value a ``kind`` or None; else a CheckpointError."""
    mapping = obj.__dict__.get(attribute, {})
    if not isinstance(mapping, dict):
        raise CheckpointError(f"{obj.qualified_name}.{attribute} is a {type(mapping).__name__}, not a dict")
    for name, value in mapping.items():
        if not isinstance(name, str) or not (value is None or isinstance(value, kind)):
            raise CheckpointError(f"{obj.qualified_name}.{attribute} holds {type(value).__name__} "
                                  f"under {name!r:.40}")
    return list(mapping.items())


def _collect_state(obj: _ModulePlaceholder, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    """Walk placeholder modules like ``nn.Module.state_dict`` does."""
    if depth > MAX_MODULE_DEPTH:
        raise CheckpointError(f"modules nested deeper than {MAX_MODULE_DEPTH} levels (or in a cycle)")
    for name, value in _entries(obj, "_parameters", torch.Tensor):
        if value is not None:
            out[prefix + name] = value.detach()
    non_persistent = obj.__dict__.get("_non_persistent_buffers_set", set())
    if not isinstance(non_persistent, set):
        raise CheckpointError(f"{obj.qualified_name}._non_persistent_buffers_set is not a set")
    for name, value in _entries(obj, "_buffers", torch.Tensor):
        if value is not None and name not in non_persistent:
            out[prefix + name] = value
    for name, child in _entries(obj, "_modules", _ModulePlaceholder):
        if child is not None:
            _collect_state(child, f"{prefix}{name}.", out, depth + 1)


def read_released_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read a released checkpoint's state dict without executing it.

    Returns the state dict (``module.`` prefixes of DataParallel stripped) and the qualified name of
    the top-level class the pickle names (e.g. ``model.LCNN``).
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except Exception as exc:  # OSError, BadZipFile, and ValueError/NotImplementedError for odd zips
        raise CheckpointError(f"{path}: not a torch zip checkpoint ({_one_line(exc)})") from exc
    with archive:
        pickles = [info for info in archive.infolist() if info.filename.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        if pickles[0].file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path}: data.pkl of {pickles[0].file_size} bytes (at most {MAX_PICKLE_BYTES})")
        prefix = pickles[0].filename[: -len("/data.pkl")]
        try:
            unpickler = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix)
            root = unpickler.load()
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        except Exception as exc:  # malformed pickle streams raise many types
            raise CheckpointError(f"{path}: cannot read checkpoint ({_one_line(exc)})") from exc
    try:
        return _state_of(root)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _state_of(root: Any) -> tuple[dict[str, torch.Tensor], str]:
    state: dict[str, torch.Tensor] = {}
    if isinstance(root, _ModulePlaceholder):
        # DataParallel wraps the real model as its child "module".
        _collect_state(root, "", state)
        top = root.qualified_name
        if top.endswith("DataParallel"):
            inner = root.__dict__.get("_modules", {}).get("module")
            top = getattr(inner, "qualified_name", top)
    elif isinstance(root, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in root.items()):
        state = dict(root)
        top = "state_dict"
    else:
        raise CheckpointError(f"holds neither a module nor a state dict ({type(root).__name__})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if not state:
        raise CheckpointError("no tensors found")
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
        raise CheckpointError(f"{src}: tensors do not fit {architecture}: {_one_line(exc)}") from exc
    manifest = CMManifest(
        name=name or src.parent.name,
        **architectures.get(architecture).manifest_fields(XLSR_300M),
        trained_on=trained_on,
        source=str(src),
        source_sha256=digest,
    )
    return save_cm(out, backend.state_dict(), manifest)
