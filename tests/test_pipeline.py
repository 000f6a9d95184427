"""The face pipeline on real photos: detect, align, analyse, batch, and go on past bad input."""

from __future__ import annotations

import copy
import io
import threading

import cv2
import numpy as np
import pytest
from conftest import FIXTURES
from PIL import Image

from swinface.inference import analyze_aligned
from swinface.pipeline import FaceAnalyzer, cosine_similarity, default_workers
from swinface.vision import ImageError, align_face, load_image

ASTRONAUT = FIXTURES / "images" / "astronaut.jpg"


@pytest.fixture(scope="module")
def analyzer(conformance_model) -> FaceAnalyzer:
    return FaceAnalyzer(model=conformance_model, device="cpu", batch_size=8)


def _tiled(scales=(1.0, 0.7, 0.5, 0.35)) -> np.ndarray:
    """A 2x2 mosaic of the astronaut's face at several sizes: a photo with four faces."""
    photo = load_image(ASTRONAUT)
    face = photo[40:260, 110:340]
    tile = 300
    canvas = np.full((2 * tile, 2 * tile, 3), 128, np.uint8)
    for k, scale in enumerate(scales):
        small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        y, x = divmod(k, 2)
        canvas[y * tile : y * tile + small.shape[0], x * tile : x * tile + small.shape[1]] = small
    return canvas


def test_astronaut_has_one_analysed_face(analyzer):
    result = analyzer.analyze(ASTRONAUT)
    assert result.ok and (result.width, result.height) == (512, 512)
    assert len(result.faces) == 1
    face = result.faces[0]
    x1, y1, x2, y2 = face.box
    assert all(x1 < x < x2 and y1 < y < y2 for x, y in face.landmarks)
    a = face.analysis
    assert np.linalg.norm(a.embedding) == pytest.approx(1.0, abs=1e-5)
    assert sum(a.expression_probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert len(a.attributes) == 40 and all(0 <= p <= 1 for p in a.attributes.values())
    assert a.gender in ("female", "male")
    record = result.to_dict()
    assert record["source"] == str(ASTRONAUT) and len(record["faces"][0]["embedding"]) == 512


def test_pipeline_equals_analysing_the_aligned_crop(analyzer, conformance_model):
    face = analyzer.analyze(ASTRONAUT).faces[0]
    crop = align_face(load_image(ASTRONAUT), face.landmarks)
    direct = analyze_aligned(conformance_model, crop[None]).faces[0]
    np.testing.assert_allclose(face.analysis.embedding, direct.embedding, atol=1e-5)
    assert face.analysis.age == pytest.approx(direct.age, abs=1e-3)


def test_every_face_of_a_group_photo_is_found_and_analysed(analyzer):
    result = analyzer.analyze(_tiled())
    assert len(result.faces) == 4
    centres = sorted(
        ((f.box[0] + f.box[2]) / 2 // 300, (f.box[1] + f.box[3]) / 2 // 300) for f in result.faces
    )
    assert centres == [(0, 0), (0, 1), (1, 0), (1, 1)]  # one face per tile
    # The same face at different sizes is still recognised as itself.
    embeddings = [f.analysis.embedding for f in result.faces]
    assert min(cosine_similarity(embeddings[0], e) for e in embeddings[1:]) > 0.5
    x1, y1, x2, y2 = result.main_face().box
    assert x2 < 300 and y2 < 300  # the largest face is the full-size tile's


def test_batches_span_photos_and_bad_inputs_do_not_stop_the_run(conformance_model, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(ASTRONAUT.read_bytes()[:2000])
    blank = np.full((200, 200, 3), 200, np.uint8)
    sources = [ASTRONAUT, truncated, _tiled(), tmp_path / "missing.jpg", blank]
    small = FaceAnalyzer(model=conformance_model, device="cpu", batch_size=2)
    large = FaceAnalyzer(model=conformance_model, device="cpu", batch_size=64)
    a, b = list(small.analyze_many(sources)), list(large.analyze_many(sources))
    assert [r.ok for r in a] == [True, False, True, False, True]
    assert [len(r.faces) for r in a] == [1, 0, 4, 0, 0]  # no face is an empty result
    assert "truncated.jpg" in a[1].error and "missing.jpg" in a[3].error
    for ra, rb in zip(a, b, strict=True):
        for fa, fb in zip(ra.faces, rb.faces, strict=True):
            np.testing.assert_allclose(fa.analysis.embedding, fb.analysis.embedding, atol=1e-5)
    with pytest.raises(ImageError, match="truncated.jpg"):
        small.analyze(truncated)


def test_aligned_mode_takes_each_input_as_one_face(conformance_model):
    grey = np.asarray(Image.open(io.BytesIO(ASTRONAUT.read_bytes())).convert("L").resize((48, 48)))
    analyzer = FaceAnalyzer(model=conformance_model, device="cpu", aligned=True)
    assert analyzer.detector is None
    result = analyzer.analyze(grey)
    assert len(result.faces) == 1 and result.faces[0].box == (0.0, 0.0, 48.0, 48.0)
    assert result.faces[0].detection_score == 1.0


def _recording_detect(detector, calls: list):
    """`detector.detect`, noting the thread and the `threads` option of each call."""
    detect = detector.detect

    def recorded(pixels, **options):
        calls.append((threading.current_thread(), options.get("threads")))
        return detect(pixels, **options)

    return recorded


def test_photos_prepared_in_parallel_come_back_the_same_and_in_order(conformance_model, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(ASTRONAUT.read_bytes()[:2000])
    sources = [_tiled(), ASTRONAUT, truncated, b"not an image", _tiled((0.5, 0.8)), ASTRONAUT]
    serial = FaceAnalyzer(model=conformance_model, device="cpu", batch_size=4, workers=1)
    parallel = copy.copy(serial)
    parallel.workers = 3
    parallel.detector = copy.copy(serial.detector)
    serial_calls, parallel_calls = [], []
    serial.detector.detect = _recording_detect(serial.detector, serial_calls)
    parallel.detector.detect = _recording_detect(parallel.detector, parallel_calls)

    one, many = list(serial.analyze_many(sources)), list(parallel.analyze_many(iter(sources)))
    assert [r.source for r in many] == [r.source for r in one]
    assert [r.error for r in many] == [r.error for r in one]
    assert [len(r.faces) for r in many] == [4, 1, 0, 0, 2, 1]
    for a, b in zip(one, many, strict=True):
        for fa, fb in zip(a.faces, b.faces, strict=True):
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-3)
            np.testing.assert_allclose(fa.analysis.embedding, fb.analysis.embedding, atol=1e-4)
    # One photo at a time on the caller's thread with every core, or side by side on
    # the workers, each on its share of the cores.
    assert {(t, n) for t, n in serial_calls} == {(threading.current_thread(), None)}
    assert len(parallel_calls) == 4
    assert all(t.name.startswith("swinface-prepare") for t, _ in parallel_calls)
    assert {n for _, n in parallel_calls} == {max(1, default_workers() // 3)}


def test_parallel_preparing_reads_a_generator_only_a_little_ahead(conformance_model):
    analyzer = FaceAnalyzer(model=conformance_model, device="cpu", batch_size=1, workers=2)
    taken = []

    def photos():
        for k in range(50):
            taken.append(k)
            yield ASTRONAUT

    results = analyzer.analyze_many(photos())
    assert len(next(results).faces) == 1
    assert len(taken) <= 2 * analyzer.workers + 1  # a window ahead, not all 50
    results.close()  # the caller stops early: the workers stop, nothing more is read
    assert len(taken) <= 2 * analyzer.workers + 1
    assert not any(t.name.startswith("swinface-prepare") for t in threading.enumerate())


def test_a_single_photo_is_detected_with_every_core(conformance_model):
    analyzer = FaceAnalyzer(model=conformance_model, device="cpu", workers=4)
    analyzer.detector = copy.copy(analyzer.detector)
    calls = []
    analyzer.detector.detect = _recording_detect(analyzer.detector, calls)
    analyzer.analyze(ASTRONAUT)
    list(analyzer.analyze_many([ASTRONAUT]))
    assert calls == [(threading.current_thread(), None)] * 2


def test_a_custom_detector_is_called_from_several_threads_only_if_it_says_so(conformance_model):
    from swinface.vision import RetinaFaceDetector

    class Custom:
        def __init__(self):
            self.inner, self.threads = RetinaFaceDetector(), set()

        def detect(self, pixels):
            self.threads.add(threading.current_thread())
            return self.inner.detect(pixels)

    custom = Custom()
    analyzer = FaceAnalyzer(model=conformance_model, device="cpu", detector=custom, workers=3)
    results = list(analyzer.analyze_many([ASTRONAUT, _tiled(), ASTRONAUT]))
    assert [len(r.faces) for r in results] == [1, 4, 1]
    assert custom.threads == {threading.current_thread()}
    Custom.thread_safe = True
    custom.threads.clear()
    list(analyzer.analyze_many([ASTRONAUT, _tiled(), ASTRONAUT, _tiled()]))
    assert threading.current_thread() not in custom.threads


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_bad_workers_are_refused(conformance_model, workers):
    with pytest.raises(ValueError, match="workers"):
        FaceAnalyzer(model=conformance_model, device="cpu", workers=workers)
