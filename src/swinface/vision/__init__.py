"""Image decoding, face detection and 5-point alignment.

Importing this package is light: onnxruntime and the detector weights load
on the first `RetinaFaceDetector.detect` call.
"""

from swinface.vision.align import (
    ARCFACE_TEMPLATE,
    align_face,
    estimate_similarity,
    frame_crop,
    resize_face,
)
from swinface.vision.detect import Detection, RetinaFaceDetector
from swinface.vision.image import DEFAULT_MAX_PIXELS, ImageError, load_image

__all__ = [
    "ARCFACE_TEMPLATE",
    "DEFAULT_MAX_PIXELS",
    "Detection",
    "ImageError",
    "RetinaFaceDetector",
    "align_face",
    "estimate_similarity",
    "frame_crop",
    "load_image",
    "resize_face",
]
