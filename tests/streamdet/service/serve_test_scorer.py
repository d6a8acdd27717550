"""``streamdet serve`` with a model-free scorer, for tests that need a real service process:

    python serve_test_scorer.py P_BONAFIDE DELAY_S [serve flags...]

Every window gets P(bona fide) = P_BONAFIDE, each batch DELAY_S seconds after it was handed over
(an awaited sleep, as a slow accelerator would cost). Exits with ``streamdet serve``'s own status.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

import streamdet.scoring
from streamdet.cli import main
from streamdet.scoring.constant import ConstantScorer


class SlowConstantScorer(ConstantScorer):
    def __init__(self, p_bonafide: float, delay_s: float) -> None:
        super().__init__(p_bonafide)
        self.delay_s = delay_s

    async def score(self, windows: np.ndarray) -> np.ndarray:
        await asyncio.sleep(self.delay_s)
        return self.score_batch(windows)


if __name__ == "__main__":
    p_bonafide, delay_s = float(sys.argv[1]), float(sys.argv[2])
    streamdet.scoring.open_scorer = lambda *args, **kwargs: SlowConstantScorer(p_bonafide, delay_s)
    sys.exit(main(["serve", "--engine", "test-scorer", *sys.argv[3:]]))
