"""Honest subsets: stratified random slices of a dataset, and stratified verification folds.

Dataset files are often sorted by class (FER2013 folders, UTKFace names by
age, pair lists with every same-person pair first), so the first N items or
consecutive folds can hold a single class. Both functions here draw at random
from a fixed seed and keep each class's share.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

DEFAULT_SEED = 0


def _allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """How many of `n` draws each class gets: its share of the whole, at least one when n allows.

    Largest remainders settle the rounding (ties to the earlier class), so the
    counts add up to `n` exactly and no class gets more than it has.
    """
    exact = n * sizes / sizes.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: n - int(quota.sum())]] += 1
    if n >= sizes.size:  # every class present in the whole appears in the slice
        for k in np.flatnonzero(quota == 0):
            quota[int(np.argmax(quota))] -= 1
            quota[k] = 1
    return quota


def stratified_sample(keys: Sequence[Hashable], n: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Indices of `n` items drawn at random, each key keeping its share; in the original order.

    `keys` holds each item's class (any hashable: a label, a (fold, same) pair,
    or None for all alike). With `n >= len(keys)` every index is returned.
    """
    if n < 0:
        raise ValueError(f"cannot take {n} items")
    if n >= len(keys):
        return np.arange(len(keys))
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    quota = _allocate(np.array([len(v) for v in groups.values()]), n)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.asarray(members), q, replace=False)
        for members, q in zip(groups.values(), quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def stratified_folds(labels: Sequence[Hashable], n_folds: int = 10, seed: int = DEFAULT_SEED):
    """A fold id per item: `n_folds` folds of near-equal size, each with the whole's class mix.

    Within each class the items are shuffled and dealt round the folds, one
    class after another, so fold sizes differ by at most one overall and by at
    most one per class.
    """
    y = list(labels)
    if len(y) < n_folds:
        raise ValueError(f"{len(y)} pairs cannot be split into {n_folds} folds")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), np.int64)
    start = 0
    groups: dict[Hashable, list[int]] = {}
    for i, value in enumerate(y):
        groups.setdefault(value, []).append(i)
    for members in groups.values():
        shuffled = rng.permutation(np.asarray(members))
        folds[shuffled] = (start + np.arange(shuffled.size)) % n_folds
        start += shuffled.size
    return folds


__all__ = ["DEFAULT_SEED", "stratified_folds", "stratified_sample"]
