"""Each metric against values worked out independently: by hand, or by scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swinface.evaluate.metrics import (
    age_metrics,
    attribute_metrics,
    best_threshold,
    by_group,
    classification_metrics,
    epsilon_error,
    gender_metrics,
    jsonable,
    kfold_ids,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_10fold,
    verification_metrics,
)
from swinface.evaluate.slices import stratified_folds, stratified_sample
from swinface.tasks import CELEBA_ATTRIBUTES, EXPRESSION_LABELS

sk_metrics = pytest.importorskip("sklearn.metrics")


def _tied_scores(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Scores rounded to two decimals, so many ties cross the two classes."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    scores = np.round(rng.normal(0.3, 0.2, n) + 0.25 * same, 2)
    return scores, same


# ---------------------------------------------------------------- ROC and AUC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_curve_matches_sklearn(seed):
    scores, same = _tied_scores(seed)
    fpr, tpr, thr = sk_metrics.roc_curve(same, scores, drop_intermediate=False)
    roc = roc_curve(scores, same)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    assert np.isinf(roc.thresholds[0]) and np.isinf(thr[0])
    np.testing.assert_allclose(roc.thresholds[1:], thr[1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn(seed):
    scores, same = _tied_scores(seed)
    assert roc_auc(scores, same) == pytest.approx(sk_metrics.roc_auc_score(same, scores), abs=1e-12)


def test_roc_auc_by_hand():
    # positives 0.9, 0.5; negatives 0.5, 0.1: of the 4 (pos, neg) orderings 3 are right, 1 tied.
    assert roc_auc([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)


def test_roc_needs_both_classes():
    with pytest.raises(ValueError, match="both kinds"):
        roc_curve([0.1, 0.2], [True, True])


# ---------------------------------------------------------------- the 10-fold protocol


def test_kfold_ids_follow_sklearn_kfold():
    from sklearn.model_selection import KFold

    ids = kfold_ids(23, 10)
    for fold, (_, test) in enumerate(KFold(10, shuffle=False).split(np.zeros(23))):
        assert np.flatnonzero(ids == fold).tolist() == test.tolist()


def test_10fold_hand_case():
    # 20 pairs, consecutive folds of 2 (same, different). Folds 0-8: same 0.9, different 0.1.
    # Fold 9 is inverted: same 0.3, different 0.7.
    scores = [0.9, 0.1] * 9 + [0.3, 0.7]
    same = [True, False] * 10
    result = verification_10fold(scores, same)
    # Testing fold 9: training folds are separable, threshold 0.5 (midpoint 0.1 | 0.9), 18/18 right.
    # On fold 9 both pairs fall on the wrong side: accuracy 0.
    # Testing fold k < 9: training has 8 x (0.9 same, 0.1 diff) + (0.3 same, 0.7 diff).
    #   threshold 0.2: 8 diff right + 9 same right = 17;  0.5: 8 + 8 = 16;  0.8: 9 + 8 = 17.
    #   The tie 0.2 / 0.8 goes to the stricter 0.8; the test fold (0.9 same, 0.1 diff) is 2/2.
    assert result.fold_thresholds == pytest.approx([0.8] * 9 + [0.5])
    assert result.fold_accuracies == [1.0] * 9 + [0.0]
    assert result.accuracy == pytest.approx(0.9)
    assert result.accuracy_std == pytest.approx(0.3)  # sqrt((9 * 0.1^2 + 0.9^2) / 10)
    assert result.threshold == pytest.approx((9 * 0.8 + 0.5) / 10)
    assert result.fold_sizes == [2] * 10
    assert (result.n_pairs, result.n_same, result.n_different) == (20, 10, 10)


def test_10fold_given_folds_match_reordered_consecutive_folds():
    scores = np.array([0.9, 0.1] * 9 + [0.3, 0.7])
    same = np.array([True, False] * 10)
    rng = np.random.default_rng(3)
    order = rng.permutation(20)
    folds = np.repeat(np.arange(10), 2)
    shuffled = verification_10fold(scores[order], same[order], folds=folds[order])
    assert shuffled.fold_accuracies == verification_10fold(scores, same).fold_accuracies


def test_10fold_separable_is_perfect():
    rng = np.random.default_rng(0)
    same = np.arange(300) % 2 == 0
    scores = np.where(same, rng.uniform(0.45, 1.0, 300), rng.uniform(-1.0, 0.4, 300))
    result = verification_10fold(scores, same)
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    gap = (scores[~same].max(), scores[same].min())
    assert all(gap[0] < t <= gap[1] for t in result.fold_thresholds)


def test_10fold_needs_enough_pairs():
    with pytest.raises(ValueError, match="10 folds"):
        verification_10fold([0.1, 0.9], [False, True])


def test_best_threshold():
    # Sorted: 0.1 d, 0.2 d, 0.4 s, 0.6 d, 0.8 s. Threshold 0.3 -> 4/5; 0.7 -> 4/5; 0.3 and 0.7 tie,
    # the stricter 0.7 wins.
    threshold, accuracy = best_threshold([0.1, 0.2, 0.4, 0.6, 0.8], [0, 0, 1, 0, 1])
    assert threshold == pytest.approx(0.7)
    assert accuracy == pytest.approx(0.8)


def test_best_threshold_matches_brute_force_grid():
    scores, same = _tied_scores(5, 200)
    _, accuracy = best_threshold(scores, same)
    grid = np.arange(-1, 2, 0.001)
    grid_best = max(np.mean((scores >= t) == same) for t in grid)
    assert accuracy == pytest.approx(grid_best)


# ---------------------------------------------------------------- TAR @ FAR


def test_tar_at_far_hand_case():
    negatives = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    positives = [0.95, 0.85, 0.75, 0.55, 0.35]
    scores = negatives + positives
    same = [False] * 10 + [True] * 5
    result = tar_at_far(scores, same, fars=(0.01, 0.1, 0.2, 1.0))
    # FAR <= 0.1 allows one of ten negatives (0.9) through: the lowest such threshold is 0.85,
    # which accepts 0.95 and 0.85: TAR 2/5.
    assert result[0.1].tar == pytest.approx(0.4)
    assert result[0.1].threshold == pytest.approx(0.85)
    assert result[0.1].far == pytest.approx(0.1)
    # FAR <= 0.2: negatives 0.9 and 0.8 through; threshold 0.75 accepts three positives.
    assert result[0.2].tar == pytest.approx(0.6)
    assert result[0.2].threshold == pytest.approx(0.75)
    assert result[1.0].tar == 1.0
    # 1e-2 with ten negatives cannot be measured.
    assert result[0.01].tar is None and result[0.01].threshold is None
    assert "100" in result[0.01].note and "10" in result[0.01].note


def test_tar_at_far_counts_positives_below_the_one_allowed_negative():
    # 10 negatives, FAR 0.1 permits one; the highest score is a negative, the next two positives.
    scores = [0.99] + [0.1] * 9 + [0.98, 0.5]
    same = [False] * 10 + [True, True]
    t = tar_at_far(scores, same, fars=(0.1,))[0.1]
    assert t.tar == 1.0 and t.far == pytest.approx(0.1) and t.threshold == pytest.approx(0.5)


def test_tar_at_far_accept_nothing_has_a_finite_threshold():
    # Two negatives tie at the top: FAR 0.5 allows one, but any threshold letting one through
    # lets both through, so nothing may be accepted: TAR 0, FAR 0, just above the top score.
    t = tar_at_far([0.9, 0.9, 0.1], [False, False, True], fars=(0.5,))[0.5]
    assert t.tar == 0.0 and t.far == 0.0
    assert 0.9 < t.threshold < 0.9 + 1e-12
    assert tar_at_far([0.9, 0.9, 0.1], [False, False, True], fars=(0.49,))[0.49].tar is None


def test_verification_metrics_to_dict_is_json_ready():
    scores, same = _tied_scores(0)
    d = verification_metrics(scores, same).to_dict()
    assert d["roc"]["thresholds"][0] is None  # +inf has no JSON form
    assert d["tar_at_far"]["1e-06"]["tar"] is None
    assert d["auc"] == pytest.approx(sk_metrics.roc_auc_score(same, scores))


# ---------------------------------------------------------------- classification


def test_classification_hand_case():
    labels = ("a", "b", "c")
    true = [0, 0, 0, 0, 1, 1, 2, 2]
    pred = [0, 0, 0, 1, 1, 2, 2, 2]
    r = classification_metrics(pred, true, labels)
    assert r.accuracy == pytest.approx(6 / 8)
    assert r.class_accuracy == pytest.approx({"a": 0.75, "b": 0.5, "c": 1.0})
    assert r.mean_class_accuracy == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert r.confusion.tolist() == [[3, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert r.class_counts == {"a": 4, "b": 2, "c": 2}


def test_classification_mean_over_present_classes_only():
    r = classification_metrics(["happiness", "sadness", "sadness"], [3, 3, 4], EXPRESSION_LABELS)
    assert r.accuracy == pytest.approx(2 / 3)
    assert r.mean_class_accuracy == pytest.approx((0.5 + 1.0) / 2)  # five classes absent
    assert math.isnan(r.class_accuracy["fear"])
    assert r.to_dict()["class_accuracy"]["fear"] is None


def test_classification_matches_sklearn():
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    r = classification_metrics(pred, true, EXPRESSION_LABELS)
    np.testing.assert_array_equal(r.confusion, sk_metrics.confusion_matrix(true, pred))
    assert r.mean_class_accuracy == pytest.approx(sk_metrics.balanced_accuracy_score(true, pred))


def test_classification_rejects_unknown_labels():
    with pytest.raises(ValueError, match="unknown"):
        classification_metrics(["joy"], ["neutral"], EXPRESSION_LABELS)


def test_gender_from_probabilities():
    r = gender_metrics(np.array([0.9, 0.2, 0.6, 0.4]), [1, 0, 0, 0])
    assert r.accuracy == pytest.approx(0.75)
    assert r.labels == ["female", "male"]


# ---------------------------------------------------------------- age


def test_age_hand_case():
    r = age_metrics([20, 30, 42, 50], [22, 30, 35, 45])  # errors -2, 0, +7, +5
    assert r.mae == pytest.approx(14 / 4)
    assert r.mean_error == pytest.approx(10 / 4)
    assert r.cs == pytest.approx(3 / 4)  # |5| <= 5 counts
    assert r.epsilon_error is None


def test_epsilon_error_hand_values():
    assert epsilon_error([30], [30], [4]) == 0.0
    assert epsilon_error([34], [30], [4]) == pytest.approx(1 - math.exp(-0.5))
    expected = (0 + (1 - math.exp(-2))) / 2  # second: two sigmas off
    assert age_metrics([30, 22], [30, 30], std=[5, 4]).epsilon_error == pytest.approx(expected)


def test_epsilon_error_needs_positive_std():
    with pytest.raises(ValueError, match="> 0"):
        epsilon_error([1], [1], [0])


# ---------------------------------------------------------------- attributes


def test_attribute_mean_with_missing_labels():
    true = np.full((4, 40), -1)
    true[:, 0] = [1, 0, 1, 0]  # 5_o_Clock_Shadow: 3 of 4 right
    true[:2, 1] = [1, 1]  # Arched_Eyebrows: 2 labels, 1 right
    prob = np.zeros((4, 40))
    prob[:, 0] = [0.9, 0.1, 0.2, 0.3]
    prob[:, 1] = [0.7, 0.4, 0.99, 0.99]  # the last two are unlabelled: not counted
    r = attribute_metrics(prob, true)
    assert r.accuracy["5_o_Clock_Shadow"] == pytest.approx(0.75)
    assert r.accuracy["Arched_Eyebrows"] == pytest.approx(0.5)
    assert r.counts["Arched_Eyebrows"] == 2
    assert math.isnan(r.accuracy["Young"])
    assert r.mean_accuracy == pytest.approx((0.75 + 0.5) / 2)  # only labelled attributes
    assert list(r.accuracy) == list(CELEBA_ATTRIBUTES)


def test_attribute_hard_predictions():
    true = np.array([[1] * 40, [0] * 40])
    r = attribute_metrics(np.array([[1] * 40, [1] * 40]), true)
    assert r.mean_accuracy == pytest.approx(0.5)


# ---------------------------------------------------------------- groups


def test_by_group_gap_hand_case():
    groups = ["White", "Black", "Black", "Asian", "Asian", "Asian"]
    pred = [30, 20, 26, 40, 40, 40]
    true = [31, 24, 30, 30, 40, 41]  # abs errors: White 1; Black 4, 4; Asian 10, 0, 1
    g = by_group(lambda p, t: age_metrics(p, t).mae, groups, pred, true, metric="MAE", key="race")
    assert {k: v.value for k, v in g.groups.items()} == pytest.approx(
        {"Asian": 11 / 3, "Black": 4.0, "White": 1.0}
    )
    assert {k: v.n for k, v in g.groups.items()} == {"Asian": 3, "Black": 2, "White": 1}
    assert (g.highest, g.lowest) == ("Black", "White")
    assert g.gap == pytest.approx(3.0)


def test_by_group_undefined_metric_is_left_out_of_gap():
    groups = ["a", "a", "b", "b", "c"]
    pred, true = [0, 1, 1, 1, 0], [0, 1, 1, 0, 0]

    def mean_class(p, t):
        if len(set(t)) < 2:
            raise ValueError("one class only")
        return classification_metrics(p, t, ("x", "y")).mean_class_accuracy

    g = by_group(mean_class, groups, pred, true)
    assert math.isnan(g.groups["c"].value) and g.notes
    assert (g.highest, g.lowest, g.gap) == ("a", "b", pytest.approx(0.5))


def test_jsonable():
    assert jsonable({"a": np.float32(1.5), "b": np.array([1, 2]), "c": math.inf}) == {
        "a": 1.5,
        "b": [1, 2],
        "c": None,
    }


def test_attribute_majority_rate_is_the_baseline_beside_each_accuracy():
    # "Mustache" is absent on 9 of 10 faces: a model that always says "no" scores 90%.
    names = ["Mustache", "Smiling", "Bald"]
    true = np.array([[1, 1, -1]] + [[0, i % 2, -1] for i in range(9)])
    always_no = np.zeros((10, 3))
    r = attribute_metrics(always_no, true, names)
    assert r.accuracy["Mustache"] == pytest.approx(0.9)
    assert r.majority_rate["Mustache"] == pytest.approx(0.9)
    assert r.majority_rate["Smiling"] == pytest.approx(0.5)  # 5 of 10 smile
    assert math.isnan(r.majority_rate["Bald"])  # no labels
    assert r.mean_majority_rate == pytest.approx(0.7)
    assert r.to_dict()["majority_rate"]["Bald"] is None  # JSON has no NaN


def test_stratified_sample_keeps_each_class_share():
    # Sorted by class as FER2013 folders are: the first 70 would all be class 0.
    keys = np.repeat(np.arange(7), [400, 50, 300, 200, 100, 100, 850])
    picked = stratified_sample(keys.tolist(), 200, seed=0)
    assert picked.size == 200 and np.all(np.diff(picked) > 0)  # distinct, in file order
    counts = np.bincount(keys[picked], minlength=7)
    assert counts.tolist() == [40, 5, 30, 20, 10, 10, 85]
    assert np.array_equal(picked, stratified_sample(keys.tolist(), 200, seed=0))
    assert not np.array_equal(picked, stratified_sample(keys.tolist(), 200, seed=1))
    assert np.array_equal(stratified_sample(keys.tolist(), 5000), np.arange(2000))


def test_stratified_sample_gives_every_class_a_place_when_it_can():
    keys = ["a"] * 98 + ["b", "c"]
    counts = {k: 0 for k in "abc"}
    for i in stratified_sample(keys, 4, seed=0):
        counts[keys[i]] += 1
    assert counts == {"a": 2, "b": 1, "c": 1}
    assert stratified_sample(keys, 1, seed=0).size == 1
    with pytest.raises(ValueError, match="cannot take -1"):
        stratified_sample(keys, -1)


def test_stratified_folds_balance_a_list_sorted_by_kind():
    # Same-person pairs first: consecutive folds would be all-same, then all-different.
    same = [True] * 30 + [False] * 70
    folds = stratified_folds(same, 10, seed=0)
    y = np.array(same)
    for f in range(10):
        assert (folds == f).sum() == 10 and y[folds == f].sum() == 3
    assert not np.array_equal(folds, stratified_folds(same, 10, seed=1))
    uneven = stratified_folds([True] * 7 + [False] * 8, 10, seed=0)
    assert np.ptp(np.bincount(uneven, minlength=10)) <= 1
    with pytest.raises(ValueError, match="9 pairs cannot be split into 10 folds"):
        stratified_folds([True] * 9)
