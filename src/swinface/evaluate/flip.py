"""The paper's verification embedding: a face's embedding plus its mirror image's, normalised.

SwinFace (like the InsightFace evaluation it follows) scores LFW, CFP-FP and
AgeDB-30 with `normalize(embedding(face) + embedding(flip(face)))`, the flip
being a horizontal mirror of the aligned 112x112 crop. `with_flip(analyzer)`
gives an analyzer that does exactly that, sharing the original's model,
detector and backend and leaving the original unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np

from swinface.decode import unit_rows
from swinface.tasks import RECOGNITION


class FlipRunner:
    """Wraps a `SwinFaceRunner`: runs each aligned face and its mirror in the same batches.

    Every output but the embedding comes from the face as given; the embedding
    is the sum of both raw embeddings, normalised.
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def __getattr__(self, name: str) -> Any:  # batch_size, device, model, ... of the runner
        if name == "runner":  # not set yet (as during copying): no recursion
            raise AttributeError(name)
        return getattr(self.runner, name)

    def analyze(self, faces: Any) -> Any:
        """The runner's `AlignedAnalysis` of `faces`, with flip-summed embeddings."""
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[None]
        n = len(faces)
        both = self.runner.analyze(np.concatenate([faces, faces[:, :, ::-1]]))
        raw = {name: value[:n] for name, value in both.raw.items()}
        summed = both.raw[RECOGNITION.name][:n] + both.raw[RECOGNITION.name][n:]
        raw[RECOGNITION.name] = summed
        unit = unit_rows(summed)
        decoded = [
            replace(face, embedding=e.astype(np.float32))
            for face, e in zip(both.faces[:n], unit, strict=True)
        ]
        return type(both)(raw=raw, faces=decoded)


def can_flip(analyzer: Any) -> bool:
    """Whether `analyzer` runs aligned crops through a runner `with_flip` can wrap."""
    return callable(getattr(getattr(analyzer, "runner", None), "analyze", None))


def with_flip(analyzer: Any) -> Any:
    """A shallow copy of a `FaceAnalyzer` whose embeddings add the mirrored face's."""
    if not can_flip(analyzer):
        raise TypeError(
            f"{type(analyzer).__name__} has no `runner` with `analyze(faces)`: "
            "flipped embeddings need a swinface FaceAnalyzer"
        )
    flipped = copy.copy(analyzer)
    flipped.runner = FlipRunner(analyzer.runner)
    return flipped


__all__ = ["FlipRunner", "can_flip", "with_flip"]
