"""A scorer without a model: every window gets the same P(bona fide), at no cost. For measuring
everything but the model (ingest-only load runs) and for tests of the plumbing."""

from __future__ import annotations

import numpy as np

from streamdet.manifest import InputContract
from streamdet.scoring.base import Scorer


class ConstantScorer(Scorer):
    def __init__(self, p_bonafide: float = 0.5) -> None:
        self.contract = InputContract()
        self.model_id = "constant@0"
        self.p_bonafide = p_bonafide

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        return np.full(len(self.check_windows(windows)), self.p_bonafide, dtype=np.float32)
