"""Big JPEGs decoded at 1/2, 1/4 or 1/8 of their size for detection and alignment,
with every box and landmark still in the full photo's pixels."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from conftest import FIXTURES
from PIL import Image

from swinface.pipeline import FaceAnalyzer, _finest_reduction
from swinface.vision import ImageError, RetinaFaceDetector, align_face, load_image
from swinface.vision.image import Photo, reduction_for

ASTRONAUT = FIXTURES / "images" / "astronaut.jpg"


def _jpeg(pixels: np.ndarray, path, **save) -> None:
    Image.fromarray(pixels).save(path, quality=95, **save)


@pytest.fixture(scope="module")
def big_portrait(tmp_path_factory):
    """The astronaut enlarged to 2560x2048: one large face in a 5-megapixel JPEG."""
    photo = load_image(ASTRONAUT)
    big = cv2.resize(photo, (2560, 2560), interpolation=cv2.INTER_CUBIC)[:2048]
    path = tmp_path_factory.mktemp("big") / "portrait.jpg"
    _jpeg(big, path)
    return path


@pytest.fixture(scope="module")
def distant_face(tmp_path_factory):
    """A 2400x1800 JPEG whose only face is about 200 pixels wide (eyes 60 apart):
    too small to align from a decode at half size without enlarging it."""
    face = load_image(ASTRONAUT)[40:260, 110:340]
    canvas = np.full((1800, 2400, 3), 90, np.uint8)
    canvas[900 : 900 + face.shape[0], 1200 : 1200 + face.shape[1]] = face
    path = tmp_path_factory.mktemp("distant") / "distant.jpg"
    _jpeg(canvas, path)
    return path


def test_reduction_keeps_the_longer_side_above_the_minimum():
    assert reduction_for((4000, 3000), 640) == 4  # 1000 >= 640; 500 would not be
    assert reduction_for((1536, 1024), 640) == 2
    assert reduction_for((512, 512), 640) == 1
    assert reduction_for((6000, 4000), 640) == 8  # 750
    assert reduction_for(None, 640) == reduction_for((4000, 3000), None) == 1


def test_a_jpeg_decodes_reduced_with_its_full_size_known(big_portrait):
    photo = Photo(big_portrait)
    assert photo.decode_for(640).pixels.shape == (512, 640, 3)  # 2560 / 4 = 640
    assert photo.decode_for(641).pixels.shape == (1024, 1280, 3)
    full, quarter = photo.decode(1), photo.decode(4)
    assert full.pixels.shape == (2048, 2560, 3) and not full.reduced
    assert quarter.pixels.shape == (512, 640, 3) and quarter.reduced
    assert (quarter.width, quarter.height) == (2560, 2048)
    np.testing.assert_array_equal(quarter.factors, [4, 4])
    np.testing.assert_array_equal(full.pixels, load_image(big_portrait))
    # Each reduced pixel is (close to) the mean of its 4x4 block.
    blocks = full.pixels.reshape(512, 4, 640, 4, 3).mean(axis=(1, 3))
    assert np.abs(blocks - quarter.pixels).mean() < 3
    # Points map both ways, pixel centre to pixel centre.
    points = np.array([[0.0, 0.0], [100.25, 37.5]], np.float32)
    np.testing.assert_allclose(quarter.to_full(quarter.from_full(points)), points, atol=1e-4)
    np.testing.assert_allclose(quarter.to_full([[0.0, 0.0]]), [[1.5, 1.5]])


def test_bytes_and_file_objects_decode_reduced_too(big_portrait):
    data = big_portrait.read_bytes()
    for source in (data, io.BytesIO(data)):
        photo = Photo(source)
        assert photo.decode(2).pixels.shape == (1024, 1280, 3)
        assert photo.decode(1).pixels.shape == (2048, 2560, 3)  # bytes kept for a second decode


def test_other_formats_arrays_and_pil_images_decode_at_full_size(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    png = tmp_path / "photo.png"
    Image.fromarray(pixels).save(png)
    for source in (png, pixels, Image.fromarray(pixels)):
        decoded = Photo(source).decode(4)
        np.testing.assert_array_equal(decoded.pixels, pixels)
        assert not decoded.reduced and (decoded.width, decoded.height) == (400, 300)
    with pytest.raises(ValueError, match="reduce"):
        Photo(png).decode(3)


def test_exif_orientation_swaps_the_full_size_of_a_reduced_decode(tmp_path):
    stored = np.zeros((200, 400, 3), np.uint8)  # 400 wide: left half red, right half blue
    stored[:, :200] = (255, 0, 0)
    stored[:, 200:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    _jpeg(stored, path, exif=exif)
    decoded = Photo(path).decode(4)
    assert decoded.pixels.shape == (100, 50, 3)
    assert (decoded.width, decoded.height) == (200, 400)  # as shown, not as stored
    assert decoded.pixels[10, 25, 0] > 200 and decoded.pixels[90, 25, 2] > 200


def test_bad_files_fail_with_their_name_at_any_reduction(tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(ASTRONAUT.read_bytes()[:2000])
    with pytest.raises(ImageError, match="truncated.jpg.*truncated or corrupt"):
        Photo(truncated).decode(4)
    with pytest.raises(ImageError, match="missing.jpg: no such file"):
        Photo(tmp_path / "missing.jpg").decode(4)
    with pytest.raises(ImageError, match="empty"):
        Photo(b"")
    with pytest.raises(ImageError, match="over the limit"):
        Photo(ASTRONAUT, max_pixels=1000).decode(8)
    with pytest.raises(ImageError, match="text mode"), open(ASTRONAUT, encoding="latin-1") as text:
        Photo(text)


def test_detection_on_a_reduced_decode_is_in_full_photo_pixels(big_portrait):
    detector = RetinaFaceDetector()
    full = detector.detect(load_image(big_portrait))
    photo = Photo(big_portrait)
    reduced = detector.detect(photo.decode(4).pixels, factor=4.0)
    assert len(full) == len(reduced) == 1
    # The detector sees 640 pixels either way: the same face, to a few full-size pixels.
    np.testing.assert_allclose(reduced[0].box, full[0].box, atol=8)
    np.testing.assert_allclose(reduced[0].landmarks, full[0].landmarks, atol=6)
    # min_face_size counts full-size pixels, not the reduced decode's.
    side = min(full[0].width, full[0].height)
    assert RetinaFaceDetector(min_face_size=side * 0.9).detect(photo.decode(4).pixels, factor=4.0)
    assert not RetinaFaceDetector(min_face_size=side * 1.1).detect(
        photo.decode(4).pixels, factor=4.0
    )
    with pytest.raises(ValueError, match="factor"):
        detector.detect(photo.decode(4).pixels, factor=0.5)


def test_pipeline_decodes_a_big_jpeg_reduced_and_reports_full_size(conformance_model, big_portrait):
    analyzer = FaceAnalyzer(model=conformance_model, device="cpu")
    photo = analyzer.open(big_portrait)
    decoded = analyzer.decode(photo)
    assert decoded.pixels.shape == (512, 640, 3)  # 2560 / 4 = 640, the detector's size
    result = analyzer.analyze(big_portrait)
    assert (result.width, result.height) == (2560, 2048) and len(result.faces) == 1
    face = result.faces[0]
    # Against the whole photo decoded at full size (an array is never reduced):
    direct = analyzer.analyze(load_image(big_portrait)).faces[0]
    np.testing.assert_allclose(face.box, direct.box, atol=8)
    # The large face is aligned from the reduced decode; the crops agree.
    assert _finest_reduction(face.landmarks) >= 4
    cosine = float(face.analysis.embedding @ direct.analysis.embedding)
    assert cosine > 0.99


def test_a_face_too_small_for_the_reduced_decode_is_aligned_from_full_pixels(
    conformance_model, distant_face
):
    analyzer = FaceAnalyzer(model=conformance_model, device="cpu")
    photo = analyzer.open(distant_face)
    decoded = analyzer.decode(photo)
    assert decoded.factors[0] == 2  # 2400 / 2 = 1200 >= 640; / 4 would be 600
    (face,) = analyzer.detect(decoded)
    assert _finest_reduction(face.landmarks) == 1
    (crop,) = analyzer.align(photo, decoded, [face])
    full = load_image(distant_face)
    np.testing.assert_array_equal(crop, align_face(full, face.landmarks))
