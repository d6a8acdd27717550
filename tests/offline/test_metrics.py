"""EER and confusion matrices on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from offline.metrics import compute_eer, confusion_matrix, det_curve, paper_eer


def test_eer_two_by_two() -> None:
    # bona [0.9, 0.6], spoof [0.7, 0.1]; ascending: 0.1n 0.6t 0.7n 0.9t
    # FRR = [0, 0, 1/2, 1/2, 1], FAR = [1, 1/2, 1/2, 0, 0]  -> |diff| minimal (0) at index 2
    # EER = (1/2 + 1/2) / 2 = 0.5; threshold at curve index 2 = 2nd lowest score = 0.6
    eer, threshold = compute_eer(np.array([0.9, 0.6]), np.array([0.7, 0.1]))
    assert eer == pytest.approx(0.5)
    assert threshold == pytest.approx(0.6)


def test_eer_takes_mean_of_frr_and_far_at_closest_point() -> None:
    # bona [0.8, 0.4, 0.9], spoof [0.3, 0.5]; ascending: 0.3n 0.4t 0.5n 0.8t 0.9t
    # FRR = [0, 0, 1/3, 1/3, 2/3, 1]; FAR = [1, 1/2, 1/2, 0, 0, 0]
    # |diff| = [1, 1/2, 1/6, 1/3, 2/3, 1] -> index 2: EER = (1/3 + 1/2) / 2 = 5/12, threshold 0.4
    eer, threshold = compute_eer([0.8, 0.4, 0.9], [0.3, 0.5])
    assert eer == pytest.approx(5 / 12)
    assert threshold == pytest.approx(0.4)


def test_det_curve_has_start_point() -> None:
    frr, far, thresholds = det_curve([0.8, 0.4, 0.9], [0.3, 0.5])
    np.testing.assert_allclose(frr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(far, [1, 0.5, 0.5, 0, 0, 0])
    np.testing.assert_allclose(thresholds, [0.3 - 0.001, 0.3, 0.4, 0.5, 0.8, 0.9])


def test_paper_eer_keeps_better_direction() -> None:
    # Forward 5/12 (above). Negated: ascending -0.9t -0.8t -0.5n -0.4t -0.3n
    # FRR = [0, 1/3, 2/3, 2/3, 1, 1]; FAR = [1, 1, 1, 1/2, 1/2, 0]; |diff| min 1/6 at index 3
    # EER = (2/3 + 1/2) / 2 = 7/12 -> min(5/12, 7/12) = 41.667 %
    scores = [0.8, 0.4, 0.9, 0.3, 0.5]
    labels = [0, 0, 0, 1, 1]
    assert paper_eer(scores, labels) == pytest.approx(100 * 5 / 12)


def test_paper_eer_inverted_scores_count_as_separated() -> None:
    # Bona fide all below spoof: forward EER 100 %, negated scores separate perfectly.
    assert compute_eer([0.1, 0.2], [0.8, 0.9])[0] == pytest.approx(1.0)
    assert paper_eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0


def test_perfect_separation_is_zero() -> None:
    # ascending 0.1n 0.2n 0.8t 0.9t: FRR = [0,0,0,1/2,1], FAR = [1,1/2,0,0,0] -> 0 at threshold 0.2
    assert compute_eer([0.8, 0.9], [0.1, 0.2]) == (0.0, pytest.approx(0.2))
    assert paper_eer(np.array([0.8, 0.9, 0.1, 0.2]), np.array([0, 0, 1, 1])) == 0.0


def test_all_equal_scores_follow_reference_tie_order() -> None:
    # Stable sort keeps the bona fide trials first among equal scores: ascending t t n,
    # FRR = [0, 1/2, 1, 1], FAR = [1, 1, 1, 0] -> |diff| 0 at index 2, EER = (1 + 1) / 2 = 1.
    # Negating changes nothing (still all equal), so the paper's EER is 100 %, not 50 %.
    eer, threshold = compute_eer([0.5, 0.5], [0.5])
    assert eer == 1.0
    assert threshold == 0.5
    assert paper_eer([0.5, 0.5, 0.5], [0, 0, 1]) == 100.0


def test_eer_invariant_to_order_within_class() -> None:
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 300)
    eer, _ = compute_eer(bona, spoof)
    assert 0.2 < eer < 0.4  # d' = 1 gives about 31 %
    assert compute_eer(rng.permutation(bona), rng.permutation(spoof))[0] == eer
    # A strictly increasing transform of every score moves nothing either.
    assert compute_eer(np.exp(bona), np.exp(spoof))[0] == eer


@pytest.mark.parametrize(("bona", "spoof"), [([], [0.1]), ([0.1], [])])
def test_empty_class_is_an_error(bona: list[float], spoof: list[float]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        compute_eer(bona, spoof)


def test_paper_eer_one_class_only_is_an_error() -> None:
    with pytest.raises(ValueError, match="spoof"):
        paper_eer([0.1, 0.2], [0, 0])


def test_nan_score_is_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        compute_eer([0.1, float("nan")], [0.2])


def test_bad_labels_and_lengths() -> None:
    with pytest.raises(ValueError, match="0 \\(bona fide\\) or 1"):
        paper_eer([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        paper_eer([0.1, 0.2], [0, 1, 1])


def test_confusion_matrix_rows_are_true_classes() -> None:
    # P(bona fide) bona [0.9, 0.55, 0.2, 0.7]: p_spoof >= 0.5 for 1 of 4 -> [0.75, 0.25]
    # spoof [0.1, 0.6]: p_spoof >= 0.5 for 1 of 2 -> [0.5, 0.5]
    scores = [0.9, 0.1, 0.55, 0.6, 0.2, 0.7]
    labels = [0, 1, 0, 1, 0, 0]
    np.testing.assert_allclose(confusion_matrix(scores, labels), [[0.75, 0.25], [0.5, 0.5]])
    # spoof threshold 0.2 (P(bona fide) 0.8): bona 1 of 4, spoof 0 of 2 predicted bona fide
    np.testing.assert_allclose(confusion_matrix(scores, labels, spoof_threshold=0.2), [[0.25, 0.75], [0.0, 1.0]])
    # an exact tie (P = 0.5) is spoof evidence, as in the service
    np.testing.assert_allclose(confusion_matrix([0.5], [0]), [[0.0, 1.0], [np.nan, np.nan]])


def test_confusion_matrix_absent_class_is_nan() -> None:
    matrix = confusion_matrix([0.9, 0.2], [1, 1])
    assert np.isnan(matrix[0]).all()
    np.testing.assert_allclose(matrix[1], [0.5, 0.5])
