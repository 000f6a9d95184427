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
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swinface import tasks
from swinface.atomic import atomic_dir
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


def _fingerprint(path: Path) -> tuple[int, int, int]:
    """Identifies one written version of a store: a rewrite gives a new `meta.json`."""
    info = (path / "meta.json").stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


@dataclass
class FaceStore:
    """An opened store: faces memory-mapped, labels in memory.

    A store opened from disk pickles as its path (DataLoader workers started
    with spawn or forkserver reopen it instead of receiving a copy of every
    face); one built in memory pickles whole.
    """

    path: Path
    faces: np.ndarray
    labels: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)
    fingerprint: tuple[int, int, int] | None = field(default=None, repr=False, compare=False)

    def _mapped_from_disk(self) -> bool:
        filename = getattr(self.faces, "filename", None)
        return (
            self.fingerprint is not None
            and filename is not None
            and Path(filename).resolve() == (Path(self.path) / "faces.npy").resolve()
        )

    def __getstate__(self) -> dict:
        if self._mapped_from_disk():
            return {"path": str(self.path), "fingerprint": self.fingerprint}
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        if "faces" in state:
            self.__dict__.update(state)
            return
        path = Path(state["path"])
        try:
            fingerprint = _fingerprint(path)
        except OSError:
            fingerprint = None
        if fingerprint != tuple(state["fingerprint"]):
            raise StoreError(f"{path}: the face store changed or vanished since it was opened")
        self.__dict__.update(open_store(path).__dict__)

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


def is_store(path: str | Path) -> bool:
    """Whether `path` is a face store folder (it has a `meta.json`)."""
    path = Path(path)
    return path.is_dir() and (path / "meta.json").is_file()


def _check_replaceable(path: Path, overwrite: bool) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return  # an empty folder holds nothing to lose
    if not is_store(path):
        raise StoreError(
            f"{path}: exists and is not a face store (no meta.json); refusing to replace it"
        )
    if not overwrite:
        raise StoreError(
            f"{path}: a face store already exists; pass overwrite=True "
            "(`swinface prepare --overwrite`) to replace it"
        )


class StoreWriter:
    """Writes a store incrementally into a fresh temporary folder, moved into place on `close`.

    An existing folder at `path` is replaced only when it is a store and
    `overwrite` is true, and only once the new store is complete. `abort()`
    (or leaving a `with` block without `close()`) removes the temporary folder
    and leaves `path` as it was.
    """

    def __init__(self, path: str | Path, capacity: int, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        _check_replaceable(self.path, overwrite)
        self._target = atomic_dir(self.path)
        self.tmp = self._target.__enter__()
        # Removes the temporary folder if the writer is dropped without close or abort.
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.tmp), ignore_errors=True)
        self.capacity = capacity
        try:
            self.faces = np.lib.format.open_memmap(
                self.tmp / "faces.npy", mode="w+", dtype=np.uint8, shape=(capacity, *FACE_SHAPE)
            )
        except BaseException:
            self.abort()
            raise
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

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self._cleanup.alive:
            self.abort()

    def abort(self) -> None:
        """Drop everything written so far; the folder at `path` is left as it was."""
        if not self._cleanup.alive:
            return
        self.__dict__.pop("faces", None)
        error = StoreError(f"{self.path}: store not written (aborted)")
        self._target.__exit__(type(error), error, None)
        self._cleanup()

    def close(self, meta: dict | None = None) -> FaceStore:
        """Finish the store, move it into place and open it."""
        if not self._cleanup.alive:
            raise StoreError(f"{self.path}: this writer was already closed or aborted")
        try:
            self._finish(meta)
            _check_replaceable(self.path, self.overwrite)  # it may have appeared meanwhile
        except BaseException:
            self.abort()
            raise
        self._target.__exit__(None, None, None)
        self._cleanup.detach()
        return open_store(self.path)

    def _finish(self, meta: dict | None) -> None:
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


def open_store(path: str | Path) -> FaceStore:
    """Open a store written by `StoreWriter` (faces memory-mapped)."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise StoreError(
            f"{path}: not a face store (no meta.json); create one with `swinface prepare`"
        )
    fingerprint = _fingerprint(path)  # before reading, so that a rewrite meanwhile shows
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
    return FaceStore(path, faces, labels, meta, fingerprint=fingerprint)
