"""What each teacher can teach: its accuracy on a prepared face store, by swinface's metrics.

Faces come from `swinface prepare` (the project's detector and 5-point
alignment), so teachers are measured on exactly the crops they will see in
`distill-targets`. Identity teachers: same/different pairs built from the
store's identity labels, 10-fold verification. Gender and expression:
accuracy. Age: MAE.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from swinface.data.store import FaceStore
from swinface.evaluate import metrics


def identity_pairs(
    identity: np.ndarray, n_pairs: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to `n_pairs` (i, j, same) pairs, half same-identity and half different, shuffled.

    Same-identity pairs are drawn without replacement from all pairs of faces
    of one person (every such pair if there are fewer); as many
    different-identity pairs are drawn at random. Faces with identity -1 are left out.
    """
    rng = np.random.default_rng(seed)
    faces = np.flatnonzero(identity >= 0)
    groups: dict[int, list[int]] = {}
    for i in faces:
        groups.setdefault(int(identity[i]), []).append(int(i))
    same = [(a, b) for g in groups.values() for k, a in enumerate(g) for b in g[k + 1 :]]
    if not same or len(groups) < 2:
        raise ValueError("the store needs two people or more, one of them with two faces or more")
    n_same = min(len(same), n_pairs // 2)
    chosen = [same[k] for k in rng.choice(len(same), n_same, replace=False)]
    different = []
    while len(different) < n_same:
        a, b = rng.choice(faces, 2, replace=False)
        if identity[a] != identity[b]:
            different.append((int(a), int(b)))
    pairs = np.array(chosen + different)
    labels = np.r_[np.ones(n_same, bool), np.zeros(n_same, bool)]
    order = rng.permutation(len(pairs))
    return pairs[order, 0], pairs[order, 1], labels[order]


def _batches(store: FaceStore, rows: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), batch):
        yield np.asarray(store.faces[np.sort(rows[start : start + batch])])


def predict(model, store: FaceStore, rows: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """The teacher's outputs for the faces `rows` of `store`, in that (sorted) order."""
    rows = np.sort(rows)
    out: dict[str, list[np.ndarray]] = {}
    for faces in _batches(store, rows, batch):
        for task, values in model.predict(faces).items():
            out.setdefault(task, []).append(values)
    return {task: np.concatenate(parts) for task, parts in out.items()}


def evaluate_teacher(
    model, store: FaceStore, *, pairs: int = 6000, seed: int = 0, batch: int = 256
) -> dict[str, metrics.Result]:
    """Every task the teacher teaches that the store has labels for, measured."""
    results: dict[str, metrics.Result] = {}
    tasks = set(model.tasks)
    if "embedding" in tasks and store.has("identity").any():
        a, b, same = identity_pairs(store.labels["identity"], pairs, seed)
        rows = np.unique(np.r_[a, b])
        emb = predict(model, store, rows, batch)["embedding"]
        where = {int(r): k for k, r in enumerate(rows)}
        scores = np.einsum(
            "ij,ij->i", emb[[where[int(i)] for i in a]], emb[[where[int(j)] for j in b]]
        )
        results["identity"] = metrics.verification_10fold(scores, same)
    wanted = [t for t in ("gender", "age", "expression") if t in tasks and store.has(t).any()]
    if wanted:
        rows = np.flatnonzero(np.logical_or.reduce([store.has(t) for t in wanted]))
        out = predict(model, store, rows, batch)
        for task in wanted:
            keep = store.has(task)[rows]
            truth = store.labels[task][rows][keep]
            if task == "gender":
                results[task] = metrics.gender_metrics(out[task][keep][:, 1], truth)
            elif task == "age":
                results[task] = metrics.age_metrics(out[task][keep], truth)
            else:
                from swinface.tasks import EXPRESSION_LABELS

                results[task] = metrics.classification_metrics(
                    out[task][keep].argmax(1), truth, EXPRESSION_LABELS
                )
    return results


def summary(result: metrics.Result) -> str:
    """One line for a result."""
    if isinstance(result, metrics.VerificationResult):
        return (
            f"10-fold verification {100 * result.accuracy:.2f}% ± {100 * result.accuracy_std:.2f} "
            f"on {result.n_pairs} pairs ({result.n_same} same), threshold {result.threshold:.3f}"
        )
    if isinstance(result, metrics.AgeResult):
        return (
            f"MAE {result.mae:.2f} years (bias {result.mean_error:+.2f}), "
            f"CS(5) {100 * result.cs:.1f}% on {result.n} faces"
        )
    if isinstance(result, metrics.ClassificationResult):
        return (
            f"accuracy {100 * result.accuracy:.2f}%, mean class accuracy "
            f"{100 * result.mean_class_accuracy:.2f}% on {result.n} faces"
        )
    return str(result)
