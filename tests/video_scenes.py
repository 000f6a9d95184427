"""Videos built from real face photos, for the video tests: faces moving, crossing, leaving, cut."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from swinface.assets import SAMPLE_PHOTO
from swinface.vision import load_image

FACE = 72  # face tile size in pixels: small frames keep detection fast


def astronaut_face(size: int = FACE) -> np.ndarray:
    """The bundled sample photo's face, as a square RGB tile."""
    photo = load_image(SAMPLE_PHOTO)
    return cv2.resize(photo[30:270, 105:345], (size, size), interpolation=cv2.INTER_AREA)


def photo_face(path: Path, size: int = FACE) -> np.ndarray:
    """A UTKFace or CelebA crop as a square RGB tile (the face fills most of it)."""
    image = load_image(path)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def background(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth textured background, different per seed (a different scene)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, (4, 5, 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


@dataclasses.dataclass
class Placement:
    """One face in one frame: which face tile, where its top-left corner goes."""

    face: int
    x: int
    y: int


def render(
    frames: Sequence[Sequence[Placement]],
    faces: Sequence[np.ndarray],
    *,
    size: tuple[int, int] = (320, 160),
    scenes: Sequence[int] | None = None,
    jitter: float = 0.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """RGB frames with the faces pasted in list order (later ones cover earlier ones).

    `scenes[i]` picks frame i's background; `jitter` adds that much pixel noise
    (standard deviation) so the same face looks slightly different in every frame.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    images = []
    for i, placements in enumerate(frames):
        canvas = background(w, h, 100 + (scenes[i] if scenes else 0)).copy()
        for p in placements:
            tile = faces[p.face]
            x0, y0 = max(p.x, 0), max(p.y, 0)
            x1, y1 = min(p.x + tile.shape[1], w), min(p.y + tile.shape[0], h)
            if x1 > x0 and y1 > y0:
                canvas[y0:y1, x0:x1] = tile[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
        if jitter:
            noise = rng.normal(0, jitter, canvas.shape)
            canvas = np.clip(canvas + noise, 0, 255).astype(np.uint8)
        images.append(canvas)
    return images


def write_video(path: Path, images: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Write RGB frames as a video (MJPG in AVI, or mp4v in MP4, by suffix)."""
    h, w = images[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    assert writer.isOpened(), path
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


class PixelEmbeddingRunner:
    """The model runner, but with embeddings from the aligned crop's pixels.

    Random weights give every face much the same embedding; a trained model
    tells people apart. For tests of tracking, the mean-centred, normalised
    16x16 grey crop plays the trained embedding's part: near 1 for the same
    photo, far lower for another person.
    """

    def __init__(self, runner) -> None:
        self.runner = runner
        self.batch_size = runner.batch_size

    def analyze(self, crops):
        result = self.runner.analyze(crops)
        faces = []
        for crop, face in zip(crops, result.faces, strict=True):
            grey = cv2.cvtColor(np.asarray(crop), cv2.COLOR_RGB2GRAY)
            v = cv2.resize(grey[16:96, 16:96], (16, 16), interpolation=cv2.INTER_AREA)
            v = v.astype(np.float32).ravel()
            v -= v.mean()
            faces.append(dataclasses.replace(face, embedding=v / (np.linalg.norm(v) + 1e-9)))
        result.faces = faces
        return result
