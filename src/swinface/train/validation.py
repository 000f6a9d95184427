"""Validation during training: the evaluation metrics on prepared face stores.

Stores hold aligned faces already, so validation runs the model straight on
them (no decoding, no detection) and scores whatever labels each store has:
age, gender, expression, attributes, and verification on pairs drawn from the
store's identities.
"""

from __future__ import annotations

import numpy as np
import torch

from swinface import tasks
from swinface.data.holdout import holdout_mask, subset
from swinface.data.store import FaceStore, open_store
from swinface.decode import cosine_similarity, probabilities
from swinface.evaluate import metrics
from swinface.model import SwinFace, SwinFaceOutput
from swinface.train.batches import LabelPriors
from swinface.train.config import EvalStoreConfig


@torch.no_grad()
def run_store(
    model: SwinFace, store: FaceStore, device: torch.device, batch_size: int = 128
) -> SwinFaceOutput:
    """Raw outputs for every face of a store."""
    embeddings, logits = [], []
    for start in range(0, len(store), batch_size):
        faces = torch.from_numpy(np.array(store.faces[start : start + batch_size])).to(device)
        out = model(SwinFace.preprocess(faces))
        embeddings.append(out.embedding.float().cpu())
        logits.append(out.logits.float().cpu())
    return SwinFaceOutput(torch.cat(embeddings), torch.cat(logits))


def identity_pairs(
    identities: np.ndarray, max_pairs: int = 3000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced same/different index pairs from identity labels, chosen by a fixed rule."""
    rng = np.random.default_rng(seed)
    labelled = np.flatnonzero(identities >= 0)
    by_person: dict[int, list[int]] = {}
    for i in labelled:
        by_person.setdefault(int(identities[i]), []).append(int(i))
    same = [
        (a[j], a[k])
        for a in by_person.values()
        for j in range(len(a))
        for k in range(j + 1, len(a))
    ]
    rng.shuffle(same)
    same = same[: max_pairs // 2]
    different = []
    while len(different) < len(same):
        a, b = rng.choice(labelled, 2, replace=False)
        if identities[a] != identities[b]:
            different.append((int(a), int(b)))
    pairs = np.array(same + different, dtype=np.int64).reshape(-1, 2)
    is_same = np.array([True] * len(same) + [False] * len(different))
    order = rng.permutation(len(pairs))  # mixed folds for the 10-fold protocol
    return pairs[order], is_same[order]


CONSTANT = "constant_"
"""Prefix of the figure a constant answer scores on the same faces."""


def constant_figures(store: FaceStore, priors: LabelPriors) -> dict[str, float]:
    """The figures of a model that gives every face the training data's constant answer
    (mean age, majority gender and expression, each attribute's majority, one embedding),
    on the store's faces: the floor a model that learns must clear."""
    labels, figures = store.labels, {}
    n = len(store)
    has = {name: store.has(name) for name in ("age", "gender", "expression", "attributes")}
    if has["age"].any() and priors.age_mean is not None:
        ages = labels["age"][has["age"]]
        figures["age_mae"] = metrics.age_metrics(np.full(len(ages), priors.age_mean), ages).mae
    if has["gender"].any() and priors.gender is not None:
        figures["gender_accuracy"] = float(
            np.mean(labels["gender"][has["gender"]] == priors.gender)
        )
    if has["expression"].any() and priors.expression is not None:
        true = labels["expression"][has["expression"]]
        result = metrics.classification_metrics(
            np.full(len(true), priors.expression), true, tasks.EXPRESSION_LABELS
        )
        figures["expression_accuracy"] = result.accuracy
        figures["expression_mean_class_accuracy"] = result.mean_class_accuracy
    if has["attributes"].any() and priors.attributes is not None:
        constant = np.tile(np.asarray(priors.attributes, np.float64), (n, 1))[has["attributes"]]
        result = metrics.attribute_metrics(constant, labels["attributes"][has["attributes"]])
        figures["attributes_mean_accuracy"] = result.mean_accuracy
    identities = labels["identity"]
    if len(np.unique(identities[identities >= 0])) >= 2:
        figures["verification_auc"] = 0.5  # one embedding for all: every pair ties
        figures["verification_accuracy"] = 0.5  # pairs are half same, half different
    return {CONSTANT + k: float(v) for k, v in figures.items()}


# How far past the constant answer a figure must be to count as learnt: a run still within
# these at an evaluation after its warm-up has collapsed (see `collapsed_figures`).
COLLAPSE_MARGINS: dict[str, float] = {
    "expression_accuracy": 0.01,
    "gender_accuracy": 0.01,
    "attributes_mean_accuracy": 0.005,
    "age_mae": -0.25,  # years: lower is better
    "verification_auc": 0.02,
}


def collapsed_figures(figures: dict[str, float]) -> list[str]:
    """`name/figure value (constant c)` for each figure no better than its constant answer."""
    found = []
    for key, value in figures.items():
        store, _, figure = key.rpartition("/")
        margin = COLLAPSE_MARGINS.get(figure)
        constant = figures.get(f"{store}/{CONSTANT}{figure}")
        if margin is None or constant is None:
            continue
        learnt = value <= constant + margin if margin < 0 else value >= constant + margin
        if not learnt:
            found.append(f"{key} {value:.4g} (constant answer {constant:.4g})")
    return found


def format_figures(step: int, figures: dict[str, float]) -> str:
    """One validation line: each figure beside its constant answer on the same faces."""
    parts = []
    for key, value in figures.items():
        store, _, figure = key.rpartition("/")
        if figure.startswith(CONSTANT):
            continue
        constant = figures.get(f"{store}/{CONSTANT}{figure}")
        parts.append(
            f"{key} {value:.4g}" + (f" (constant {constant:.4g})" if constant is not None else "")
        )
    return f"validation at step {step}: " + "; ".join(parts)


def store_figures(out: SwinFaceOutput, store: FaceStore) -> dict[str, float]:
    """Every figure the store's labels allow, named `<task>_<metric>`."""
    p = probabilities(out)
    labels, figures = store.labels, {}
    has = {name: store.has(name) for name in ("age", "gender", "expression", "attributes")}
    if has["age"].any():
        pred = p["Age"][has["age"]]
        age = metrics.age_metrics(pred, labels["age"][has["age"]])
        figures |= {"age_mae": age.mae, "age_cs5": age.cs}
    if has["gender"].any():
        pred = p["Gender"].argmax(1)[has["gender"]]
        figures["gender_accuracy"] = float(np.mean(pred == labels["gender"][has["gender"]]))
    if has["expression"].any():
        pred = p["Expression"].argmax(1)[has["expression"]]
        result = metrics.classification_metrics(
            pred, labels["expression"][has["expression"]], tasks.EXPRESSION_LABELS
        )
        figures |= {
            "expression_accuracy": result.accuracy,
            "expression_mean_class_accuracy": result.mean_class_accuracy,
        }
    if has["attributes"].any():
        prob = np.stack([p[tasks.output(a).name][:, 1] for a in tasks.CELEBA_ATTRIBUTES], 1)
        result = metrics.attribute_metrics(
            prob[has["attributes"]], labels["attributes"][has["attributes"]]
        )
        figures["attributes_mean_accuracy"] = result.mean_accuracy
    identities = labels["identity"]
    if (identities >= 0).sum() >= 4 and len(np.unique(identities[identities >= 0])) >= 2:
        pairs, same = identity_pairs(identities)
        if same.any() and (~same).any():
            emb = p[tasks.RECOGNITION.name]
            scores = cosine_similarity(emb[pairs[:, 0]], emb[pairs[:, 1]])
            folds = min(10, int(same.sum()), int((~same).sum()))
            figures["verification_auc"] = metrics.roc_auc(scores, same)
            if folds >= 2:
                result = metrics.verification_10fold(scores, same, n_folds=folds)
                figures["verification_accuracy"] = result.accuracy
    return {k: float(v) for k, v in figures.items()}


def evaluate_stores(
    model: SwinFace,
    stores: dict[str, str | EvalStoreConfig],
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    priors: LabelPriors | None = None,
) -> dict[str, float]:
    """Figures on each named validation store (or its held-out part), keyed
    `<store name>/<figure>`; `seed` is the training run's, which chose the held-out part.
    With `priors`, each figure's constant answer too, as `<store name>/constant_<figure>`."""
    from swinface.model.borrowed import eval_mode

    device = torch.device(device)
    figures = {}
    with eval_mode(model):  # restores every module's own mode afterwards
        for name, entry in stores.items():
            entry = EvalStoreConfig(entry) if isinstance(entry, str) else entry
            store = open_store(entry.store)
            if entry.holdout:
                store = subset(store, holdout_mask(store, entry.holdout, seed))
            found = store_figures(run_store(model, store, device), store)
            if priors is not None:
                found |= constant_figures(store, priors)
            for key, value in found.items():
                figures[f"{name}/{key}"] = value
    return figures
