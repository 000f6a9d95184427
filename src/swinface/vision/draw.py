"""Drawing analysis results on photos, for `swinface analyze --annotate`."""

from __future__ import annotations

import cv2
import numpy as np

_LANDMARK_COLOURS = ((255, 64, 64), (64, 64, 255), (64, 220, 64), (255, 160, 0), (220, 0, 220))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_label(face) -> str:
    """A short label: gender, age in whole years (never below 0), expression ('F 34 happiness')."""
    a = face.analysis
    age = max(0, round(a.age))
    return f"{a.gender[0].upper()} {age} {a.expression}"


def _text_height(scale: float, thickness: int) -> int:
    (_, h), base = cv2.getTextSize("Ag", _FONT, scale, thickness)
    return h + base


def draw_faces(image: np.ndarray, faces) -> np.ndarray:
    """A copy of the RGB `image` with each face's box, landmarks and label drawn on it.

    Lines and text scale with the photo: labels are about 2.5% of its larger
    side tall (at least 10 pixels), so they read the same on a thumbnail and
    on a 24-megapixel photo.
    """
    canvas = np.ascontiguousarray(image.copy())
    side = max(canvas.shape[:2])
    thickness = max(1, round(side / 400))
    target = max(10.0, 0.025 * side)  # label height in pixels
    font_scale = target / _text_height(1.0, thickness)
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        landmarks = np.asarray(face.landmarks, dtype=float)
        for (x, y), colour in zip(landmarks, _LANDMARK_COLOURS, strict=False):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
        text = face_label(face)
        (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, thickness)
        pad = max(2, thickness)
        top = max(0, y1 - th - base - 2 * pad)
        cv2.rectangle(
            canvas, (x1, top), (x1 + tw + 2 * pad, top + th + base + 2 * pad), (0, 255, 0), -1
        )
        cv2.putText(
            canvas,
            text,
            (x1 + pad, top + th + pad),
            _FONT,
            font_scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return canvas
