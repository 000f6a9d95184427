"""One answer per tracked person: what every analysed frame of a track says, combined.

Age is the median of the track's frames with its interquartile range and
standard deviation; gender the averaged probability; expression a timeline and
the share of frames per expression; attributes averaged; the identity
embedding the quality-weighted mean of the best frames, normalised. Frames
are weighted by a quality score: detection confidence, face size and how
frontal the face is.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swinface import tasks
from swinface.decode import FaceAttributes, unit_rows

# Faces this size (pixels, shorter box side) or larger count as fully sharp for quality.
_FULL_QUALITY_SIZE = 112.0
# The representative embedding averages this many best frames.
_BEST_FRAMES = 8
# Window (analysed frames) of the running age and expression shown per frame.
_SMOOTH_WINDOW = 15
_EXPRESSION_WINDOW = 5


def face_quality(box, landmarks, score: float) -> float:
    """0..1: detection score x size factor x frontality (nose between the eyes)."""
    x1, y1, x2, y2 = box
    size = min(1.0, max(0.0, min(x2 - x1, y2 - y1)) / _FULL_QUALITY_SIZE)
    frontal = 1.0
    lm = np.asarray(landmarks, np.float64)
    if lm.shape == (5, 2) and np.isfinite(lm).all():
        eyes = abs(lm[1, 0] - lm[0, 0])
        if eyes > 1e-6:
            frontal = float(np.clip(1.0 - abs(lm[2, 0] - (lm[0, 0] + lm[1, 0]) / 2) / eyes, 0, 1))
    return float(score) * size * frontal


def _crop(image: np.ndarray, box, margin: float = 0.25) -> np.ndarray:
    """The face's box grown by `margin` on each side, clipped to the frame; a copy."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = int(max(0, x1 - mx)), int(max(0, y1 - my))
    right, bottom = int(min(w, x2 + mx)), int(min(h, y2 + my))
    return image[top : max(bottom, top + 1), left : max(right, left + 1)].copy()


@dataclass
class Identity:
    """The known person a track matched, and how closely."""

    name: str
    similarity: float


@dataclass
class TrackResult:
    """The answer for one person followed through a video."""

    source: str
    track_id: int
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    frames: int  # analysed frames the face was seen in
    age: float  # median, years
    age_iqr: tuple[float, float]  # 25th and 75th percentiles
    age_std: float
    gender: str
    gender_probability: float  # averaged probability of `gender`
    expression: str  # the most frequent expression
    expression_share: dict[str, float]  # fraction of the frames per expression
    expression_timeline: list[tuple[float, float, str]]  # (start, end, expression) segments
    attributes: dict[str, float]  # averaged probabilities
    embedding: np.ndarray  # (D,) unit, quality-weighted mean of the best frames
    best_frame: int
    best_time: float
    best_box: tuple[float, float, float, float]
    best_crop: np.ndarray | None = field(default=None, repr=False)  # RGB crop of the best frame
    crop_path: str | None = None
    identity: Identity | None = None
    known_checked: bool = False  # True when a gallery of known faces was searched

    def to_dict(self, include_embedding: bool = True) -> dict[str, Any]:
        """A strict-JSON-ready dict (finite numbers only)."""
        d: dict[str, Any] = {
            "type": "track",
            "source": self.source,
            "track_id": self.track_id,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "first_time": round(self.first_time, 3),
            "last_time": round(self.last_time, 3),
            "frames": self.frames,
            "age": round(self.age, 2),
            "age_iqr": [round(v, 2) for v in self.age_iqr],
            "age_std": round(self.age_std, 2),
            "gender": self.gender,
            "gender_probability": round(self.gender_probability, 4),
            "expression": self.expression,
            "expression_share": {k: round(v, 4) for k, v in self.expression_share.items()},
            "expression_timeline": [
                {"start": round(s, 3), "end": round(e, 3), "expression": x}
                for s, e, x in self.expression_timeline
            ],
            "attributes": {k: round(v, 4) for k, v in self.attributes.items()},
            "best_frame": self.best_frame,
            "best_time": round(self.best_time, 3),
            "best_box": [round(float(v), 1) for v in self.best_box],
        }
        if self.crop_path is not None:
            d["crop"] = self.crop_path
        if self.known_checked:
            d["identity"] = (
                None
                if self.identity is None
                else {"name": self.identity.name, "similarity": round(self.identity.similarity, 4)}
            )
        if include_embedding:
            d["embedding"] = [round(float(v), 6) for v in self.embedding]
        return d


class TrackAccumulator:
    """Everything kept of one track while it is open: per-frame values, the best frames."""

    def __init__(self, track_id: int) -> None:
        self.track_id = track_id
        self.frame_indices: list[int] = []
        self.times: list[float] = []
        self.ages: list[float] = []
        self.p_male: list[float] = []
        self.expressions: list[np.ndarray] = []  # per frame, probabilities in label order
        self.attribute_sum: dict[str, float] = {}
        self.best: list[tuple[float, int, np.ndarray]] = []  # min-heap of (quality, n, embedding)
        self.best_quality = -1.0
        self.best_info: tuple[int, float, tuple] = (0, 0.0, (0.0, 0.0, 0.0, 0.0))
        self.best_crop: np.ndarray | None = None
        self._recent_ages: deque[float] = deque(maxlen=_SMOOTH_WINDOW)
        self._recent_expr: deque[np.ndarray] = deque(maxlen=_EXPRESSION_WINDOW)

    def add(
        self,
        frame_index: int,
        t: float,
        analysis: FaceAttributes,
        box,
        quality: float,
        image: np.ndarray | None,
    ) -> None:
        self.frame_indices.append(frame_index)
        self.times.append(t)
        self.ages.append(analysis.age)
        self._recent_ages.append(analysis.age)
        male = analysis.gender == "male"
        p = analysis.gender_probability
        self.p_male.append(p if male else 1.0 - p)
        e = np.array([analysis.expression_probabilities[k] for k in tasks.EXPRESSION_LABELS])
        self.expressions.append(e)
        self._recent_expr.append(e)
        for k, v in analysis.attributes.items():
            self.attribute_sum[k] = self.attribute_sum.get(k, 0.0) + v
        item = (quality, len(self.times), analysis.embedding)
        if len(self.best) < _BEST_FRAMES:
            heapq.heappush(self.best, item)
        elif quality > self.best[0][0]:
            heapq.heapreplace(self.best, item)
        if quality > self.best_quality:
            self.best_quality = quality
            self.best_info = (frame_index, t, tuple(float(v) for v in box))
            if image is not None:
                self.best_crop = _crop(image, box)

    def smoothed(self) -> tuple[float, str]:
        """The track's running age (median of recent frames) and expression (recent mean)."""
        age = float(np.median(self._recent_ages))
        expr = tasks.EXPRESSION_LABELS[int(np.mean(self._recent_expr, axis=0).argmax())]
        return age, expr

    def embedding(self) -> np.ndarray:
        """Quality-weighted mean of the best frames' embeddings, normalised."""
        q = np.array([max(b[0], 1e-6) for b in self.best])
        e = np.stack([b[2] for b in self.best]).astype(np.float64)
        mean = (q[:, None] * e).sum(0)
        return unit_rows(mean).astype(np.float32)

    def timeline(self) -> list[tuple[float, float, str]]:
        """Segments of constant expression, after a centred moving average over a few frames."""
        probs = np.stack(self.expressions)
        k = min(_EXPRESSION_WINDOW, len(probs))
        padded = np.pad(probs, ((k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
        kernel = np.ones(k) / k
        smooth = np.stack(
            [np.convolve(padded[:, j], kernel, mode="valid") for j in range(probs.shape[1])], 1
        )
        labels = [tasks.EXPRESSION_LABELS[i] for i in smooth.argmax(1)]
        segments: list[tuple[float, float, str]] = []
        for t, label in zip(self.times, labels, strict=True):
            if segments and segments[-1][2] == label:
                segments[-1] = (segments[-1][0], t, label)
            else:
                segments.append((t, t, label))
        return segments

    def finish(self, source: str) -> TrackResult:
        ages = np.array(self.ages, np.float64)
        q25, q75 = np.percentile(ages, [25, 75])
        p_male = float(np.mean(self.p_male))
        gender = "male" if p_male >= 0.5 else "female"
        labels = [tasks.EXPRESSION_LABELS[int(e.argmax())] for e in self.expressions]
        share = {k: labels.count(k) / len(labels) for k in tasks.EXPRESSION_LABELS}
        n = len(self.times)
        best_frame, best_time, best_box = self.best_info
        return TrackResult(
            source=source,
            track_id=self.track_id,
            first_frame=self.frame_indices[0],
            last_frame=self.frame_indices[-1],
            first_time=self.times[0],
            last_time=self.times[-1],
            frames=n,
            age=float(np.median(ages)),
            age_iqr=(float(q25), float(q75)),
            age_std=float(ages.std()),
            gender=gender,
            gender_probability=p_male if gender == "male" else 1.0 - p_male,
            expression=max(share, key=share.get),
            expression_share=share,
            expression_timeline=self.timeline(),
            attributes={k: v / n for k, v in self.attribute_sum.items()},
            embedding=self.embedding(),
            best_frame=best_frame,
            best_time=best_time,
            best_box=best_box,
            best_crop=self.best_crop,
        )


def save_crop(result: TrackResult, folder: Path) -> None:
    """Write the track's best crop as `<video>_track<id>.jpg` in `folder` and note its path."""
    import cv2

    from swinface.atomic import atomic_write_bytes

    if result.best_crop is None or result.best_crop.size == 0:
        return
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(result.best_crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
    )
    if not ok:
        return
    stem = Path(result.source).stem if result.source else "stream"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    target = folder / f"{stem}_track{result.track_id}.jpg"
    atomic_write_bytes(target, data.tobytes())
    result.crop_path = str(target)
