"""Writing the video back with each tracked face's box, track id and label."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import cv2
import numpy as np

from swinface.video.source import VideoError

_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
]


def track_colour(track_id: int) -> tuple[int, int, int]:
    return _PALETTE[track_id % len(_PALETTE)]


def draw_tracks(image: np.ndarray, boxes: list[tuple[int, tuple, str]]) -> np.ndarray:
    """A copy of the RGB `image` with (track id, box, label) drawn for each face."""
    canvas = np.ascontiguousarray(image.copy())
    scale = max(canvas.shape[:2]) / 800
    thickness = max(1, round(2 * scale))
    font = 0.5 * max(scale, 0.6)
    for track_id, box, label in boxes:
        colour = track_colour(track_id)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"#{track_id} {label}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thickness)
        top = max(0, y1 - th - base - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 4, top + th + base + 4), colour, -1)
        cv2.putText(
            canvas,
            text,
            (x1 + 2, top + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            font,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return canvas


class AnnotatedWriter:
    """An MP4 (or AVI, by the target's suffix) written beside its target and moved in place on close.

    The temporary file keeps the target's suffix because OpenCV picks the
    container from it; a writer closed after a failure removes its temporary file.
    """

    def __init__(self, target: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        suffix = self.target.suffix.lower() or ".mp4"
        self.tmp = self.target.with_name(
            f".{self.target.stem}.{uuid.uuid4().hex[:8]}.partial{suffix}"
        )
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if suffix == ".avi" else "mp4v"))
        self._writer = cv2.VideoWriter(str(self.tmp), fourcc, fps if fps > 0 else 25.0, size)
        if not self._writer.isOpened():
            raise VideoError(f"{self.target}: cannot write a video here (suffix {suffix!r})")
        self.size = size

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, ok: bool = True) -> None:
        self._writer.release()
        if ok and self.tmp.exists():
            os.replace(self.tmp, self.target)
        else:
            self.tmp.unlink(missing_ok=True)
