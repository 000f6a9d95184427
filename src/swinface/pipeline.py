"""The face pipeline: any photo in; every face detected, aligned, analysed in one batched pass.

`FaceAnalyzer` composes an image decoder, a detector, the 5-point aligner and
a SwinFace runner. Faces from several photos share model batches; a photo that
cannot be read yields a result with its error, and the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from swinface.decode import FaceAttributes, cosine_similarity

if TYPE_CHECKING:
    from swinface.vision.image import DecodedPhoto, Photo

log = logging.getLogger(__name__)

ImageSource = (
    str | Path | bytes | np.ndarray | Any
)  # a path, encoded bytes, an RGB array or a PIL image


@dataclass(frozen=True)
class Face:
    """One face of a photo: where it is, and what SwinFace says of it."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in photo pixels
    landmarks: np.ndarray  # (5, 2): eyes, nose tip, mouth corners, in photo pixels
    detection_score: float
    analysis: FaceAttributes

    def to_dict(self, include_embedding: bool = True) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            # None where there are none (aligned crops): strict JSON has no NaN.
            "landmarks": (
                [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]
                if np.isfinite(self.landmarks).all()
                else None
            ),
            "detection_score": round(self.detection_score, 4),
            **self.analysis.to_dict(include_embedding),
        }


@dataclass
class PhotoResult:
    """Everything found in one photo; `error` says why a photo could not be analysed."""

    source: str
    faces: list[Face] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def main_face(self) -> Face | None:
        """The largest face, the one a portrait is about."""
        if not self.faces:
            return None
        return max(self.faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))

    def to_dict(self, include_embedding: bool = True) -> dict:
        d: dict[str, Any] = {"source": self.source}
        if self.error is not None:
            d["error"] = self.error
        else:
            d.update(
                width=self.width,
                height=self.height,
                faces=[f.to_dict(include_embedding) for f in self.faces],
            )
        return d


@dataclass
class _Pending:
    result: PhotoResult
    detections: list
    crops: list[np.ndarray]


def _finest_reduction(landmarks: np.ndarray) -> int:
    """The largest JPEG reduction (1, 2, 4, 8) from which the 112x112 crop of the face with
    these landmarks (full-size pixels) would not enlarge it."""
    from swinface.vision import ARCFACE_TEMPLATE, estimate_similarity
    from swinface.vision.image import REDUCTIONS

    matrix = estimate_similarity(landmarks, ARCFACE_TEMPLATE)
    crop_per_photo_pixel = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    for k in REDUCTIONS:
        if k * crop_per_photo_pixel <= 1.0:
            return k
    return 1


def _describe(source: ImageSource, index: int) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<input {index}>"


class FaceAnalyzer:
    """Detect, align and analyse every face in photos.

    `aligned=True` skips detection: each input is taken as one face crop
    (FER2013 or RAF-DB style) and resized to 112x112. `backend` picks how the
    model runs (`swinface.backends`): 'auto' is, on CPU, OpenVINO in bf16 where
    the CPU has native bf16, else ONNX Runtime (either runs the graph exported
    once per set of weights and cached), and PyTorch on GPU.
    """

    def __init__(
        self,
        model=None,
        *,
        weights: str | Path | None = None,
        detector=None,
        device: str | None = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        backend: str = "auto",
        aligned: bool = False,
        max_pixels: int | None = None,
        **detector_options,
    ) -> None:
        from swinface.inference import SwinFaceRunner
        from swinface.weights.loading import load_model

        if model is None:
            model = load_model(weights, device=device)
        self.model = model
        self.runner = SwinFaceRunner(
            model, device=device, precision=precision, batch_size=batch_size, backend=backend
        )
        self.aligned = aligned
        self.max_pixels = max_pixels
        if detector is None and not aligned:
            from swinface.vision import RetinaFaceDetector

            detector = RetinaFaceDetector(**detector_options)
        self.detector = detector

    @property
    def verify_threshold(self) -> float | None:
        info = getattr(self.model, "weights_info", None)
        return info.verify_threshold if info else None

    def open(self, source: ImageSource) -> Photo:
        """The photo, not yet decoded (`swinface.vision.Photo`)."""
        from swinface.vision.image import Photo

        if self.max_pixels is None:
            return Photo(source)
        return Photo(source, max_pixels=self.max_pixels)

    def decode(self, photo: Photo) -> DecodedPhoto:
        """The photo's pixels at the size detection needs: a big JPEG decodes at 1/2, 1/4
        or 1/8 of its size, as long as its longer side stays above the detector's
        `max_input_size` (which it would be shrunk to anyway)."""
        if self.aligned:
            return photo.decode()
        min_side = getattr(self.detector, "max_input_size", None)
        return photo.decode_for(min_side)

    def detect(self, decoded: DecodedPhoto) -> list:
        """The faces of a decoded photo, in the full photo's pixels."""
        if decoded.reduced:
            return self.detector.detect(decoded.pixels, factor=float(decoded.factors[0]))
        return self.detector.detect(decoded.pixels)

    def align(self, photo: Photo, decoded: DecodedPhoto, detections: list) -> list[np.ndarray]:
        """The 112x112 crop of each face, from pixels at least as fine as the crop's.

        A face aligned from a reduced decode loses nothing while the crop does not
        enlarge it; a face too small for that (a distant face in a big photo) is
        aligned from a finer decode of the photo, made once for all such faces."""
        from swinface.vision import align_face

        crops = []
        for det in detections:
            source = decoded
            if decoded.reduced:
                finest = _finest_reduction(det.landmarks)
                if decoded.factors[0] > finest:
                    source = photo.decode(finest)
            points = source.from_full(det.landmarks) if source.reduced else det.landmarks
            crops.append(align_face(source.pixels, points))
        return crops

    def _prepare(self, source: ImageSource, index: int) -> _Pending:
        """Decode, detect and align one photo; errors are kept on the result, not raised."""
        from swinface.vision import resize_face

        result = PhotoResult(_describe(source, index))
        try:
            photo = self.open(source)
            decoded = self.decode(photo)
        except (ValueError, OSError) as err:  # ImageError is a ValueError
            result.error = str(err)
            return _Pending(result, [], [])
        result.height, result.width = decoded.height, decoded.width
        if self.aligned:
            return _Pending(result, [None], [resize_face(decoded.pixels)])
        detections = self.detect(decoded)
        try:
            crops = self.align(photo, decoded, detections)
        except (ValueError, OSError) as err:  # a finer decode that fails (a damaged file)
            result.error = str(err)
            return _Pending(result, [], [])
        return _Pending(result, detections, crops)

    def analyze_many(self, sources: Iterable[ImageSource]) -> Iterator[PhotoResult]:
        """Analyse photos in order, sharing model batches across them; yields one result per photo."""
        pending: list[_Pending] = []
        waiting_faces = 0
        for index, source in enumerate(sources):
            item = self._prepare(source, index)
            pending.append(item)
            waiting_faces += len(item.crops)
            if waiting_faces >= self.runner.batch_size:
                yield from self._finish(pending)
                pending, waiting_faces = [], 0
        yield from self._finish(pending)

    def analyze(self, source: ImageSource) -> PhotoResult:
        """Analyse one photo. A photo that cannot be read raises its error."""
        result = next(self.analyze_many([source]))
        if result.error is not None:
            from swinface.vision import ImageError

            raise ImageError(result.error)
        return result

    def analyze_video(self, source: str | Path, **options) -> Iterator[Any]:
        """Track and analyse the faces of a video file (`swinface.video.analyze_video`):
        yields per-frame results, a `TrackResult` per person as their track closes,
        then a `VideoSummary`. Options: every, fps, tracker, known, crops, annotate."""
        from swinface.video.analyze import analyze_video

        return analyze_video(self, source, **options)

    def _finish(self, pending: list[_Pending]) -> Iterator[PhotoResult]:
        crops = [c for p in pending for c in p.crops]
        analyses = self.runner.analyze(np.stack(crops)).faces if crops else []
        k = 0
        for p in pending:
            for det in p.detections:
                if det is None:  # aligned mode: the whole crop is the face
                    h, w = p.result.height, p.result.width
                    face = Face(
                        (0.0, 0.0, float(w), float(h)), np.full((5, 2), np.nan), 1.0, analyses[k]
                    )
                else:
                    face = Face(
                        tuple(float(v) for v in det.box),
                        det.landmarks,
                        float(det.score),
                        analyses[k],
                    )
                p.result.faces.append(face)
                k += 1
            yield p.result


__all__ = ["Face", "FaceAnalyzer", "PhotoResult", "cosine_similarity"]
