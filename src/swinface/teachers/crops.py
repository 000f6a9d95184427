"""The crops teachers want, cut from five landmarks (the points swinface's detector gives).

Every teacher crop is a similarity transform of the photo, fixed by where the
five points (eye centres, nose tip, mouth corners; image-left first) should
land in the crop:

- ArcFace crops: the ArcFace 112x112 template, scaled to the crop size.
- dlib chips: dlib's ``get_face_chip_details(shape, size, padding)`` places its
  mean face (the 68-point mean shape in `DLIB_MEAN_FACE_68`, normalised to
  [0, 1]) at ``(padding + p) / (1 + 2 padding) * size``. Our five points are
  read off that mean face: each eye centre is the mean of its six eye points
  (36-41, 42-47), the nose tip is point 30, the mouth corners 48 and 54. The
  least-squares similarity from our five points onto those places is the chip.
  (dlib fits its own landmarks instead; after the fit, the ArcFace template
  and dlib's mean face differ by at most 1.7% of the chip size at any of the
  five points.)
- grey crops: the framing of a tight face crop (FER2013's: the face's outline fills
  the square, `TIGHT_CROP_LANDMARKS`), turned grey, as the expression teachers trained
  on FER2013 read faces.

A face store holds ArcFace-aligned 112x112 faces, so there the landmarks are
the template itself (`ALIGNED_LANDMARKS`) and every other crop is a fixed
warp of the stored face. A dlib chip with padding 0.2 reaches about 8 pixels
below the aligned face's bottom edge (the chin); that strip repeats the last
rows (`border="replicate"`) rather than being black.
"""

from __future__ import annotations

import cv2
import numpy as np

from swinface.teachers.base import Crop, CropKind
from swinface.vision.align import ARCFACE_TEMPLATE, TIGHT_CROP_LANDMARKS, estimate_similarity

# dlib's mean face (get_face_chip_details, dlib/image_transforms/interpolation.h):
# points 36-41 (image-left eye), 42-47 (image-right eye), 30 (nose tip), 48, 54 (mouth corners).
_LEFT_EYE = [
    (0.121737, 0.216423),
    (0.187122, 0.178758),
    (0.265825, 0.179852),
    (0.334606, 0.231733),
    (0.260918, 0.245099),
    (0.182743, 0.244077),
]
_RIGHT_EYE = [
    (0.645647, 0.231733),
    (0.714428, 0.179852),
    (0.793132, 0.178758),
    (0.858516, 0.216423),
    (0.79751, 0.244077),
    (0.719335, 0.245099),
]
DLIB_MEAN_FACE_5 = np.array(
    [
        np.mean(_LEFT_EYE, axis=0),
        np.mean(_RIGHT_EYE, axis=0),
        (0.490127, 0.515625),
        (0.254149, 0.780233),
        (0.726104, 0.780233),
    ],
    dtype=np.float64,
)
"""Our five points on dlib's normalised mean face."""

ALIGNED_LANDMARKS = ARCFACE_TEMPLATE.astype(np.float64)
"""The five points of a face in a store (ArcFace-aligned, 112x112)."""


def crop_points(crop: Crop) -> np.ndarray:
    """Where the five landmarks land in `crop`, in its pixel coordinates."""
    if crop.kind is CropKind.DLIB_CHIP:
        return (crop.padding + DLIB_MEAN_FACE_5) / (1 + 2 * crop.padding) * crop.size
    if crop.kind is CropKind.GREY:
        return TIGHT_CROP_LANDMARKS.astype(np.float64) * crop.size
    return ARCFACE_TEMPLATE.astype(np.float64) * (crop.size / 112.0)


def crop_matrix(landmarks: np.ndarray, crop: Crop) -> np.ndarray:
    """The (2, 3) similarity from photo pixels to `crop` pixels."""
    return estimate_similarity(np.asarray(landmarks, dtype=np.float64), crop_points(crop))


def cut(
    image: np.ndarray, landmarks: np.ndarray, crop: Crop, *, border: str = "constant"
) -> np.ndarray:
    """The crop of RGB uint8 `image` that `crop` describes, (size, size, 3), or (size, size, 1) grey.

    Shrinking warps sample a k-times larger crop and average it down
    (INTER_AREA), as dlib's chip extraction blurs before it subsamples; a
    plain bilinear warp would alias.
    """
    matrix = crop_matrix(landmarks, crop)
    scale = float(np.hypot(*matrix[0, :2]))  # crop pixels per photo pixel
    k = max(1, int(np.ceil(1.0 / scale - 1e-6))) if scale < 1 else 1
    big = crop.size * k
    warped = cv2.warpAffine(
        image,
        np.vstack([matrix[0] * k, matrix[1] * k]),
        (big, big),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    if k > 1:
        warped = cv2.resize(warped, (crop.size, crop.size), interpolation=cv2.INTER_AREA)
    if crop.kind is CropKind.GREY:
        return cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY)[..., None]
    return warped


def crops_from_aligned(faces: np.ndarray, crop: Crop) -> np.ndarray:
    """(N, size, size, C) crops of (N, 112, 112, 3) ArcFace-aligned store faces."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1:] != (112, 112, 3) or faces.dtype != np.uint8:
        raise ValueError(f"expected aligned uint8 faces (N, 112, 112, 3), got {faces.shape}")
    if crop.kind is CropKind.ARCFACE and crop.size == 112:
        return np.ascontiguousarray(faces)
    return np.stack([cut(f, ALIGNED_LANDMARKS, crop, border="replicate") for f in faces])


def sample_faces() -> np.ndarray:
    """Three aligned faces for conversion checks: the bundled photo's face, mirrored, darkened."""
    from swinface.assets import SAMPLE_PHOTO
    from swinface.vision import RetinaFaceDetector, align_face, load_image

    image = load_image(SAMPLE_PHOTO)
    detections = RetinaFaceDetector().detect(image)
    if not detections:
        raise RuntimeError(f"{SAMPLE_PHOTO}: no face found for the conversion check")
    best = max(detections, key=lambda d: d.score)
    face = align_face(image, best.landmarks)
    darker = (face.astype(np.float32) * 0.6).astype(np.uint8)
    return np.stack([face, np.ascontiguousarray(face[:, ::-1]), darker])
