"""`swinface prepare`: detect and align a raw dataset once, into a compact 112x112 face store.

Training then reads aligned faces straight from a memory map and never
decodes or aligns on the fly. Images where no face is found are listed in the
store's metadata and in the returned report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swinface.data.samples import LabelError
from swinface.data.store import FaceStore, StoreWriter

log = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    """What `prepare` did: faces written, images without a face, unreadable images."""

    store: Path
    aligned: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    label_errors: list[LabelError] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.aligned + len(self.no_face) + len(self.unreadable)

    def summary(self) -> str:
        lines = [f"{self.store}: aligned {self.aligned} of {self.total} image(s)"]
        if self.no_face:
            lines.append(
                f"no face found in {len(self.no_face)}: "
                + ", ".join(self.no_face[:20])
                + (" ..." if len(self.no_face) > 20 else "")
            )
        if self.unreadable:
            lines.append(
                f"unreadable: {len(self.unreadable)}: "
                + "; ".join(f"{s} ({r})" for s, r in self.unreadable[:10])
            )
        if self.label_errors:
            lines.append(
                f"skipped for bad labels: {len(self.label_errors)}: "
                + "; ".join(str(e) for e in self.label_errors[:10])
            )
        return "\n".join(lines)


def _main_detection(detections: Sequence, shape: tuple[int, int]):
    """The face a dataset image is about: the most confident, favouring large central faces."""
    h, w = shape
    centre = np.array([w / 2, h / 2])

    def score(d) -> float:
        x1, y1, x2, y2 = d.box
        size = np.sqrt(max(1.0, (x2 - x1) * (y2 - y1)))
        offset = np.linalg.norm(np.array([(x1 + x2) / 2, (y1 + y2) / 2]) - centre) / max(h, w)
        return float(d.score) * size * (1.0 - offset)

    return max(detections, key=score)


def prepare_samples(
    samples: Sequence,
    out: str | Path,
    *,
    aligned: bool = False,
    detector=None,
    limit: int | None = None,
    progress: bool = True,
    meta: dict | None = None,
) -> tuple[FaceStore, PrepareReport]:
    """Align `samples` (dataset records) into a face store at `out`."""
    from tqdm import tqdm

    from swinface.vision import align_face, load_image, resize_face

    samples = list(samples)[:limit] if limit else list(samples)
    if detector is None and not aligned:
        from swinface.vision import RetinaFaceDetector

        detector = RetinaFaceDetector()
    writer = StoreWriter(out, capacity=max(1, len(samples)))
    report = PrepareReport(Path(out))
    identities: dict[int, int] = {}  # dataset identity -> dense index, in order of first appearance
    for sample in tqdm(samples, unit="img", disable=not progress, desc=f"prepare {Path(out).name}"):
        # Name the image itself where there is one: that is what a user looks for.
        image = sample.image
        source = str(image) if isinstance(image, (str, Path)) else sample.source
        try:
            image = load_image(sample.image)
        except (ValueError, OSError) as err:
            report.unreadable.append((source, str(err)))
            writer.skip(source, f"unreadable: {err}")
            continue
        if aligned:
            face = resize_face(image)
        else:
            detections = detector.detect(image)
            if not detections:
                report.no_face.append(source)
                writer.skip(source, "no face found")
                continue
            face = align_face(image, _main_detection(detections, image.shape[:2]).landmarks)
        identity = getattr(sample, "identity", None)
        if identity is not None:
            identity = identities.setdefault(int(identity), len(identities))
        writer.add(
            face,
            source,
            identity=identity,
            age=getattr(sample, "age", None),
            gender=getattr(sample, "gender", None),
            expression=getattr(sample, "expression", None),
            attributes=getattr(sample, "attributes", None),
        )
        report.aligned += 1
    info = {"aligned_mode": aligned, "identity_map": {str(k): v for k, v in identities.items()}}
    info.update(meta or {})
    store = writer.close(info)
    return store, report
