"""Score test sets with a CM and compute the paper's EERs (paper recipe §1, §5, §7).

Each utterance is scored on its first 64,600 samples at 16 kHz (tiled when shorter), in batches.
A file that cannot be decoded is recorded as a failure and the rest is scored: the caller decides
what to do with failures (the CLI lists them and exits non-zero). Nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from offline.datasets import Utterance
from offline.metrics import confusion_matrix, paper_eer
from streamdet.audio import load_window
from streamdet.errors import AudioDecodeError
from streamdet.scoring.base import Scorer
from streamdet.stream.policy import PAPER_SPOOF_THRESHOLD


@dataclass
class ConditionResult:
    """Scores of one test condition; ``failures`` maps unreadable paths to the reason."""

    condition: str
    utterances: list[Utterance]
    scores: np.ndarray
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return np.array([u.label for u in self.utterances], dtype=np.int64)

    @property
    def eer(self) -> float:
        """EER in percent over the utterances that were scored."""
        return paper_eer(self.scores, self.labels)

    def confusion(self, spoof_threshold: float = PAPER_SPOOF_THRESHOLD) -> np.ndarray:
        return confusion_matrix(self.scores, self.labels, spoof_threshold)


def _load(utterance: Utterance, window_samples: int) -> np.ndarray | AudioDecodeError:
    try:
        return load_window(utterance.path, window_samples)
    except AudioDecodeError as exc:
        return exc


def _batches(items: Sequence[Utterance], size: int) -> Iterator[Sequence[Utterance]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_utterances(
    scorer: Scorer,
    utterances: Sequence[Utterance],
    batch_size: int = 32,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[Utterance], np.ndarray, dict[str, str]]:
    """Score each utterance's first window; returns (scored utterances, scores, failures by path).

    Decoding runs in a small thread pool (libsndfile and soxr release the GIL) while the model
    scores the previous batch.
    """
    scored: list[Utterance] = []
    scores: list[np.ndarray] = []
    failures: dict[str, str] = {}
    window = scorer.contract.window_samples
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in _batches(utterances, batch_size):
            loaded = list(pool.map(lambda u: _load(u, window), batch))
            good = [(u, x) for u, x in zip(batch, loaded, strict=True) if isinstance(x, np.ndarray)]
            for u, x in zip(batch, loaded, strict=True):
                if isinstance(x, AudioDecodeError):
                    failures[str(u.path)] = x.reason
            if good:
                scores.append(scorer.score_batch(np.stack([x for _, x in good])))
                scored.extend(u for u, _ in good)
            if on_progress:
                on_progress(len(batch))
    all_scores = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
    return scored, all_scores, failures


def evaluate_condition(
    scorer: Scorer,
    condition: str,
    utterances: Sequence[Utterance],
    batch_size: int = 32,
    on_progress: Callable[[int], None] | None = None,
) -> ConditionResult:
    scored, scores, failures = score_utterances(scorer, utterances, batch_size, on_progress=on_progress)
    return ConditionResult(condition, scored, scores, failures)


def utterance_name(utterance: Utterance) -> str:
    """The name written to score files: the file name, as in the authors' files."""
    return Path(utterance.utt_id).name
