"""Computing a feature cache: decode every file once, run the frozen front-end, write shards.

Resumable: shards already committed without failures are skipped, so an interrupted run continues
where it stopped. Shards that hold failed items are recomputed on every run (the audio may have been
fixed meanwhile). A file that cannot be read never stops the run: it is recorded with its path and
reason, its row stays zero, and the caller reports it at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from offline.datasets import Utterance
from offline.features.cache import (
    INDEX_NAME,
    CacheIndex,
    FeatureCacheError,
    ShardRecord,
    atomic_write_text,
    new_index,
    read_index,
    read_records,
    shard_stem,
    write_index,
)
from offline.features.specs import FrontendSpec
from streamdet.audio import WINDOW_SAMPLES, load_window
from streamdet.errors import StreamdetError

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 512  # 512 W2V2 items ≈ 210 MB per shard: few files, cheap to redo one
DEFAULT_BATCH_SIZE = 16
LOCK_NAME = ".lock"


@dataclass
class PrepareReport:
    directory: Path
    num_items: int = 0
    computed_shards: list[int] = field(default_factory=list)
    skipped_shards: list[int] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), whole cache


def build_frontend(spec: FrontendSpec) -> nn.Module:
    """The frozen front-end a cache stores the output of."""
    if spec.kind == "mel":
        from streamdet.models.mel import MelFrontend

        return MelFrontend()
    from streamdet.models.w2v2 import XLSR_300M, W2V2Frontend

    return W2V2Frontend(spec.source or XLSR_300M, spec.layer)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _Windows(Dataset):
    """Decoded 64,600-sample windows; a file that cannot be read yields its error instead."""

    def __init__(self, utterances: list[Utterance]) -> None:
        self.utterances = utterances

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, position: int) -> tuple[int, np.ndarray | None, str]:
        path = self.utterances[position].path
        try:
            return position, load_window(path), ""
        except (StreamdetError, OSError, ValueError, RuntimeError) as exc:
            # soxr and the decoders raise a few plain error types for broken audio, too.
            reason = exc.reason if hasattr(exc, "reason") else f"{type(exc).__name__}: {exc}"
            return position, None, str(reason)


def _keep_list(batch: list) -> list:
    return batch


def _batches(index: CacheIndex, shards: list[int], batch_size: int) -> Iterator[list[int]]:
    """Batches of item positions that never straddle two shards."""
    for shard in shards:
        positions = list(index.shard_range(shard))
        for start in range(0, len(positions), batch_size):
            yield positions[start : start + batch_size]


class _ShardWriter:
    """Fills one shard's array under a temporary name, then commits it (rename, then record)."""

    def __init__(self, directory: Path, index: CacheIndex, shard: int) -> None:
        self.directory = directory
        self.shard = shard
        self.positions = index.shard_range(shard)
        stem = shard_stem(shard)
        self.final = directory / f"{stem}.npy"
        self.record_path = directory / f"{stem}.json"
        # Uncommit first: while the shard is being redone, readers must not trust the old array.
        self.record_path.unlink(missing_ok=True)
        self.tmp = directory / f"{stem}.npy.tmp"
        shape = (len(self.positions), *index.feature_shape)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=index.dtype, shape=shape)
        self.failed: dict[str, dict[str, str]] = {}

    def put(self, position: int, features: np.ndarray) -> None:
        self.array[position - self.positions.start] = features

    def fail(self, utterance: Utterance, reason: str) -> None:
        self.failed[utterance.utt_id] = {"path": str(utterance.path), "reason": reason}

    def commit(self) -> ShardRecord:
        self.array.flush()
        del self.array
        with self.tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp, self.final)
        record = ShardRecord(shard=self.shard, count=len(self.positions), failed=self.failed)
        atomic_write_text(self.record_path, record.model_dump_json() + "\n")
        return record


def _feature_shape(frontend: nn.Module, device: torch.device) -> tuple[int, ...]:
    with torch.inference_mode():
        return tuple(frontend(torch.zeros(1, WINDOW_SAMPLES, device=device)).shape[1:])


def _open_or_plan(
    directory: Path,
    frontend_spec: FrontendSpec,
    dataset: dict,
    utterances: list[Utterance],
    shard_size: int,
    overwrite: bool,
    shape_of: Callable[[], tuple[int, ...]],
) -> CacheIndex:
    """Reuse a matching index, or plan a new cache (clearing an old one only with ``overwrite``)."""
    if (directory / INDEX_NAME).is_file():
        index = read_index(directory)
        differences = _index_differences(index, frontend_spec, dataset, utterances, shard_size)
        if not differences:
            return index
        if not overwrite:
            raise FeatureCacheError(
                f"{directory} holds a different cache ({'; '.join(differences)}); "
                "pass --overwrite to replace it or choose another location"
            )
        log.warning("replacing the cache in %s (%s)", directory, "; ".join(differences))
    _clear(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index = new_index(frontend_spec, dataset, shape_of(), shard_size, utterances)
    write_index(directory, index)
    return index


def _index_differences(
    index: CacheIndex, frontend: FrontendSpec, dataset: dict, utterances: list[Utterance], shard_size: int
) -> list[str]:
    differences = []
    if index.frontend != frontend:
        differences.append(f"front-end {index.frontend.model_dump()} vs {frontend.model_dump()}")
    if index.dataset != dataset:
        differences.append(f"dataset {index.dataset} vs {dataset}")
    if index.shard_size != shard_size:
        differences.append(f"shard size {index.shard_size} vs {shard_size}")
    if index.utt_ids != [u.utt_id for u in utterances] or index.labels != [u.label for u in utterances]:
        differences.append("the dataset's items or labels changed")
    return differences


def _clear(directory: Path) -> None:
    """Remove a previous cache's files (only names this module writes)."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.name.startswith("shard-") or path.name.startswith(INDEX_NAME):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def prepare_cache(
    directory: Path,
    frontend_spec: FrontendSpec,
    dataset: dict,
    utterances: list[Utterance],
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    build: Callable[[FrontendSpec], nn.Module] = build_frontend,
) -> PrepareReport:
    """Compute (or finish) the cache of one dataset; see the module docstring for the guarantees.

    ``build`` makes the front-end, only if there is work; pass a memoised one to share a loaded XLS-R
    between datasets.
    """
    if not utterances:
        raise FeatureCacheError(f"dataset {dataset} is empty: nothing to cache")
    directory = Path(directory)
    torch_device = resolve_device(device)
    frontend: nn.Module | None = None

    def get_frontend() -> nn.Module:
        nonlocal frontend
        if frontend is None:  # built only when there is work: loading XLS-R takes a while
            frontend = build(frontend_spec).to(torch_device).eval()
        return frontend

    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive(directory):
        return _prepare_locked(
            directory, frontend_spec, dataset, utterances, shard_size=shard_size, batch_size=batch_size,
            num_workers=num_workers, torch_device=torch_device, overwrite=overwrite, progress=progress,
            get_frontend=get_frontend,
        )


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One writer per cache: a second prepare-features on the same directory fails instead of clobbering."""
    with (directory / LOCK_NAME).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FeatureCacheError(f"{directory}: another prepare-features is writing this cache") from None
        yield


def _prepare_locked(
    directory: Path,
    frontend_spec: FrontendSpec,
    dataset: dict,
    utterances: list[Utterance],
    *,
    shard_size: int,
    batch_size: int,
    num_workers: int,
    torch_device: torch.device,
    overwrite: bool,
    progress: bool,
    get_frontend: Callable[[], nn.Module],
) -> PrepareReport:
    index = _open_or_plan(
        directory, frontend_spec, dataset, utterances, shard_size, overwrite,
        lambda: _feature_shape(get_frontend(), torch_device),
    )
    for stale in directory.glob("shard-*.tmp"):  # left by an interrupted run; never visible to readers
        stale.unlink()
    records = read_records(directory, index)
    report = PrepareReport(directory, index.num_items)
    todo = [s for s in range(index.num_shards) if s not in records or records[s].failed]
    report.skipped_shards = [s for s in range(index.num_shards) if s not in todo]

    done_items = sum(len(index.shard_range(s)) for s in report.skipped_shards)
    bar = tqdm(
        total=index.num_items, initial=done_items, unit="utt", desc=directory.name,
        dynamic_ncols=True, disable=not progress, smoothing=0.05,
    )
    loader = DataLoader(
        _Windows(utterances),
        batch_sampler=list(_batches(index, todo, batch_size)),
        num_workers=num_workers,
        collate_fn=_keep_list,
    )
    writer: _ShardWriter | None = None
    failures_now = 0
    try:
        for batch in loader:
            shard = batch[0][0] // index.shard_size
            if writer is None or writer.shard != shard:
                if writer is not None:
                    records[writer.shard] = writer.commit()
                    report.computed_shards.append(writer.shard)
                writer = _ShardWriter(directory, index, shard)
            failures_now += _process_batch(batch, utterances, writer, get_frontend(), torch_device, index.dtype)
            bar.update(len(batch))
            bar.set_postfix(failed=failures_now, refresh=False)
        if writer is not None:
            records[writer.shard] = writer.commit()
            report.computed_shards.append(writer.shard)
    finally:
        bar.close()
    for shard in sorted(records):
        report.failures += [(f["path"], f["reason"]) for f in records[shard].failed.values()]
    return report


def _process_batch(
    batch: list[tuple[int, np.ndarray | None, str]],
    utterances: list[Utterance],
    writer: _ShardWriter,
    frontend: nn.Module,
    device: torch.device,
    dtype: str,
) -> int:
    """Run the front-end on the readable windows of a batch; record the rest. Returns the failures."""
    failures = 0
    good = []
    for position, window, reason in batch:
        if window is None:
            writer.fail(utterances[position], reason)
            failures += 1
        else:
            good.append((position, window))
    if not good:
        return failures
    windows = torch.from_numpy(np.stack([w for _, w in good])).to(device)
    with torch.inference_mode():
        features = frontend(windows).to(getattr(torch, dtype))
    finite = torch.isfinite(features.flatten(1)).all(dim=1).cpu()
    features = features.cpu().numpy()
    for row, (position, _) in enumerate(good):
        if finite[row]:
            writer.put(position, features[row])
        else:  # e.g. an fp16 overflow: storing inf would poison training silently
            writer.fail(utterances[position], f"non-finite {dtype} features")
            failures += 1
    return failures
