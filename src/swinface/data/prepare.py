"""`swinface prepare`: detect and align a raw dataset once, into a compact 112x112 face store.

Training then reads aligned faces straight from a memory map and never
decodes or aligns on the fly. Images where no face is found are listed in the
store's metadata and in the returned report.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swinface.data.samples import LabelError
from swinface.data.store import FaceStore, StoreError, StoreWriter

log = logging.getLogger(__name__)


def is_store(path: str | Path) -> bool:
    """Whether `path` is a face store folder (what `prepare` writes)."""
    path = Path(path)
    return (path / "meta.json").is_file() and (path / "faces.npy").is_file()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def check_store_target(
    out: str | Path,
    inputs: Iterable[str | Path] = (),
    *,
    overwrite: bool = False,
    images: Iterable[str | Path] = (),
) -> None:
    """Refuse, before any work, an output that would destroy data; StoreError says why.

    `out` may be a new path, an empty folder, or (with `overwrite`) an existing
    face store. Anything else is refused: a file, a folder that is not a store
    (even with `overwrite`: nothing deletes what it did not create), or a folder
    that is or contains one of `inputs` (a dataset folder or label file:
    replacing the store would delete it), lies inside an input folder (the
    next run would read the store as part of the dataset), or holds one of
    `images`.
    """
    target = _real(out)
    plain = os.path.abspath(target)
    for image in images:  # many: a string prefix test, no file system calls
        path = os.path.abspath(image)
        if path == plain or path.startswith(plain + os.sep):
            raise StoreError(
                f"output {out} holds the image {image}: writing the store there would delete "
                "it. Choose an output folder outside the dataset"
            )
    for item in inputs:
        source = _real(item)
        if _inside(source, target):
            raise StoreError(
                f"output {out} holds the input {item}: writing the store there would delete "
                "it. Choose an output folder outside the dataset"
            )
        # A store inside a dataset folder would be read as part of it next time (a folder
        # per class or person); beside a label file it is harmless.
        if source.is_dir() and _inside(target, source):
            raise StoreError(
                f"output {out} is inside the dataset folder {item}: choose an output "
                "folder outside the dataset"
            )
    if not os.path.lexists(out):
        return
    if not target.is_dir():
        raise StoreError(f"output {out} exists and is not a folder; choose a new folder")
    if is_store(target):
        if not overwrite:
            raise StoreError(
                f"output {out} is an existing face store; pass --overwrite "
                "(overwrite=True) to replace it, or choose a new folder"
            )
        return
    if any(target.iterdir()):
        raise StoreError(
            f"output {out} is a folder that holds other files, not a face store; "
            "refusing to replace it. Choose a new or empty folder"
        )


def sample_slice(samples: Sequence, limit: int | None, seed: int = 0) -> list:
    """`limit` samples drawn at random with `seed`, kept in dataset order (all when None).

    Datasets list their files by class or by name, so the first N would be one
    expression or a narrow band of ages; a random draw spreads over all of them.
    """
    samples = list(samples)
    if not limit or limit >= len(samples):
        return samples
    import random

    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]


def _image_paths(samples: Sequence) -> Iterable[str | Path]:
    for sample in samples:
        if isinstance(sample.image, (str, Path)):
            yield sample.image


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
    crops: bool = False,
    detector=None,
    limit: int | None = None,
    progress: bool = True,
    meta: dict | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    seed: int = 0,
) -> tuple[FaceStore, PrepareReport]:
    """Align `samples` (dataset records) into a face store at `out`.

    An existing store at `out` is replaced only with `overwrite`; an output
    that is not a store, or that holds or lies among the inputs (`inputs`, the
    dataset's folder or label file) or holds a sample's image, is refused
    before any image is read (see `check_store_target`). `aligned`: the images are
    already aligned crops, resized; `crops`: they are tight face crops (FER2013), put in
    the template's framing (`frame_crop`); otherwise each face is detected and aligned. `limit` keeps a
    random sample of that many (`sample_slice`, drawn with `seed`).
    """
    from swinface.progress import progress as report_progress
    from swinface.vision import align_face, frame_crop, load_image, resize_face

    if aligned and crops:
        raise ValueError("aligned and crops: choose one way to read face crops")
    samples = sample_slice(samples, limit, seed)
    check_store_target(out, inputs, overwrite=overwrite, images=_image_paths(samples))
    if detector is None and not aligned:
        from swinface.vision import RetinaFaceDetector

        detector = RetinaFaceDetector()
    writer = _writer(out, max(1, len(samples)), overwrite)
    report = PrepareReport(Path(out))
    identities: dict[int, int] = {}  # dataset identity -> dense index, in order of first appearance
    steps = report_progress(samples, f"prepare {Path(out).name}", "image", enabled=progress)
    for sample in steps:
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
        elif crops:
            face = frame_crop(image, detector)
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
    info = {
        "aligned_mode": aligned,
        "crop_mode": crops,
        "identity_map": {str(k): v for k, v in identities.items()},
    }
    info.update(meta or {})
    store = writer.close(info)
    return store, report


def _writer(out: str | Path, capacity: int, overwrite: bool) -> StoreWriter:
    # The checks above ran first; StoreWriter refuses again at the last moment, so a
    # folder that became something else in between is never replaced.
    return StoreWriter(out, capacity=capacity, overwrite=overwrite)
