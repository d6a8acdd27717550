"""Saving and restoring nested training state (model, optimizer, RNGs, progress) without pickle.

Tensors go into one safetensors file; everything else (numbers, strings, lists, dicts with int or str
keys, None) goes into that file's JSON metadata, with each tensor replaced by a reference to its key.
The file is written under a temporary name and renamed, so a crash never leaves half a checkpoint.
Nothing read back can execute code (the project loads pickles only in its restricted importer).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from streamdet.errors import CheckpointError

_STATE_KEY = "state"
_TENSOR = "__tensor__"
_DICT = "__dict__"


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        # Pairs, not a JSON object: optimizer state is keyed by int, and JSON would turn it into str.
        return {_DICT: [[k, _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training snapshot")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        return {k: _unflatten(v, tensors) for k, v in obj[_DICT]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_snapshot(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tuples come back as lists) atomically to ``path``."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    meta = json.dumps(_flatten(state, tensors))
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={_STATE_KEY: meta})
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_snapshot(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = (handle.metadata() or {}).get(_STATE_KEY)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # OSError, or safetensors' own SafetensorError for a damaged file
        raise CheckpointError(f"{path}: unreadable training checkpoint ({exc})") from exc
    if meta is None:
        raise CheckpointError(f"{path}: not a training checkpoint (no state metadata)")
    return _unflatten(json.loads(meta), tensors)
