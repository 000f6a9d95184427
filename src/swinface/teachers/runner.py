"""Run a converted teacher over aligned faces; outputs come back in swinface's conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from swinface.decode import unit_rows
from swinface.teachers.base import Reading, Teacher, TeacherError
from swinface.teachers.crops import crops_from_aligned

BATCH = 32  # faces per ONNX Runtime call


class TeacherModel:
    """One teacher's graph in ONNX Runtime.

    `predict` takes ArcFace-aligned 112x112 uint8 RGB faces (what a face store
    holds) and returns, per task key of `swinface.tasks`:

    - ``embedding``: (N, D) float32, L2-normalised (cosine similarity is a dot product);
    - ``gender``, ``expression``: (N, C) float32 probabilities in swinface's label order;
    - ``age``: (N,) float32 years (the expectation over the teacher's age classes, or
      the teacher's own estimate).
    """

    def __init__(self, teacher: Teacher, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.teacher = teacher
        self.path = Path(path)
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = False  # batch sizes vary: an arena only grows
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        names = {i.name for i in self.session.get_inputs()}
        wanted = {i.name for i in teacher.inputs}
        if names != wanted:
            raise TeacherError(
                f"{self.path}: graph inputs {sorted(names)} are not the declared {sorted(wanted)}; "
                f"convert it again with `swinface teachers convert {teacher.name} --force`"
            )

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.teacher.tasks

    def predict(self, faces: np.ndarray, batch_size: int = BATCH) -> dict[str, np.ndarray]:
        """Outputs for `faces`, run `batch_size` at a time: ONNX Runtime keeps an arena
        sized for the largest batch it has seen, so one call on a store's whole chunk
        would hold gigabytes of activations."""
        parts = [
            self._predict(faces[start : start + batch_size])
            for start in range(0, len(faces), batch_size)
        ]
        return {task: np.concatenate([p[task] for p in parts]) for task in parts[0]}

    def _predict(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {
            i.name: i.preprocess(crops_from_aligned(faces, i.crop)) for i in self.teacher.inputs
        }
        names = [o.name for o in self.teacher.outputs]
        raw = self.session.run(names, feeds)
        return {
            o.task: _read(o, np.asarray(r, np.float32))
            for o, r in zip(self.teacher.outputs, raw, strict=True)
        }


def _read(output, values: np.ndarray) -> np.ndarray:
    if output.reading is Reading.EMBEDDING:
        return unit_rows(values)
    if output.reading is Reading.LOGITS:
        values = np.exp(values - values.max(axis=1, keepdims=True))
        values /= values.sum(axis=1, keepdims=True)
    if output.reading is Reading.DISTRIBUTION:
        return (values @ np.asarray(output.values, np.float32)).astype(np.float32)
    if output.reading is Reading.VALUE:
        return values.reshape(len(values))
    return values[:, output.label_order()]


def load(teacher: Teacher, *, threads: int | None = None) -> TeacherModel:
    """The teacher's cached graph, converted first from its installed package if needed."""
    from swinface.teachers.registry import require

    return TeacherModel(teacher, require(teacher), threads=threads)
