"""Drawing analysis results on photos, for `swinface analyze --annotate`."""

from __future__ import annotations

import cv2
import numpy as np

_LANDMARK_COLOURS = ((255, 64, 64), (64, 64, 255), (64, 220, 64), (255, 160, 0), (220, 0, 220))


def face_label(face) -> str:
    """A short label: gender, age, expression (e.g. 'F 34 happiness')."""
    a = face.analysis
    return f"{a.gender[0].upper()} {a.age:.0f} {a.expression}"


def draw_faces(image: np.ndarray, faces) -> np.ndarray:
    """A copy of the RGB `image` with each face's box, landmarks and label drawn on it."""
    canvas = np.ascontiguousarray(image.copy())
    scale = max(canvas.shape[:2]) / 800
    thickness = max(1, round(2 * scale))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        for (x, y), colour in zip(face.landmarks, _LANDMARK_COLOURS, strict=False):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
        text = face_label(face)
        font_scale = 0.5 * max(scale, 0.6)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(0, y1 - th - base - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 4, top + th + base + 4), (0, 255, 0), -1)
        cv2.putText(
            canvas,
            text,
            (x1 + 2, top + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return canvas
