"""Scorers: turn a batch of raw 16 kHz windows into bona fide probabilities.

``open_scorer(engine)`` picks the backend from what ``engine`` points at; see ``base.Scorer``.
"""

from streamdet.scoring.base import Scorer
from streamdet.scoring.select import open_scorer

__all__ = ["Scorer", "open_scorer"]
