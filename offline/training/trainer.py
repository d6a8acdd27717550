"""The training loop of the paper's recipe (paper recipe §8), resumable to the bit on CPU.

Per epoch: set the step-schedule learning rate, train one pass over the (concatenated) training sets
with class-weighted cross-entropy, compute the validation loss (never training on it), keep the
weights if that loss is the lowest so far, and checkpoint. At the end the kept weights become a CM
in streamdet's format (``<run_dir>/cm``), which ``offline evaluate`` and ``streamdet serve`` load.

Run directory::

    config.json                 the resolved config (absolute paths, every default spelled out)
    checkpoint.safetensors      last finished epoch: model, optimizer, loss scaler, progress, history
    best-epoch-NNNN.safetensors backend weights of the lowest validation loss so far
    metrics.csv, tensorboard/   per-epoch (and per-step) losses and learning rate
    cm/                         the selected CM (model.safetensors + manifest.json), once finished

Exact resume: the RNG streams are reseeded at the start of every epoch from (seed, rank, epoch) and the
shuffling order is a function of (seed, epoch), so the state at an epoch boundary is fully described
by the checkpoint and a resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from offline.features.cache import atomic_write_text
from offline.training.augment import AugmentedWaveformDataset
from offline.training.config import ExperimentConfig, read_config_data, validate_config
from offline.training.data import ShardSampler, Split, build_split
from offline.training.distributed import DistContext, init_distributed
from offline.training.runlog import RunLog
from offline.training.snapshot import load_snapshot, save_snapshot
from streamdet.cm import build_backend, read_cm_manifest, save_cm, state_dict_sha256
from streamdet.errors import CheckpointError, ConfigError
from streamdet.manifest import WEIGHTS_NAME, CMManifest

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
CHECKPOINT_NAME = "checkpoint.safetensors"
BEST_PATTERN = "best-epoch-{:04d}.safetensors"
CM_DIR_NAME = "cm"


@dataclass
class TrainResult:
    run_dir: Path
    cm_dir: Path | None
    """None when the run stopped early (``stop_after``)."""
    best_epoch: int | None
    best_val_loss: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


def train(config: ExperimentConfig, *, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    """Train (or continue) the run of ``config``; ``stop_after=N`` stops after epoch N as if interrupted."""
    context = init_distributed(config.runtime.device)
    restore = _configure_determinism(config.runtime.deterministic, context.device)
    try:
        return _Trainer(config, context).run(resume=resume, stop_after=stop_after)
    finally:
        restore()
        context.close()


def _configure_determinism(enabled: bool, device: torch.device) -> Callable[[], None]:
    """Switch torch's global determinism settings for the run; returns the function that restores them."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        # warn_only: a few CUDA backward kernels (e.g. scatter_add behind AASIST's gather) have no
        # deterministic variant; they warn instead of stopping a multi-day run.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    else:
        torch.backends.cudnn.benchmark = True

    def restore() -> None:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]

    return restore


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


class _Trainer:
    def __init__(self, config: ExperimentConfig, context: DistContext) -> None:
        self.config = config
        self.ctx = context
        self.device = context.device
        self.run_dir = config.run_dir
        self.amp = config.runtime.amp and self.device.type == "cuda"
        self.amp_dtype = getattr(torch, config.runtime.amp_dtype)
        batch = config.train.batch_size
        if batch % context.world:
            raise ConfigError(f"train.batch_size {batch} does not divide over {context.world} processes")
        self.batch_per_rank = batch // context.world
        channels_last = config.runtime.channels_last
        if channels_last is None:
            channels_last = self.device.type == "cpu" and config.arch.channels_last
        self.channels_last = bool(channels_last)

    def _load_initial_weights(self, cm_dir: Path) -> None:
        """Fine-tuning: start from a CM's backend weights (hash checked by load_cm)."""
        manifest = read_cm_manifest(cm_dir)
        if manifest.architecture != self.config.architecture:
            raise ConfigError(f"init_from {cm_dir} is a {manifest.architecture}, this run trains a "
                              f"{self.config.architecture}")
        try:
            self.backend.load_state_dict(_backend_weights(cm_dir), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"init_from {cm_dir}: weights do not fit {manifest.architecture}: {exc}") from exc
        if self.ctx.is_main:
            log.info("initial weights from %s (%s)", cm_dir, manifest.model_id)

    # -- setup -------------------------------------------------------------------------------------
    def _check_run_dir(self, resume: bool) -> None:
        checkpoint = self.run_dir / CHECKPOINT_NAME
        if resume and not checkpoint.is_file():
            raise ConfigError(f"{self.run_dir}: nothing to resume (no {CHECKPOINT_NAME})")
        if not resume and checkpoint.is_file():
            raise ConfigError(
                f"{self.run_dir} already holds a run; pass --resume to continue it or --run-dir for a new one"
            )
        if resume:
            saved = validate_config(read_config_data(self.run_dir / CONFIG_NAME), str(self.run_dir / CONFIG_NAME))
            differences = config_differences(saved.recipe(), self.config.recipe())
            if differences:
                raise ConfigError(
                    f"{self.run_dir}: the config differs from the run's in what determines the weights:\n  "
                    + "\n  ".join(differences)
                )

    def _build(self) -> None:
        config = self.config
        seed_everything(config.train.seed)
        self.backend = build_backend(config.architecture)
        if config.init_from is not None:
            self._load_initial_weights(config.init_from)
        self.backend = self.backend.to(self.device)
        if self.channels_last:
            self.backend = self.backend.to(memory_format=torch.channels_last)
        self.model: nn.Module = self.backend
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Some backends hold parameters their forward never uses (AASIST's bn1, a quirk its released
            # weights depend on), so DDP must expect parameters without gradients there.
            unused = config.arch.ddp_unused_parameters
            self.model = DistributedDataParallel(self.backend, device_ids=ids, find_unused_parameters=unused)
        # An on-the-fly front-end (mel) runs on the training device, in float32 outside autocast: raw
        # mel power overflows fp16.
        self.frontend = config.arch.frontend.build().to(self.device) if config.frontend is None else None
        o = config.optim
        self.optimizer = torch.optim.Adam(
            self.backend.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
        self.class_weights = torch.tensor(config.train.class_weights, dtype=torch.float32, device=self.device)
        use_scaler = self.amp and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def _loader(self, split: Split, *, shuffle: bool) -> tuple[DataLoader, ShardSampler]:
        sampler = ShardSampler(len(split), self.ctx.rank, self.ctx.world, shuffle=shuffle, seed=self.config.train.seed,
                               keyed=isinstance(split.dataset, AugmentedWaveformDataset))
        workers = self.config.runtime.num_workers
        loader = DataLoader(
            split.dataset,
            batch_size=self.batch_per_rank,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            # Worker seeds come from this generator, not the global RNG, so loader start-up (which
            # happens once with persistent workers) never shifts the dropout stream.
            generator=torch.Generator().manual_seed(self.config.train.seed),
        )
        return loader, sampler

    # -- the run -----------------------------------------------------------------------------------
    def run(self, *, resume: bool, stop_after: int | None) -> TrainResult:
        config, ctx = self.config, self.ctx
        self._check_run_dir(resume)
        train_split, dev_split = build_split(config, "train"), build_split(config, "dev")
        ctx.barrier()  # every process has read the old config.json before rank 0 replaces it
        if ctx.is_main:
            log.info("train: %s", train_split.describe())
            log.info("dev: %s", dev_split.describe())
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / CONFIG_NAME, config.model_dump_json(indent=2) + "\n")
        self._build()
        state = self._resume_state() if resume else {"epoch": 0, "best_epoch": None, "best_val_loss": None,
                                                     "history": [], "global_step": 0}
        runlog = RunLog(
            self.run_dir, enabled=ctx.is_main, tensorboard=config.runtime.tensorboard,
            purge_step=state["global_step"] if resume else None,
        )
        train_loader, train_sampler = self._loader(train_split, shuffle=True)
        dev_loader, _ = self._loader(dev_split, shuffle=False)
        epochs = config.schedule.epochs
        try:
            for epoch in range(state["epoch"], epochs):
                if stop_after is not None and epoch >= stop_after:
                    break
                self._epoch(epoch, state, train_loader, train_sampler, dev_loader, runlog)
        finally:
            runlog.close()
        cm_dir = None
        if state["epoch"] >= epochs:
            if state["best_epoch"] is None:
                raise CheckpointError("the validation loss was never finite: no model to keep")
            cm_dir = self.run_dir / CM_DIR_NAME
            if ctx.is_main:
                self._export_cm(state, train_split, cm_dir)
            ctx.barrier()
        return TrainResult(self.run_dir, cm_dir, state["best_epoch"], state["best_val_loss"], state["history"])

    def _epoch(
        self, epoch: int, state: dict[str, Any], train_loader: DataLoader, sampler: ShardSampler,
        dev_loader: DataLoader, runlog: RunLog,
    ) -> None:
        config, ctx = self.config, self.ctx
        started = time.monotonic()
        lr = config.schedule.lr(config.optim.lr, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # Reseed from (seed, rank, epoch): dropout masks depend only on where the run is, so a resumed
        # run needs no saved RNG state. Rank 0 of epoch 0 keeps the plain seed's stream.
        seed_everything(config.train.seed + 7919 * epoch + 1_000_003 * ctx.rank)
        sampler.set_epoch(epoch)
        train_loss = self._train_one_epoch(epoch, train_loader, state, runlog)
        val_loss = self._validate(dev_loader)

        best = state["best_val_loss"]
        is_best = math.isfinite(val_loss) and (best is None or val_loss < best)
        if is_best:
            state["best_epoch"], state["best_val_loss"] = epoch + 1, val_loss
            if ctx.is_main:
                self._save_best(epoch + 1, val_loss)
        state["epoch"] = epoch + 1
        state["history"].append({
            "epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
            "best_val_loss": state["best_val_loss"], "is_best": is_best,
            "seconds": round(time.monotonic() - started, 3),
        })
        if ctx.is_main:
            self._save_checkpoint(state)
            runlog.epoch(state["history"], state["global_step"])
            log.info(
                "epoch %d/%d: lr %.3g, train loss %.5f, val loss %.5f%s", epoch + 1, config.schedule.epochs,
                lr, train_loss, val_loss, " (best)" if is_best else "",
            )
        ctx.barrier()

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.frontend is not None:
            with torch.no_grad():
                x = self.frontend(x)
        else:
            x = x.float()  # cached features are stored in fp16
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _train_one_epoch(self, epoch: int, loader: DataLoader, state: dict[str, Any], runlog: RunLog) -> float:
        self.model.train()
        total, steps = 0.0, 0
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{self.config.schedule.epochs}", unit="batch", dynamic_ncols=True,
            disable=not (self.ctx.is_main and self.config.runtime.progress), leave=False,
        )
        for x, y in bar:
            inputs, labels = self._inputs(x), y.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits, _hidden = self.model(inputs)
            loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            value = loss.item()
            total, steps = total + value, steps + 1
            state["global_step"] += 1
            runlog.step(state["global_step"], value)
            bar.set_postfix(loss=f"{total / steps:.4f}", refresh=False)
        total, steps = self.ctx.sum(total, steps)
        return total / max(steps, 1)

    @torch.no_grad()
    def _validate(self, loader: DataLoader) -> float:
        """Class-weighted mean cross-entropy over the whole dev set.

        The authors averaged per-batch means over randomly ordered batches, a noisy estimate of this
        same quantity; the exact mean does not depend on batch size, order or process count.
        """
        # The bare backend, not the DDP wrapper: ranks may hold different numbers of dev batches,
        # and DDP's forward would wait on collectives the others never join.
        self.backend.eval()
        weighted, weights = 0.0, 0.0
        bar = tqdm(loader, desc="validation", unit="batch", dynamic_ncols=True, leave=False,
                   disable=not (self.ctx.is_main and self.config.runtime.progress))
        for x, y in bar:
            inputs, labels = self._inputs(x), y.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits, _hidden = self.backend(inputs)
            losses = F.cross_entropy(logits.float(), labels, reduction="none")
            w = self.class_weights[labels]
            weighted += float((losses * w).sum())
            weights += float(w.sum())
        weighted, weights = self.ctx.sum(weighted, weights)
        if weights == 0:
            raise ConfigError("the validation split is empty")
        return weighted / weights

    # -- files -------------------------------------------------------------------------------------
    def _backend_state(self) -> dict[str, torch.Tensor]:
        # contiguous_format: a channels-last backend's weights are saved in the usual layout.
        return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
                for k, v in self.backend.state_dict().items()}

    def _save_best(self, epoch: int, val_loss: float) -> None:
        path = self.run_dir / BEST_PATTERN.format(epoch)
        tmp = path.with_name(path.name + ".tmp")
        save_file(self._backend_state(), str(tmp), metadata={"epoch": str(epoch), "val_loss": repr(val_loss)})
        os.replace(tmp, path)

    def _save_checkpoint(self, state: dict[str, Any]) -> None:
        save_snapshot(self.run_dir / CHECKPOINT_NAME, {
            **state,
            "model": self._backend_state(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        })
        # Only now is the new best recorded; older best files (and one left by a crashed epoch) can go.
        keep = BEST_PATTERN.format(state["best_epoch"]) if state["best_epoch"] else None
        for path in self.run_dir.glob("best-epoch-*.safetensors"):
            if path.name != keep:
                path.unlink()

    def _resume_state(self) -> dict[str, Any]:
        snapshot = load_snapshot(self.run_dir / CHECKPOINT_NAME)
        self.backend.load_state_dict(snapshot.pop("model"))
        self.optimizer.load_state_dict(snapshot.pop("optimizer"))
        scaler_state = snapshot.pop("scaler")
        if self.scaler is not None and scaler_state is not None:
            self.scaler.load_state_dict(scaler_state)
        if snapshot["best_epoch"] and not (self.run_dir / BEST_PATTERN.format(snapshot["best_epoch"])).is_file():
            raise CheckpointError(f"{self.run_dir}: the best weights of epoch {snapshot['best_epoch']} are missing")
        if self.ctx.is_main:
            log.info("resuming %s after epoch %d", self.run_dir, snapshot["epoch"])
        return snapshot

    def _export_cm(self, state: dict[str, Any], train_split: Split, cm_dir: Path) -> None:
        config = self.config
        best_path = self.run_dir / BEST_PATTERN.format(state["best_epoch"])
        trained_on = " + ".join(_relative(source) for source in train_split.sources)
        if config.description:
            trained_on = f"{config.description}. Data: {trained_on}"
        if config.augment.active:
            a = config.augment
            trained_on += (f"; augmented: channels {a.channels} with probability {a.probability:g}"
                           + (", random crops" if a.random_crop else "")
                           + (f", gain {list(a.gain_db)} dB" if a.gain_db else ""))
        source = (f"offline train {_relative_path(self.run_dir)}: epoch {state['best_epoch']} of {config.schedule.epochs}, "
                  f"lowest validation loss {state['best_val_loss']:.6f}")
        if config.init_from is not None:
            source += f"; fine-tuned from {read_cm_manifest(config.init_from).model_id} ({_relative_path(config.init_from)})"
        manifest = CMManifest(
            name=config.name,
            **config.arch.manifest_fields(config.features.w2v2_source),
            w2v2_layer=config.features.w2v2_layer,
            trained_on=trained_on,
            source=source,
        )
        save_cm(cm_dir, load_file(str(best_path)), manifest)
        log.info("selected epoch %d (val loss %.5f) -> %s", state["best_epoch"], state["best_val_loss"], cm_dir)


def _backend_weights(cm_dir: Path) -> dict[str, torch.Tensor]:
    """A CM's backend state dict without building its (W2V2) front-end; hash checked."""
    manifest = read_cm_manifest(cm_dir)
    state = load_file(str(Path(cm_dir) / WEIGHTS_NAME))
    if manifest.weights_sha256 and state_dict_sha256(state) != manifest.weights_sha256:
        raise CheckpointError(f"{cm_dir}: weights do not match the manifest's hash")
    return state


def _relative_path(path: Path) -> Path:
    """``path`` relative to the working directory when it lies under it, so that a shipped manifest
    does not carry one machine's paths."""
    try:
        return Path(path).relative_to(Path.cwd())
    except ValueError:
        return Path(path)


def _relative(source: str) -> str:
    """A dataset label (``list:/abs/data/field/train.txt``) with its path made relative."""
    kind, sep, rest = source.partition(":")
    return f"{kind}:{_relative_path(Path(rest))}" if sep and rest.startswith("/") else source
