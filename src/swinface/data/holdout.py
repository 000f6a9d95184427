"""A fixed part of a store kept out of training, for honest validation on data like it.

A face is held out by a hash of its person (every face of a held-out identity,
so verification pairs are of unseen people) or, in stores without identities,
of its source file: the choice depends on neither the store's order nor its size.
"""

from __future__ import annotations

import hashlib

import numpy as np

from swinface.data.store import FaceStore, StoreError


def holdout_mask(store: FaceStore, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the faces of `store` held out of training (about `fraction` of them)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout: a fraction in [0, 1) is needed, got {fraction}")
    if fraction == 0.0:
        return np.zeros(len(store), dtype=bool)
    identities = store.labels["identity"]
    sources = store.sources
    if len(sources) != len(store) and not (identities >= 0).all():
        raise StoreError(f"{store.path}: faces without identities or source names to hold out by")
    keys = [
        f"id:{int(identities[i])}" if identities[i] >= 0 else f"src:{sources[i]}"
        for i in range(len(store))
    ]
    threshold = int(fraction * 2**64)
    return np.array(
        [
            int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")
            < threshold
            for key in keys
        ],
        dtype=bool,
    )


def subset(store: FaceStore, mask: np.ndarray) -> FaceStore:
    """An in-memory store of the faces `mask` selects, with their labels."""
    index = np.flatnonzero(mask)
    meta = dict(store.meta)
    if "sources" in meta:
        meta["sources"] = [meta["sources"][i] for i in index]
    return FaceStore(
        store.path,
        np.asarray(store.faces[index]),
        {name: values[index] for name, values in store.labels.items()},
        meta,
    )
