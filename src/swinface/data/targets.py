"""Teacher targets stored beside a face store's labels, for distillation.

Layout, inside the store folder::

    targets/
      meta.json                      teachers (package, version, graph hash, licence),
                                     face count, a hash of the store's sources, arrays
      <teacher>/embedding.npy        (N, D) float16, L2-normalised
      <teacher>/<task>.npy           gender / expression: (N, C) float16 probabilities
                                     in swinface's label order; age: (N,) float32 years
      ensemble/<task>.npy            per task taught by one teacher or more: the mean of
                                     their probabilities or ages (embeddings live in each
                                     teacher's own space and are not averaged)

Rows follow the store's faces. Plain `.npy` files, read with
``allow_pickle=False``. While `distill-targets` runs, finished chunks collect in
``targets.partial/`` (each written atomically), so an interrupted run resumes
where it stopped; the `targets/` folder appears whole at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swinface.atomic import atomic_dir, atomic_write_bytes, atomic_write_text, file_lock
from swinface.data.store import FaceStore, StoreError, open_store

log = logging.getLogger(__name__)

TARGETS = "targets"
PARTIAL = "targets.partial"
TARGETS_VERSION = 1
ENSEMBLE = "ensemble"
CHUNK = 1024


class TargetsError(StoreError):
    """Targets that are missing, stale or inconsistent with their store."""


def _dtype(task: str) -> np.dtype:
    return np.dtype(np.float32) if task == "age" else np.dtype(np.float16)


def sources_digest(store: FaceStore) -> str:
    """A hash of the store's face sources, so targets of another store are never trusted."""
    return hashlib.sha256("\n".join(store.sources).encode()).hexdigest()


@dataclass
class Targets:
    """Opened targets: per teacher and task, and the per-task ensembles."""

    path: Path
    meta: dict
    teachers: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    ensemble: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.meta["count"])

    def embedding(self, teacher: str) -> np.ndarray:
        return self.teachers[teacher]["embedding"]


def targets_path(store: str | Path) -> Path:
    return Path(store) / TARGETS


def open_targets(store: str | Path | FaceStore) -> Targets:
    """The targets beside `store`; a clear error says what to run when they are absent or stale."""
    face_store = store if isinstance(store, FaceStore) else open_store(store)
    folder = targets_path(face_store.path)
    meta_file = folder / "meta.json"
    run = f"run `swinface distill-targets {face_store.path} --teachers NAMES` (see `swinface teachers`)"
    if not meta_file.is_file():
        partial = " (an unfinished run is in targets.partial: the same command resumes it)"
        raise TargetsError(
            f"{meta_file}: the store has no teacher targets; {run}"
            + (partial if (face_store.path / PARTIAL).exists() else "")
        )
    meta = json.loads(meta_file.read_text())
    if meta.get("version", 0) > TARGETS_VERSION:
        raise TargetsError(
            f"{meta_file}: targets version {meta['version']} is newer than this swinface reads"
        )
    if meta.get("count") != len(face_store) or meta.get("sources_sha256") != sources_digest(
        face_store
    ):
        raise TargetsError(
            f"{meta_file}: the targets were made for another version of the store; {run}"
        )
    targets = Targets(folder, meta)
    for name, info in meta["arrays"].items():
        file = folder / info["file"]
        if not file.is_file():
            raise TargetsError(f"{file}: listed in {meta_file} but missing; {run}")
        values = np.load(file, allow_pickle=False)
        if len(values) != len(face_store):
            raise TargetsError(f"{file}: {len(values)} rows for {len(face_store)} faces; {run}")
        teacher, task = name.split("/")
        bucket = (
            targets.ensemble if teacher == ENSEMBLE else targets.teachers.setdefault(teacher, {})
        )
        bucket[task] = values
    return targets


# ---------------------------------------------------------------- writing


def _plan(store: FaceStore, models: Sequence, chunk: int) -> dict:
    return {
        "version": TARGETS_VERSION,
        "count": len(store),
        "chunk": chunk,
        "sources_sha256": sources_digest(store),
        "teachers": {m.teacher.name: _sha256(m.path) for m in models},
    }


def _sha256(path: Path) -> str:
    from swinface.teachers.registry import sha256_of

    return sha256_of(path)


def _save_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _chunk_file(partial: Path, start: int) -> Path:
    return partial / f"rows_{start:09d}.npz"


def _run_chunk(models: Sequence, faces: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for model in models:
        for task, values in model.predict(faces).items():
            out[f"{model.teacher.name}/{task}"] = values.astype(_dtype(task))
    return out


def write_targets(
    store: str | Path | FaceStore,
    models: Sequence,
    *,
    chunk: int = CHUNK,
    progress: bool = True,
    force: bool = False,
) -> Targets:
    """Run teacher `models` (`swinface.teachers.runner.TeacherModel`) over every face of `store`.

    Resumable: chunks already in ``targets.partial`` for the same store,
    teachers (by graph hash) and chunk size are kept. Existing complete
    targets of the same teachers are returned as they are unless `force`;
    targets of other teachers are replaced (the folder holds one run's teachers).
    """
    from swinface.progress import Progress

    face_store = store if isinstance(store, FaceStore) else open_store(store)
    if not models:
        raise ValueError("no teachers to run")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    plan = _plan(face_store, models, chunk)
    folder = targets_path(face_store.path)
    partial = face_store.path / PARTIAL
    with file_lock(partial):
        if not force:
            try:
                current = open_targets(face_store)
                if current.meta.get("teachers_sha256") == plan["teachers"]:
                    log.info("%s: targets are up to date", folder)
                    return current
            except TargetsError:
                pass
        plan_file = partial / "plan.json"
        if partial.exists():
            old = json.loads(plan_file.read_text()) if plan_file.is_file() else None
            if old != plan or force:
                log.info("%s: a different earlier run; starting afresh", partial)
                shutil.rmtree(partial)
        partial.mkdir(exist_ok=True)
        atomic_write_text(plan_file, json.dumps(plan, indent=1))
        starts = range(0, len(face_store), chunk)
        todo = [s for s in starts if not _chunk_file(partial, s).is_file()]
        done = len(face_store) - sum(min(chunk, len(face_store) - s) for s in todo)
        with Progress(len(face_store), "targets", "face", initial=done, enabled=progress) as bar:
            for start in todo:
                faces = np.asarray(face_store.faces[start : start + chunk])
                atomic_write_bytes(
                    _chunk_file(partial, start), _save_npz(_run_chunk(models, faces))
                )
                bar.update(len(faces))
        _assemble(face_store, models, plan, partial, folder, list(starts))
        shutil.rmtree(partial)
    return open_targets(face_store)


def _assemble(
    store: FaceStore, models: Sequence, plan: dict, partial: Path, folder: Path, starts: list[int]
) -> None:
    columns: dict[str, list[np.ndarray]] = {}
    for start in starts:
        with np.load(_chunk_file(partial, start), allow_pickle=False) as z:
            for name in z.files:
                columns.setdefault(name, []).append(z[name])
    arrays = {name: np.concatenate(parts) for name, parts in columns.items()}
    by_task: dict[str, list[np.ndarray]] = {}
    for name, values in arrays.items():
        task = name.split("/")[1]
        if task != "embedding":
            by_task.setdefault(task, []).append(values.astype(np.float32))
    for task, values in by_task.items():
        arrays[f"{ENSEMBLE}/{task}"] = np.mean(values, axis=0).astype(_dtype(task))
    teachers = {}
    for model in models:
        t = model.teacher
        teachers[t.name] = {
            "package": t.package,
            "version": t.version,
            "licence": t.licence,
            "onnx_sha256": plan["teachers"][t.name],
            "tasks": list(t.tasks),
        }
    meta = {
        "version": TARGETS_VERSION,
        "count": len(store),
        "sources_sha256": plan["sources_sha256"],
        "teachers": teachers,
        "teachers_sha256": plan["teachers"],
        "ensembles": {task: len(v) for task, v in by_task.items()},
        "arrays": {
            name: {
                "file": f"{name}.npy",
                "dtype": str(values.dtype),
                "shape": list(values.shape),
            }
            for name, values in arrays.items()
        },
    }
    with atomic_dir(folder) as tmp:
        for name, values in arrays.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            np.save(tmp / f"{name}.npy", values)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
