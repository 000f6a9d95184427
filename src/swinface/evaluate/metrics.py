"""The field's standard metrics, in plain NumPy, each returning a typed result with `to_dict()`.

- Verification: the LFW / InsightFace 10-fold protocol, ROC, AUC and TAR@FAR.
- Expression and gender: accuracy, mean per-class accuracy, confusion matrix.
- Age: MAE, CS(5) and the ChaLearn LAP 2015 epsilon-error.
- Attributes: per-attribute accuracy under CelebA names and their mean.
- Fairness: any metric broken down by a group label, with the largest gap.

Conventions: a verification score is a similarity (higher means "same person")
and a pair is called "same" when ``score >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

from swinface.tasks import CELEBA_ATTRIBUTES, GENDER_LABELS

DEFAULT_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def jsonable(value: Any) -> Any:
    """Plain JSON types from results: arrays to lists, NaN and infinities to None."""
    if is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if to_dict else jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; None reads as "not available"
    return value


class Result:
    """Mixin: every result turns itself into JSON-ready data the same way."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


# ---------------------------------------------------------------- verification


@dataclass
class VerificationResult(Result):
    """The 10-fold verification protocol: test accuracy per fold, and its mean ± std."""

    accuracy: float  # mean test-fold accuracy
    accuracy_std: float  # population std over folds, as InsightFace reports it
    threshold: float  # mean of the per-fold thresholds
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    fold_sizes: list[int]
    n_pairs: int
    n_same: int
    n_different: int


@dataclass
class RocCurve(Result):
    """ROC points, one per distinct score, from (0, 0) to (1, 1); `thresholds[0]` is +inf."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass
class TarAtFar(Result):
    """True accept rate at a target false accept rate; `tar` is None when it cannot be measured."""

    target_far: float
    tar: float | None
    threshold: float | None
    far: float | None  # the false accept rate actually reached (<= target_far)
    note: str | None = None  # why `tar` is None


@dataclass
class VerificationMetrics(Result):
    """Everything one verification evaluation reports."""

    kfold: VerificationResult
    auc: float
    tar_at_far: dict[float, TarAtFar]
    best_threshold: float  # the best single threshold over all pairs
    best_accuracy: float  # its accuracy on all pairs (optimistic: chosen on the same pairs)
    roc: RocCurve


def _binary_inputs(scores: Any, same: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(same).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if s.size == 0:
        raise ValueError("no pairs to evaluate")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return s, y


def _require_both_classes(y: np.ndarray) -> None:
    if y.all() or not y.any():
        kind = "same-person" if y.all() else "different-person"
        raise ValueError(f"only {kind} pairs given; the metric needs both kinds")


def _threshold_accuracies(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct way to threshold `s`, and the number of pairs each gets right.

    The candidates are: the lowest score (all "same"), the midpoints between
    consecutive distinct scores, and just above the highest score (all
    "different"). Between two candidates, accuracy on these pairs cannot
    change, so this search is exact, unlike a fixed grid.
    """
    u, inverse = np.unique(s, return_inverse=True)
    n_pos = int(y.sum())
    neg_per_value = np.bincount(inverse, weights=~y, minlength=u.size)
    pos_per_value = np.bincount(inverse, weights=y, minlength=u.size)
    neg_le = np.cumsum(neg_per_value)  # different-person pairs scoring <= u[j]
    pos_gt = n_pos - np.cumsum(pos_per_value)  # same-person pairs scoring > u[j]
    mids = (u[:-1] + u[1:]) / 2
    mids = np.where(mids > u[:-1], mids, u[1:])  # adjacent floats: the midpoint may round down
    thresholds = np.r_[u[0], mids, np.nextafter(u[-1], np.inf)]
    correct = np.r_[n_pos, neg_le + pos_gt]
    return thresholds, correct


def best_threshold(scores: Any, same: Any) -> tuple[float, float]:
    """The threshold with the highest accuracy on these pairs, and that accuracy.

    Ties go to the highest threshold, the strictest one (fewest false accepts);
    this is InsightFace's choice too, whose first best distance threshold is
    the highest similarity threshold.
    """
    s, y = _binary_inputs(scores, same)
    thresholds, correct = _threshold_accuracies(s, y)
    k = correct.size - 1 - int(np.argmax(correct[::-1]))
    return float(thresholds[k]), float(correct[k] / s.size)


def kfold_ids(n: int, n_folds: int = 10) -> np.ndarray:
    """Consecutive folds as sklearn's KFold(shuffle=False): the first n % n_folds get one more."""
    if n < n_folds:
        raise ValueError(f"{n} pairs cannot be split into {n_folds} folds")
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def verification_10fold(
    scores: Any, same: Any, folds: Any = None, n_folds: int = 10
) -> VerificationResult:
    """The LFW / InsightFace protocol: threshold chosen on nine folds, accuracy on the tenth.

    `folds` gives each pair's fold (e.g. LFW's own ten sets); without it the
    pairs are cut into `n_folds` consecutive folds, as InsightFace does.
    """
    s, y = _binary_inputs(scores, same)
    ids = kfold_ids(s.size, n_folds) if folds is None else np.asarray(folds).ravel()
    if ids.shape != s.shape:
        raise ValueError(f"folds: expected {s.size} fold ids, got {ids.size}")
    accuracies, thresholds, sizes = [], [], []
    for fold in np.unique(ids):
        test = ids == fold
        if test.all():
            raise ValueError("only one fold: nothing to choose a threshold on")
        threshold, _ = best_threshold(s[~test], y[~test])
        accuracies.append(float(np.mean((s[test] >= threshold) == y[test])))
        thresholds.append(threshold)
        sizes.append(int(test.sum()))
    return VerificationResult(
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        threshold=float(np.mean(thresholds)),
        fold_accuracies=accuracies,
        fold_thresholds=thresholds,
        fold_sizes=sizes,
        n_pairs=int(s.size),
        n_same=int(y.sum()),
        n_different=int((~y).sum()),
    )


def roc_curve(scores: Any, same: Any) -> RocCurve:
    """The ROC curve at every distinct score (as sklearn's with drop_intermediate=False)."""
    s, y = _binary_inputs(scores, same)
    _require_both_classes(y)
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last_of_value]
    fps = 1 + last_of_value - tps
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    return RocCurve(
        fpr=fps / fps[-1], tpr=tps / tps[-1], thresholds=np.r_[np.inf, s[last_of_value]]
    )


def roc_auc(scores: Any, same: Any) -> float:
    """Area under the ROC curve (ties count one half, as in the Mann-Whitney U statistic)."""
    roc = roc_curve(scores, same)
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2))


def tar_at_far(
    scores: Any, same: Any, fars: Sequence[float] = DEFAULT_FARS
) -> dict[float, TarAtFar]:
    """TAR at each target FAR, at the lowest threshold whose FAR does not exceed the target.

    A FAR below 1 / (number of different-person pairs) cannot be measured: the
    only FAR reachable under it is zero. Such targets get `tar=None` and a note.
    """
    s, y = _binary_inputs(scores, same)
    roc = roc_curve(s, y)
    n_neg = int((~y).sum())
    out: dict[float, TarAtFar] = {}
    for far in fars:
        if far * n_neg < 1 - 1e-9:
            needed = math.ceil(1 / far - 1e-9)
            note = f"needs at least {needed} different-person pairs, have {n_neg}"
            out[far] = TarAtFar(far, None, None, None, note)
            continue
        # The ROC runs from high thresholds to low: the last point within the target is the
        # lowest allowed threshold, and has the highest TAR.
        k = np.flatnonzero(roc.fpr <= far * (1 + 1e-9))[-1]
        threshold = float(roc.thresholds[k])
        if not math.isfinite(threshold):  # accept nothing: just above the highest score
            threshold = float(np.nextafter(s.max(), np.inf))
        out[far] = TarAtFar(far, float(roc.tpr[k]), threshold, float(roc.fpr[k]))
    return out


def verification_metrics(
    scores: Any, same: Any, folds: Any = None, fars: Sequence[float] = DEFAULT_FARS
) -> VerificationMetrics:
    """The 10-fold protocol, AUC, TAR@FAR and the ROC curve for one set of pairs."""
    s, y = _binary_inputs(scores, same)
    _require_both_classes(y)
    threshold, accuracy = best_threshold(s, y)
    return VerificationMetrics(
        kfold=verification_10fold(s, y, folds),
        auc=roc_auc(s, y),
        tar_at_far=tar_at_far(s, y, fars),
        best_threshold=threshold,
        best_accuracy=accuracy,
        roc=roc_curve(s, y),
    )


# ---------------------------------------------------------------- classification


@dataclass
class ClassificationResult(Result):
    """Accuracy, mean per-class accuracy and the confusion matrix (rows true, columns predicted)."""

    labels: list[str]
    n: int
    accuracy: float
    mean_class_accuracy: float  # over the classes present in the true labels
    class_accuracy: dict[str, float]  # NaN for a class with no true examples
    class_counts: dict[str, int]
    confusion: np.ndarray  # (n_classes, n_classes) counts


def _as_indices(values: Any, labels: Sequence[str], what: str) -> np.ndarray:
    arr = np.asarray(values).ravel()
    if arr.dtype.kind in "USO":  # label names
        index = {label: i for i, label in enumerate(labels)}
        unknown = sorted({str(v) for v in arr} - set(index))
        if unknown:
            raise ValueError(f"{what}: unknown labels {unknown}; known: {list(labels)}")
        return np.array([index[str(v)] for v in arr], dtype=np.int64)
    idx = arr.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(labels)):
        raise ValueError(f"{what}: class indices must lie in [0, {len(labels) - 1}]")
    return idx


def classification_metrics(pred: Any, true: Any, labels: Sequence[str]) -> ClassificationResult:
    """Accuracy, per-class accuracy and confusion matrix; classes given as indices or names."""
    p = _as_indices(pred, labels, "pred")
    t = _as_indices(true, labels, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in length: {p.size} vs {t.size}")
    if t.size == 0:
        raise ValueError("no predictions to evaluate")
    k = len(labels)
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    counts = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.diag(confusion) / counts
    return ClassificationResult(
        labels=list(labels),
        n=int(t.size),
        accuracy=float(np.mean(p == t)),
        mean_class_accuracy=float(np.mean(per_class[counts > 0])),
        class_accuracy={lab: float(a) for lab, a in zip(labels, per_class, strict=True)},
        class_counts={lab: int(c) for lab, c in zip(labels, counts, strict=True)},
        confusion=confusion,
    )


def gender_metrics(pred: Any, true: Any) -> ClassificationResult:
    """Gender accuracy; `pred` as 0/1 (female/male), label names, or the probability of male."""
    p = np.asarray(pred)
    if p.dtype.kind == "f":
        p = (p >= 0.5).astype(np.int64)
    return classification_metrics(p, true, GENDER_LABELS)


# ---------------------------------------------------------------- age


@dataclass
class AgeResult(Result):
    """Age estimation: MAE, cumulative score CS(θ) and, with label spreads, the epsilon-error."""

    n: int
    mae: float  # years
    mean_error: float  # signed, predicted - true: a bias towards older (> 0) or younger
    cs_threshold: float
    cs: float  # fraction of faces with |error| <= cs_threshold
    epsilon_error: float | None  # ChaLearn LAP 2015; None without label standard deviations
    pred: np.ndarray
    true: np.ndarray


def epsilon_error(pred: Any, mean: Any, std: Any) -> float:
    """ChaLearn LAP 2015's error: mean of 1 - exp(-(x - mu)^2 / (2 sigma^2)); 0 is perfect."""
    x, mu, sigma = (np.asarray(a, np.float64).ravel() for a in (pred, mean, std))
    if np.any(sigma <= 0):
        raise ValueError("epsilon-error needs every age standard deviation > 0")
    return float(np.mean(1 - np.exp(-((x - mu) ** 2) / (2 * sigma**2))))


def age_metrics(pred: Any, true: Any, std: Any = None, cs_threshold: float = 5.0) -> AgeResult:
    """MAE, CS(5) and (when `std` is given, as in CLAP2015) the epsilon-error."""
    p = np.asarray(pred, np.float64).ravel()
    t = np.asarray(true, np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in length: {p.size} vs {t.size}")
    if p.size == 0:
        raise ValueError("no ages to evaluate")
    err = p - t
    return AgeResult(
        n=int(p.size),
        mae=float(np.mean(np.abs(err))),
        mean_error=float(np.mean(err)),
        cs_threshold=float(cs_threshold),
        cs=float(np.mean(np.abs(err) <= cs_threshold)),
        epsilon_error=None if std is None else epsilon_error(p, t, std),
        pred=p,
        true=t,
    )


# ---------------------------------------------------------------- attributes


@dataclass
class AttributeResult(Result):
    """Per-attribute accuracy (CelebA names) and the mean over attributes."""

    mean_accuracy: float  # mean over attributes with at least one label
    accuracy: dict[str, float]  # NaN for an attribute with no labels
    counts: dict[str, int]  # labelled faces per attribute
    n: int  # faces
    # The accuracy of always giving the commoner answer: what `accuracy` must beat.
    majority_rate: dict[str, float] = field(default_factory=dict)  # NaN with no labels
    mean_majority_rate: float = math.nan  # over the same attributes as `mean_accuracy`


def attribute_metrics(
    prob_or_pred: Any, true: Any, names: Sequence[str] = CELEBA_ATTRIBUTES
) -> AttributeResult:
    """Accuracy of each binary attribute; `true` is 0/1 with -1 for a missing label.

    Beside each accuracy, the majority-class rate: the accuracy of always
    answering the commoner value (98% for "no mustache" on CelebA), the baseline
    an attribute's accuracy has to be read against.

    `prob_or_pred` holds probabilities of "yes" (thresholded at 0.5) or 0/1 predictions.
    """
    p = np.asarray(prob_or_pred)
    t = np.asarray(true).astype(np.int64)
    if p.ndim != 2 or p.shape != t.shape or p.shape[1] != len(names):
        raise ValueError(f"expected pred and true of shape (N, {len(names)}): {p.shape}, {t.shape}")
    yes = p >= 0.5 if p.dtype.kind == "f" else p.astype(np.int64) == 1
    known = t >= 0
    counts = known.sum(axis=0)
    correct = ((yes == (t == 1)) & known).sum(axis=0)
    positives = ((t == 1) & known).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = correct / counts
        majority = np.maximum(positives, counts - positives) / counts
    labelled = counts > 0
    return AttributeResult(
        mean_accuracy=float(np.mean(acc[labelled])) if labelled.any() else math.nan,
        accuracy={n: float(a) for n, a in zip(names, acc, strict=True)},
        counts={n: int(c) for n, c in zip(names, counts, strict=True)},
        n=int(p.shape[0]),
        majority_rate={n: float(m) for n, m in zip(names, majority, strict=True)},
        mean_majority_rate=float(np.mean(majority[labelled])) if labelled.any() else math.nan,
    )


# ---------------------------------------------------------------- fairness


@dataclass
class GroupValue(Result):
    value: float
    n: int


@dataclass
class GroupBreakdown(Result):
    """One metric per group (e.g. MAE per race) and the largest gap between groups."""

    metric: str
    key: str  # the grouping, e.g. "race"
    groups: dict[str, GroupValue]
    gap: float  # max - min over groups with a value; NaN with fewer than two
    highest: str | None
    lowest: str | None
    task: str = ""
    higher_is_better: bool = True
    notes: list[str] = field(default_factory=list)


def by_group(
    metric_fn: Callable[..., float],
    groups: Sequence[str],
    *arrays: Any,
    metric: str = "value",
    key: str = "group",
    task: str = "",
    higher_is_better: bool = True,
) -> GroupBreakdown:
    """`metric_fn(*arrays)` computed separately for each group label in `groups`."""
    g = np.array([str(x) for x in groups], dtype=object)
    arrs = [np.asarray(a) for a in arrays]
    for a in arrs:
        if len(a) != len(g):
            raise ValueError(f"each array needs one row per group label ({len(g)}), got {len(a)}")
    values: dict[str, GroupValue] = {}
    notes = []
    for name in sorted(set(g)):
        mask = g == name
        try:
            value = float(metric_fn(*(a[mask] for a in arrs)))
        except ValueError as err:  # e.g. one class only: the metric is undefined for this group
            value = math.nan
            notes.append(f"{name}: {err}")
        values[name] = GroupValue(value, int(mask.sum()))
    valid = {k: v.value for k, v in values.items() if math.isfinite(v.value)}
    highest = lowest = None
    gap = math.nan  # a gap needs two groups with a value
    if len(valid) >= 2:
        highest = max(valid, key=valid.__getitem__)
        lowest = min(valid, key=valid.__getitem__)
        gap = valid[highest] - valid[lowest]
    return GroupBreakdown(metric, key, values, gap, highest, lowest, task, higher_is_better, notes)
