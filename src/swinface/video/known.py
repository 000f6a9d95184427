"""Known people: a folder with one subfolder of photos per person, matched by embedding."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swinface.decode import unit_rows
from swinface.video.source import VideoError
from swinface.video.summary import Identity

log = logging.getLogger(__name__)


@dataclass
class KnownFaces:
    """One unit embedding per person (the mean of their photos' main faces, normalised)."""

    names: list[str]
    embeddings: np.ndarray  # (P, D)
    threshold: float

    @classmethod
    def from_folder(cls, analyzer, folder: str | Path, threshold: float) -> KnownFaces:
        """Read `folder/<person>/*.jpg|png...`; unreadable photos and photos without a face are skipped with a warning."""
        from swinface.data.formats.base import IMAGE_SUFFIXES

        root = Path(folder)
        if not root.is_dir():
            raise VideoError(f"{root}: the known-faces folder does not exist")
        names, embeddings = [], []
        for person in sorted(p for p in root.iterdir() if p.is_dir()):
            photos = sorted(
                f for f in person.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            found = []
            for result in analyzer.analyze_many(photos):
                face = result.main_face() if result.ok else None
                if face is None:
                    log.warning(
                        "known faces: skipping %s (%s)", result.source, result.error or "no face"
                    )
                    continue
                found.append(face.analysis.embedding)
            if not found:
                log.warning("known faces: no usable photo of %s in %s", person.name, person)
                continue
            mean = np.mean(found, axis=0)
            names.append(person.name)
            embeddings.append(unit_rows(mean))
        if not names:
            raise VideoError(
                f"{root}: no known faces found (expected one subfolder of photos per person)"
            )
        return cls(names, np.stack(embeddings).astype(np.float32), float(threshold))

    def identify(self, embedding: np.ndarray) -> Identity | None:
        """The most similar known person, if at least `threshold` similar."""
        sims = self.embeddings @ np.asarray(embedding, np.float32)
        best = int(sims.argmax())
        if sims[best] < self.threshold:
            return None
        return Identity(self.names[best], float(sims[best]))
