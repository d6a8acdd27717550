"""Run logs: ``metrics.csv`` (one row per epoch) and TensorBoard scalars, written by rank 0 only.

The CSV is rewritten from the checkpointed history after every epoch, so after a resume it holds
exactly the epochs the run has (never a duplicated or orphaned row). TensorBoard events past the
resume point are purged for the same reason.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from offline.features.cache import atomic_write_text

log = logging.getLogger(__name__)

CSV_NAME = "metrics.csv"
CSV_FIELDS = ("epoch", "lr", "train_loss", "val_loss", "best_val_loss", "is_best", "seconds")


class RunLog:
    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool, purge_step: int | None) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional dependency: the CSV still records everything
                log.warning("tensorboard is not installed; logging to %s only", CSV_NAME)
            else:
                self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def step(self, global_step: int, loss: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/batch_loss", loss, global_step)

    def epoch(self, history: list[dict[str, Any]], global_step: int) -> None:
        if not self.enabled:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: row[k] for k in CSV_FIELDS} for row in history)
        atomic_write_text(self.run_dir / CSV_NAME, buffer.getvalue())
        if self.writer is not None:
            row = history[-1]
            for key in ("train_loss", "val_loss", "lr"):
                self.writer.add_scalar(f"epoch/{key}", row[key], row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
