"""Hand-made torch zip checkpoints for the importer's hostile-input tests and its fuzz test.

``craft`` writes the layout ``torch.save`` writes (``archive/data.pkl`` + ``archive/data/<key>``),
but with every field under the test's control: storage sizes that lie, shared storages, compressed
entries, tensors whose view leaves their storage, module trees of any shape.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class StorageRef:
    """A persistent reference to ``archive/data/<key>``: ``numel`` elements of float32 (claimed)."""

    key: str
    numel: int
    storage_type: Any = torch.FloatStorage


@dataclass(frozen=True)
class TensorOf:
    """A tensor rebuilt by ``torch._utils._rebuild_tensor_v2`` on a storage."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    state: Any = None
    """Set on the rebuilt tensor by pickle's BUILD (``Tensor.__setstate__``); torch.save never does."""

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        if self.state is None:
            return (torch._utils._rebuild_tensor_v2, args)
        return (torch._utils._rebuild_tensor_v2, args, self.state)


class _AuthorsModule:
    """Stands for the authors' ``model.LCNN`` while pickling (a module named ``model`` is faked)."""


_AuthorsModule.__module__ = "model"
_AuthorsModule.__qualname__ = _AuthorsModule.__name__ = "LCNN"


class Module:
    """Pickles as an instance of ``model.LCNN`` with the given ``__dict__`` (``_modules``...)."""

    def __init__(self, **state: Any) -> None:
        self.state = state

    def __reduce__(self):
        return (_AuthorsModule, (), self.state)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, StorageRef):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def pickle_bytes(root: Any) -> bytes:
    fake = types.ModuleType("model")
    fake.LCNN = _AuthorsModule  # type: ignore[attr-defined]
    previous = sys.modules.get("model")
    sys.modules["model"] = fake  # pickle checks that a class can be found by its name
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # pickling a 1,000-deep module tree recurses
    try:
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=2).dump(root)
        return buffer.getvalue()
    finally:
        sys.setrecursionlimit(limit)
        if previous is None:
            del sys.modules["model"]
        else:
            sys.modules["model"] = previous


def craft(path: Path, root: Any, storages: dict[str, bytes], *, compress: bool = False,
          data_pkl: bytes | None = None) -> Path:
    """Write a checkpoint whose pickle is ``root`` (or the raw ``data_pkl``) with these storage entries."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes(root) if data_pkl is None else data_pkl)
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data, compress_type=method)
        archive.writestr("archive/version", "3\n")
    return path
