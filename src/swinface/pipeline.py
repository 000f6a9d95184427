"""The face pipeline: any photo in; every face detected, aligned, analysed in one batched pass.

`FaceAnalyzer` composes an image decoder, a detector, the 5-point aligner and
a SwinFace runner. Faces from several photos share model batches; a photo that
cannot be read yields a result with its error, and the others go on. Several
photos are decoded, detected and aligned at once on a few threads (`workers`),
each detecting on one CPU thread, while results still come in the photos' order.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
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


def default_workers() -> int:
    """The CPU cores this process may use, at most 8: photos prepared at once by default."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _describe(source: ImageSource, index: int) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<input {index}>"


class FaceAnalyzer:
    """Detect, align and analyse every face in photos.

    `aligned=True` skips detection: each input is taken as one face crop already in
    the 5-point template's framing, resized to 112x112. `crops=True` takes each input
    as one tight face crop (FER2013's 48x48) and frames it as a photo's face would be
    (`swinface.vision.frame_crop`), as `swinface prepare --crops` does for training. `backend` picks how the
    model runs (`swinface.backends`): 'auto' is, on CPU, OpenVINO in bf16 where
    the CPU has native bf16, else ONNX Runtime (either runs the graph exported
    once per set of weights and cached), and PyTorch on GPU.

    `workers`: photos decoded, detected and aligned at once by `analyze_many`
    (default: the CPU cores, at most 8), each detected on a share of the cores;
    1 prepares one photo at a time with every core. The results are the same
    either way. A custom detector is called from several threads only if it
    says it may be (a `thread_safe = True` attribute).
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
        workers: int | None = None,
        crops: bool = False,
        **detector_options,
    ) -> None:
        from swinface.inference import SwinFaceRunner
        from swinface.weights.loading import load_model

        if workers is None:
            workers = default_workers()
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers: a whole number of photos >= 1, not {workers!r}")
        self.workers = workers
        if model is None:
            model = load_model(weights, device=device)
        self.model = model
        self.runner = SwinFaceRunner(
            model, device=device, precision=precision, batch_size=batch_size, backend=backend
        )
        if aligned and crops:
            raise ValueError("aligned and crops: choose one way to read face crops")
        self.aligned, self.crops = aligned, crops
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
        if self.aligned or self.crops:
            return photo.decode()
        min_side = getattr(self.detector, "max_input_size", None)
        return photo.decode_for(min_side)

    def detect(self, decoded: DecodedPhoto, *, threads: int | None = None) -> list:
        """The faces of a decoded photo, in the full photo's pixels. `threads`: the CPU
        threads the detector may use (None: all), for detectors that take the option."""
        options = {}
        if threads is not None and self._detector_takes_threads:
            options["threads"] = threads
        if decoded.reduced:
            options["factor"] = float(decoded.factors[0])
        return self.detector.detect(decoded.pixels, **options)

    @property
    def _detector_takes_threads(self) -> bool:
        from swinface.vision import RetinaFaceDetector

        return isinstance(self.detector, RetinaFaceDetector)

    @property
    def _parallel_prepare(self) -> bool:
        """Whether photos may be prepared on several threads: the detector allows it."""
        return self.workers > 1 and (
            self.detector is None or bool(getattr(self.detector, "thread_safe", False))
        )

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

    def _prepare(
        self, source: ImageSource, index: int, detect_threads: int | None = None
    ) -> _Pending:
        """Decode, detect and align one photo; errors are kept on the result, not raised."""
        from swinface.vision import frame_crop, resize_face

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
        if self.crops:
            return _Pending(result, [None], [frame_crop(decoded.pixels, self.detector)])
        detections = self.detect(decoded, threads=detect_threads)
        try:
            crops = self.align(photo, decoded, detections)
        except (ValueError, OSError) as err:  # a finer decode that fails (a damaged file)
            result.error = str(err)
            return _Pending(result, [], [])
        return _Pending(result, detections, crops)

    def analyze_many(self, sources: Iterable[ImageSource]) -> Iterator[PhotoResult]:
        """Analyse photos in order, sharing model batches across them; yields one result per photo.

        Sources are read as they are needed (a generator is not consumed ahead by more
        than a few photos per worker); a photo alone is prepared with every core."""
        single = isinstance(sources, Sized) and len(sources) <= 1
        prepared = (
            self._prepare_in_parallel(sources)
            if self._parallel_prepare and not single
            else (self._prepare(source, index) for index, source in enumerate(sources))
        )
        pending: list[_Pending] = []
        waiting_faces = 0
        try:
            for item in prepared:
                pending.append(item)
                waiting_faces += len(item.crops)
                if waiting_faces >= self.runner.batch_size:
                    yield from self._finish(pending)
                    pending, waiting_faces = [], 0
            yield from self._finish(pending)
        finally:
            prepared.close()  # stopped early: the workers stop now, not when collected

    def _prepare_in_parallel(self, sources: Iterable[ImageSource]) -> Iterator[_Pending]:
        """`_prepare` on `workers` threads, in the sources' order, a bounded window ahead.

        Each photo detects on its share of the cores: side by side, single-threaded
        detections keep the cores busier than one photo at a time on all of them, and
        JPEG decoding, single-threaded, runs in parallel too."""
        workers = self.workers
        detect_threads = max(1, default_workers() // workers)
        window = 2 * workers  # enough to keep every worker busy while results are taken
        pool = ThreadPoolExecutor(workers, thread_name_prefix="swinface-prepare")
        in_flight: deque[Future] = deque()
        try:
            for index, source in enumerate(sources):
                in_flight.append(pool.submit(self._prepare, source, index, detect_threads))
                if len(in_flight) >= window:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
        finally:
            # Stopped early (the caller broke off, or an error): drop what has not started.
            pool.shutdown(wait=True, cancel_futures=True)

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


__all__ = ["Face", "FaceAnalyzer", "PhotoResult", "cosine_similarity", "default_workers"]
