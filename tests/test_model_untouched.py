"""Every public entry point that takes a model leaves it exactly as it was.

Parameters, buffers, each module's training mode, dtype, device and memory
layout are compared before and after (`model_state`), for a model in training
mode, one with a single submodule in training mode, and a bfloat16 model. A
new entry point that takes a model belongs in `ENTRY_POINTS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from model_state import assert_unchanged, snapshot

from swinface import bench
from swinface.backends import OnnxBackend, TorchBackend, create_backend
from swinface.data.samples import Sample
from swinface.export import cached_onnx_graph, export_onnx, model_digest
from swinface.inference import SwinFaceRunner, analyze_aligned
from swinface.model import create_model
from swinface.model.plain import PlainSwinFace
from swinface.pipeline import FaceAnalyzer
from swinface.quantize import quantize_model
from swinface.weights import save_native, save_published

CPU = torch.device("cpu")
PHOTO = FIXTURES / "images" / "astronaut.jpg"


def _faces(n: int = 2) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, 112, 112, 3), np.uint8)


class _Dataset:
    name = "tiny"
    pairs: list = []
    skipped: list = []

    def __init__(self) -> None:
        faces = _faces(4)
        self.samples = [
            Sample(faces[i], f"face {i}", age=20.0 + i, gender=i % 2) for i in range(len(faces))
        ]


def _evaluate(model, tmp_path: Path) -> None:
    from swinface.evaluate import evaluate

    analyzer = FaceAnalyzer(model=model, device="cpu", aligned=True, batch_size=2)
    evaluate("all", _Dataset(), analyzer, progress=False)


def _evaluate_stores(model, tmp_path: Path) -> None:
    from swinface.data.store import StoreWriter
    from swinface.train.validation import evaluate_stores

    writer = StoreWriter(tmp_path / "store", capacity=4)
    for i, face in enumerate(_faces(4)):
        writer.add(face, f"{i}", identity=i % 2, age=20.0 + i, gender=i % 2)
    evaluate_stores(model, {"val": str(writer.close({}).path)})


def _compiled(model, tmp_path: Path, monkeypatch) -> None:
    # torch.compile's default backend needs a C++ toolchain and minutes on CPU; Dynamo with
    # its eager backend runs the same wrapping and guards, which is what could touch the model.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    SwinFaceRunner(model, device="cpu", backend="compiled").run(_faces())


ENTRY_POINTS: dict[str, Callable] = {
    "analyze_aligned": lambda m, tmp: analyze_aligned(m, _faces()),
    "analyze_aligned-eager": lambda m, tmp: analyze_aligned(m, _faces(), backend="eager"),
    "FaceAnalyzer": lambda m, tmp: FaceAnalyzer(model=m, device="cpu", aligned=True).analyze(
        _faces(1)[0]
    ),
    "SwinFaceRunner-auto": lambda m, tmp: SwinFaceRunner(m, device="cpu").run(_faces()),
    "SwinFaceRunner-eager": lambda m, tmp: SwinFaceRunner(m, device="cpu", backend="eager").run(
        _faces()
    ),
    "SwinFaceRunner-onnxruntime": lambda m, tmp: SwinFaceRunner(
        m, device="cpu", backend="onnxruntime"
    ).run(_faces()),
    "SwinFaceRunner-compiled": _compiled,
    "TorchBackend-float32": lambda m, tmp: TorchBackend(m, CPU, "float32")(
        torch.from_numpy(_faces())
    ),
    "TorchBackend-bfloat16": lambda m, tmp: TorchBackend(m, CPU, "bfloat16")(
        torch.from_numpy(_faces())
    ),
    "create_backend-auto": lambda m, tmp: create_backend("auto", m, CPU)(
        torch.from_numpy(_faces())
    ),
    "OnnxBackend": lambda m, tmp: OnnxBackend(m)(torch.from_numpy(_faces())),
    "export_onnx": lambda m, tmp: export_onnx(m, tmp / "model.onnx"),
    "cached_onnx_graph": lambda m, tmp: cached_onnx_graph(m),
    "model_digest": lambda m, tmp: model_digest(m),
    "bench_model": lambda m, tmp: bench.bench_model(
        m, CPU, ["eager", "onnxruntime"], [1], min_seconds=0
    ),
    "bench_pipeline": lambda m, tmp: bench.bench_pipeline(
        FaceAnalyzer(model=m, device="cpu", aligned=True), PHOTO, photos_per_call=1, min_seconds=0
    ),
    "evaluate": _evaluate,
    "evaluate_stores": _evaluate_stores,
    "save_native": lambda m, tmp: save_native(m, tmp / "model.safetensors"),
    "save_published": lambda m, tmp: save_published(m, tmp / "model.pt"),
    "quantize_model": lambda m, tmp: quantize_model(m, _faces(16), out=tmp / "int8.onnx"),
    "PlainSwinFace": lambda m, tmp: PlainSwinFace(m),
}


@functools.cache
def _base_model():
    torch.manual_seed(0)
    model = create_model("swinface_nano")
    with torch.no_grad():  # statistics a training-mode forward would visibly update
        model.mlca.norm.running_mean.uniform_(-0.1, 0.1)
        model.mlca.norm.running_var.uniform_(0.5, 1.5)
    return model


def _training():
    return _copy().train()


def _one_submodule_training():
    model = _copy().eval()
    model.mlca.train()
    return model


def _bfloat16():
    return _copy().to(torch.bfloat16).eval()


def _copy():
    import copy

    return copy.deepcopy(_base_model())


MODEL_STATES = {
    "training": _training,
    "one-submodule-training": _one_submodule_training,
    "bfloat16": _bfloat16,
}


# Entry points that work on a copy of the model whatever its mode: one training state is enough.
COPYING = {
    "OnnxBackend",
    "quantize_model",
    "PlainSwinFace",
    "export_onnx",
    "cached_onnx_graph",
    "model_digest",
    "save_native",
    "save_published",
    "bench_pipeline",
    "evaluate",
}
CASES = [
    pytest.param(
        entry,
        state,
        id=f"{entry}-{state}",
    )
    for entry in ENTRY_POINTS
    for state in MODEL_STATES
    if not (entry in COPYING and state == "one-submodule-training")
    # Training validation feeds float32 faces: it validates float32 models.
    and not (entry == "evaluate_stores" and state == "bfloat16")
]


@pytest.mark.parametrize(("entry", "state"), CASES)
def test_entry_point_leaves_the_model_as_it_was(entry, state, tmp_path, monkeypatch):
    model = MODEL_STATES[state]()
    before = snapshot(model)
    call = ENTRY_POINTS[entry]
    if call is _compiled:
        call(model, tmp_path, monkeypatch)
    else:
        call(model, tmp_path)
    assert_unchanged(model, before)


def test_the_snapshot_sees_every_kind_of_change():
    """The check itself: mode, values, buffers, dtype and an in-place move are each caught."""
    from model_state import differences

    changes = {
        "mode": lambda m: m.heads.train(),
        "weight": lambda m: m.heads.fc1_b.data.add_(1e-3),
        "running statistics": lambda m: m.mlca.norm.running_mean.add_(1e-3),
        "computed buffer": lambda m: m.heads.packed_index.add_(0),  # no change: control
        "dtype": lambda m: m.heads.to(torch.float64),
        "storage": lambda m: setattr(m.heads.fc1_w, "data", m.heads.fc1_w.data.clone()),
    }
    for what, change in changes.items():
        model = _copy().eval()
        before = snapshot(model)
        change(model)
        found = differences(model, before)
        assert bool(found) == (what != "computed buffer"), (what, found)
