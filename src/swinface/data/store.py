"""A compact store of aligned 112x112 faces with their labels, for training and evaluation.

One folder: `faces.npy` (uint8, N x 112 x 112 x 3, memory-mapped on read),
one `.npy` per label (N long, with -1 / NaN for "no label"), and `meta.json`
(where each face came from, what was skipped). Plain arrays only, read with
`allow_pickle=False`: nothing in a store can run code.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swinface import tasks
from swinface.errors import SwinFaceError

FACE_SHAPE = (112, 112, 3)
STORE_VERSION = 1

# label name -> (dtype, per-sample shape, "missing" value)
LABELS: dict[str, tuple[str, tuple[int, ...], float]] = {
    "identity": ("int64", (), -1),
    "age": ("float32", (), np.nan),
    "gender": ("int8", (), -1),
    "expression": ("int8", (), -1),
    "attributes": ("int8", (len(tasks.CELEBA_ATTRIBUTES),), -1),
}


class StoreError(SwinFaceError, ValueError):
    """A face store that is missing, incomplete or inconsistent."""


@dataclass
class FaceStore:
    """An opened store: faces memory-mapped, labels in memory."""

    path: Path
    faces: np.ndarray
    labels: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def sources(self) -> list[str]:
        return self.meta.get("sources", [])

    def has(self, label: str) -> np.ndarray:
        """Boolean mask of the samples that carry `label`."""
        values = self.labels[label]
        if label == "age":
            return ~np.isnan(values)
        if values.ndim > 1:
            return (values >= 0).any(axis=1)
        return values >= 0


class StoreWriter:
    """Writes a store incrementally into a temporary folder, moved into place on `close`."""

    def __init__(self, path: str | Path, capacity: int) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.capacity = capacity
        self.faces = np.lib.format.open_memmap(
            self.tmp / "faces.npy", mode="w+", dtype=np.uint8, shape=(capacity, *FACE_SHAPE)
        )
        self.labels = {
            name: np.full((capacity, *shape), missing, dtype=dtype)
            for name, (dtype, shape, missing) in LABELS.items()
        }
        self.sources: list[str] = []
        self.skipped: list[dict[str, str]] = []

    def add(self, face: np.ndarray, source: str, **labels) -> None:
        i = len(self.sources)
        if i >= self.capacity:
            raise StoreError(f"{self.path}: store is full ({self.capacity} faces)")
        if face.shape != FACE_SHAPE or face.dtype != np.uint8:
            raise StoreError(
                f"{source}: expected a uint8 face of shape {FACE_SHAPE}, got {face.dtype} {face.shape}"
            )
        self.faces[i] = face
        for name, value in labels.items():
            if value is not None:
                self.labels[name][i] = value
        self.sources.append(source)

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append({"source": source, "reason": reason})

    def close(self, meta: dict | None = None) -> FaceStore:
        n = len(self.sources)
        self.faces.flush()
        del self.faces
        if n < self.capacity:  # shrink: rewrite only the used rows
            full = np.load(self.tmp / "faces.npy", mmap_mode="r")
            np.save(self.tmp / "faces_used.npy", np.asarray(full[:n]))
            del full
            os.replace(self.tmp / "faces_used.npy", self.tmp / "faces.npy")
        for name, values in self.labels.items():
            np.save(self.tmp / f"{name}.npy", values[:n])
        info = {
            "version": STORE_VERSION,
            "count": n,
            "sources": self.sources,
            "skipped": self.skipped,
        }
        info.update(meta or {})
        (self.tmp / "meta.json").write_text(json.dumps(info, indent=1))
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return open_store(self.path)


def open_store(path: str | Path) -> FaceStore:
    """Open a store written by `StoreWriter` (faces memory-mapped)."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise StoreError(
            f"{path}: not a face store (no meta.json); create one with `swinface prepare`"
        )
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("version", 0) > STORE_VERSION:
        raise StoreError(
            f"{path}: store version {meta['version']} is newer than this swinface reads"
        )
    faces = np.load(path / "faces.npy", mmap_mode="r", allow_pickle=False)
    labels = {}
    for name, (dtype, shape, missing) in LABELS.items():
        file = path / f"{name}.npy"
        labels[name] = (
            np.load(file, allow_pickle=False)
            if file.exists()
            else np.full((len(faces), *shape), missing, dtype=dtype)
        )
        if len(labels[name]) != len(faces):
            raise StoreError(f"{file}: {len(labels[name])} labels for {len(faces)} faces")
    return FaceStore(path, faces, labels, meta)
