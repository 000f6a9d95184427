"""5-point face alignment to the ArcFace 112x112 template, framing of tight face crops, and
resizing of pre-aligned crops."""

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


TIGHT_CROP_LANDMARKS = np.array(
    [[0.3235, 0.3869], [0.6852, 0.3865], [0.5025, 0.5954], [0.3610, 0.7595], [0.6521, 0.7619]],
    dtype=np.float32,
)
"""Where the five landmarks sit, as fractions of the side, in a tight face crop such as
FER2013's 48x48 faces: the median of the detector's landmarks on 579 FER2013 training faces."""

# A tight crop is enlarged to this side and padded by a third of it on each side before
# detection: at 48 px a face is below the detector's smallest anchors.
_CROP_DETECT_SIDE = 192
_CROP_MIN_SCORE = 0.8


def frame_crop(image: np.ndarray, detector=None, size: int = 112) -> np.ndarray:
    """A tight face crop (FER2013's 48x48, for example) in the 5-point template's framing.

    Such crops are stretched to the face's outline, while a face found in a photo is
    aligned with room around it: a model trained on resized crops meets differently
    framed faces at inference. With a `detector` the crop is enlarged, padded with its
    own border pixels, and the face found there aligned like any photo's; without one, or
    where none is found, the crop is placed by the median landmarks of tight crops
    (`TIGHT_CROP_LANDMARKS`). Template pixels beyond the crop repeat its border.
    """
    rgb = to_rgb_array(image, name="<face crop>")
    h, w = rgb.shape[:2]
    points = TIGHT_CROP_LANDMARKS * np.array([w, h], dtype=np.float32)
    if detector is not None:
        scale = _CROP_DETECT_SIDE / max(h, w)
        big = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        pad = _CROP_DETECT_SIDE // 3
        padded = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        found = [d for d in detector.detect(padded) if d.score >= _CROP_MIN_SCORE]
        if found:
            best = max(found, key=lambda d: d.score)
            points = (np.asarray(best.landmarks, dtype=np.float32) - pad) / scale
    matrix = estimate_similarity(points, ARCFACE_TEMPLATE * (size / 112.0))
    return cv2.warpAffine(
        rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
