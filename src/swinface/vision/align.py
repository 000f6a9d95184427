"""5-point face alignment to the ArcFace 112x112 template, and resizing of pre-aligned crops."""

from __future__ import annotations

import cv2
import numpy as np

from swinface.vision.image import to_rgb_array

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # left eye (image-left)
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ],
    dtype=np.float32,
)
"""Where ArcFace-style models expect the five landmarks in a 112x112 crop."""


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` similarity (rotation, uniform scale, translation; no reflection)
    mapping points `src` onto `dst` with the least squared error (Umeyama, 1991)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two or more matching 2-D points, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points must be finite")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError("the source points all coincide; no transform maps them")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    # Flip the weakest axis if the best orthogonal map would be a reflection.
    d = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) >= 0 else -1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 crop with the 5 `landmarks` moved onto the ArcFace template.

    The template is scaled by ``size / 112``. Pixels from outside the photo are
    black (constant 0), as in ArcFace's own alignment, so a face at the edge
    does not smear its border pixels into the crop.
    """
    rgb = to_rgb_array(image, name="<image to align>")
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), not {points.shape}")
    matrix = estimate_similarity(points, ARCFACE_TEMPLATE * (size / 112.0))
    return cv2.warpAffine(
        rgb,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def resize_face(image: np.ndarray, size: int = 112) -> np.ndarray:
    """An already aligned face crop (e.g. FER2013 48x48 grey, RAF-DB 100x100) as
    ``(size, size, 3)`` uint8 RGB; non-square crops are stretched to the square."""
    rgb = to_rgb_array(image, name="<face crop>")
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    # INTER_AREA averages when shrinking (no aliasing); it blurs blockily when enlarging.
    interpolation = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=interpolation))
