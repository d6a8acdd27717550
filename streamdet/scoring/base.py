"""The scorer interface every backend implements (torch, ONNX Runtime, TensorRT, Triton)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

import numpy as np

from streamdet.manifest import InputContract


class Scorer(ABC):
    """Scores windows: float32 (batch, window_samples) at ``sample_rate`` → (batch,) P(bona fide).

    ``score_batch`` is synchronous and may block (it runs the model). The service's batcher calls it
    in its own scoring lanes (threads) for a scorer that keeps the base ``score``; a remote backend
    overrides ``score`` with a native async call, and the batcher then awaits that instead. Outside
    the batcher, ``score`` runs ``score_batch`` in a worker thread so the event loop keeps going.
    """

    model_id: str
    contract: InputContract
    max_batch: int = 64

    @abstractmethod
    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        """Bona fide probability of each window."""

    async def score(self, windows: np.ndarray) -> np.ndarray:
        return await asyncio.to_thread(self.score_batch, windows)

    def warmup(self) -> None:
        """Run one batch so that lazy initialisation does not land on the first live window."""
        self.score_batch(np.zeros((1, self.contract.window_samples), dtype=np.float32))

    def close(self) -> None:  # noqa: B027 - optional hook, most scorers hold nothing to release
        """Release resources (sessions, connections)."""

    def check_windows(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.contract.window_samples:
            raise ValueError(
                f"expected windows of shape (batch, {self.contract.window_samples}), got {windows.shape}"
            )
        return windows
