"""Evaluation metrics of the paper: EER (ASVspoof eval-package algorithm) and confusion matrices.

Conventions (paper recipe §5, §7):
- a score is "higher = more bona fide" (the released score files hold P(bona fide));
- labels are 0 = bona fide (real), 1 = spoof (fake);
- :func:`compute_eer` returns a fraction, :func:`paper_eer` a percentage as the paper prints it.

The EER follows the ASVspoof evaluation package step by step, including its handling of tied
scores (a stable sort that puts bona fide trials first among equals), because the paper's cells
depend on it: a "nicer" interpolated or tie-grouped EER shifts some of them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamdet.stream.policy import PAPER_SPOOF_THRESHOLD, StreamPolicy, spoof_probability

BONAFIDE = 0
SPOOF = 1


def _as_scores(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"EER needs at least one {name} score, got none")
    # NaN has no place in a sorted order; mergesort would silently push it to the end.
    if np.isnan(array).any():
        raise ValueError(f"{name} scores contain NaN")
    return array


def det_curve(bonafide: npt.ArrayLike, spoof: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-rejection rates, false-acceptance rates and thresholds of the DET curve.

    Entry 0 is the extra start point (FRR 0, FAR 1, threshold just below the lowest score); entry k
    (k >= 1) is the operating point that rejects the k lowest-scoring trials.
    """
    target = _as_scores(bonafide, "bona fide")
    nontarget = _as_scores(spoof, "spoof")
    scores = np.concatenate((target, nontarget))
    is_target = np.concatenate((np.ones(target.size), np.zeros(nontarget.size)))
    # Stable sort: among equal scores the bona fide trials (concatenated first) stay first.
    order = np.argsort(scores, kind="mergesort")
    is_target = is_target[order]
    rejected_targets = np.cumsum(is_target)
    rejected_count = np.arange(1, scores.size + 1)
    accepted_nontargets = nontarget.size - (rejected_count - rejected_targets)
    frr = np.concatenate(([0.0], rejected_targets / target.size))
    far = np.concatenate(([1.0], accepted_nontargets / nontarget.size))
    sorted_scores = scores[order]
    thresholds = np.concatenate(([sorted_scores[0] - 0.001], sorted_scores))
    return frr, far, thresholds


def compute_eer(bonafide: npt.ArrayLike, spoof: npt.ArrayLike) -> tuple[float, float]:
    """EER as a fraction and its threshold; scores are "higher = more bona fide".

    Raises ValueError when either class is empty or a score is NaN.
    """
    frr, far, thresholds = det_curve(bonafide, spoof)
    # argmin returns the first minimum, as the reference implementation does.
    index = int(np.argmin(np.abs(frr - far)))
    return float((frr[index] + far[index]) / 2.0), float(thresholds[index])


def _split_by_label(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
    label_array = np.asarray(labels).reshape(-1)
    if score_array.shape != label_array.shape:
        raise ValueError(f"{score_array.size} scores but {label_array.size} labels")
    unknown = set(np.unique(label_array).tolist()) - {BONAFIDE, SPOOF}
    if unknown:
        raise ValueError(f"labels must be 0 (bona fide) or 1 (spoof), got {sorted(unknown)}")
    return score_array[label_array == BONAFIDE], score_array[label_array == SPOOF]


def paper_eer(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """EER in percent as the paper computes it: both score directions, the smaller kept.

    ``labels``: 0 = bona fide, 1 = spoof. Taking the better direction means a CM whose scores are
    systematically inverted still gets an EER below 50 % (paper recipe §7).
    """
    bonafide, spoof = _split_by_label(scores, labels)
    forward, _ = compute_eer(bonafide, spoof)
    backward, _ = compute_eer(-bonafide, -spoof)
    return 100.0 * min(forward, backward)


def confusion_matrix(scores: npt.ArrayLike, labels: npt.ArrayLike,
                     spoof_threshold: float = PAPER_SPOOF_THRESHOLD) -> np.ndarray:
    """Row-normalised 2x2 confusion matrix: rows = true (bona fide, spoof), columns = predicted.

    ``scores`` are P(bona fide). A trial is predicted spoof by the service's verdict,
    ``p_spoof >= spoof_threshold`` (``streamdet.stream.policy``). With the default 0.5 this is the
    argmax of the logits except on an exact tie (P = 0.5), which counts as spoof, as in the service.
    A class without trials gets a row of NaN: its rates are undefined, not zero.
    """
    bonafide, spoof = _split_by_label(scores, labels)
    policy = StreamPolicy(spoof_threshold)
    matrix = np.full((2, 2), np.nan)
    for row, class_scores in ((BONAFIDE, bonafide), (SPOOF, spoof)):
        if class_scores.size:
            predicted_spoof = float(np.count_nonzero(policy.are_spoof(spoof_probability(class_scores))))
            predicted_spoof /= class_scores.size
            matrix[row] = (1.0 - predicted_spoof, predicted_spoof)
    return matrix
