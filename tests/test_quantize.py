"""The int8 CPU path: tolerance on the conformance weights, the accuracy bar, when `auto` takes it."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import onnx
import pytest
import torch

from swinface import tasks
from swinface.backends import OnnxBackend, TorchBackend, create_backend
from swinface.export import export_onnx
from swinface.model import SwinFaceOutput, create_model
from swinface.quantize import (
    ACCURACY_BAR,
    DEFAULT_KEEP_FLOAT,
    SENSITIVE_LAYERS,
    Agreement,
    QuantizationError,
    _layers_to_quantise,
    _record,
    agreement,
    int8_path_for,
    quantize_graph,
    quantize_model,
    recorded_agreement,
)

CPU = torch.device("cpu")
# The int8 graph of the conformance weights stays this close to float32 on random faces.
INT8_COSINE_MIN = 0.999
INT8_LOGIT_ATOL = 0.15


def _faces(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), np.uint8)


@pytest.fixture(scope="module")
def conformance_int8(conformance_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "conformance-int8.onnx"
    return quantize_model(conformance_model, _faces(24, seed=1), out=path)


def test_int8_graph_of_the_conformance_weights_stays_within_tolerance(
    conformance_model, conformance_int8
):
    path, checked = conformance_int8
    faces = torch.from_numpy(_faces(6, seed=2))
    reference = TorchBackend(conformance_model, CPU, "float32")(faces)
    backend = OnnxBackend(path)
    got = backend(faces)
    assert backend.precision == "int8"
    cosine = torch.nn.functional.cosine_similarity(got.embedding, reference.embedding)
    assert cosine.min() >= INT8_COSINE_MIN
    np.testing.assert_allclose(got.logits, reference.logits, rtol=0, atol=INT8_LOGIT_ATOL)
    # The figures measured on the held-out faces travel with the graph.
    assert recorded_agreement(path) == checked
    assert checked.faces == 12 and checked.cosine_min >= INT8_COSINE_MIN


def test_int8_graph_keeps_the_sensitive_layers_in_float(conformance_int8):
    path, _ = conformance_int8
    graph = onnx.load(str(path))
    weights = {i.name for i in graph.graph.initializer}
    dequantised = {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    for prefix in SENSITIVE_LAYERS.values():
        layers = [n for n in graph.graph.node if n.name.startswith(prefix)]
        layers = [n for n in layers if n.op_type in ("Conv", "MatMul", "Gemm")]
        assert layers, prefix  # the export still names these layers so
        assert all(n.input[1] in weights for n in layers), prefix
    quantised = [n for n in graph.graph.node if n.op_type == "Conv" and "mlca" in n.name]
    assert len(quantised) == 4 and all(n.input[1] in dequantised for n in quantised)


def test_every_sensitive_layer_name_is_in_the_export(tmp_path):
    graph = onnx.load(str(export_onnx(create_model("swinface_nano"), tmp_path / "nano.onnx")))
    quantise, keep = _layers_to_quantise(graph, DEFAULT_KEEP_FLOAT)
    for prefix in SENSITIVE_LAYERS.values():
        assert any(name.startswith(prefix) for name in keep), prefix
    assert not any(name.startswith(tuple(SENSITIVE_LAYERS.values())) for name in quantise)
    # Attention's products of two activations stay float.
    assert any(name.endswith("attn/MatMul") for name in keep)
    with pytest.raises(ValueError, match="unknown"):
        _layers_to_quantise(graph, ["patch_embedding"])


def _outputs(embedding, logits) -> SwinFaceOutput:
    return SwinFaceOutput(torch.tensor(embedding, dtype=torch.float32), torch.tensor(logits))


def test_agreement_on_a_worked_example():
    slices = tasks.output_slices()
    logits = np.zeros((4, tasks.PACKED_SIZE), np.float32)
    logits[:, slices["Expression"]] = np.eye(7, dtype=np.float32)[[0, 1, 2, 3]]
    other = logits.copy()
    other[0, slices["Expression"]] = np.eye(7, dtype=np.float32)[5]  # one expression differs
    other[1, slices["Gender"]] = [0.0, 1.0]  # one gender, one of 40 attributes differ
    other[:, slices["Age"]] += np.array([[0.2], [0.4], [0.0], [0.2]])
    emb = np.array([[1.0, 0], [0, 1], [1, 1], [1, 0]])
    emb_other = np.array([[1.0, 0], [0, 2], [1, 1], [0, 1]])  # the last is orthogonal
    got = agreement(_outputs(emb, logits), _outputs(emb_other, other))
    assert got.faces == 4
    assert got.expression == pytest.approx(0.75) and got.gender == pytest.approx(0.75)
    assert got.attributes == pytest.approx(1 - 1 / (4 * 40))
    assert got.age_difference == pytest.approx(0.2)
    assert got.cosine_mean == pytest.approx(0.75) and got.cosine_min == pytest.approx(0.0)
    # One attribute in 160 decisions differs: 99.4% agreement meets the bar.
    assert {s.split()[0] for s in got.shortfalls()} == {
        "cosine_mean",
        "cosine_min",
        "expression",
        "gender",
    }


def test_the_accuracy_bar_is_the_published_one():
    good = Agreement(100, 0.996, 0.981, 0.99, 0.995, 0.99, 0.3)
    assert good.meets()
    assert ACCURACY_BAR.cosine_mean == 0.995 and ACCURACY_BAR.age_difference == 0.3
    assert replace(good, age_difference=0.31).shortfalls() == ["age_difference 0.310 > 0.3"]
    assert not replace(good, cosine_min=0.97).meets()


def test_auto_takes_the_int8_graph_only_when_it_meets_the_bar(monkeypatch):
    import swinface.backends as backends

    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: False)  # ONNX Runtime, not OpenVINO
    model = create_model("swinface_nano").eval()
    with pytest.raises(ValueError, match="swinface quantize"):
        create_backend("onnxruntime", model, CPU, "int8")
    path, _ = quantize_model(model, _faces(16, seed=3))
    assert path == int8_path_for(model)
    good = Agreement(8, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0)
    _record(path, {"agreement": json.dumps(asdict(good))})
    assert create_backend("auto", model, CPU).precision == "int8"
    assert create_backend("auto", model, CPU, "float32").precision == "float32"
    assert create_backend("onnxruntime", model, CPU).precision == "float32"
    _record(path, {"agreement": json.dumps(asdict(replace(good, expression=0.9)))})
    assert create_backend("auto", model, CPU).precision == "float32"
    # Asked for by name, int8 runs whatever its figures.
    assert create_backend("onnxruntime", model, CPU, "int8").precision == "int8"
    with pytest.raises(ValueError, match="only the onnxruntime"):
        create_backend("eager", model, CPU, "int8")
    # Other weights do not find this graph.
    assert create_backend("auto", create_model("swinface_nano"), CPU).precision == "float32"
    path.unlink()


def test_calibration_faces_are_checked(tmp_path):
    with pytest.raises(QuantizationError, match="uint8"):
        quantize_graph(tmp_path / "x.onnx", np.zeros((8, 112, 112, 3), np.float32), tmp_path / "y")
    with pytest.raises(QuantizationError, match="at least 8"):
        quantize_graph(tmp_path / "x.onnx", _faces(3, seed=0), tmp_path / "y")
    with pytest.raises(QuantizationError, match="too few"):
        quantize_model(create_model("swinface_nano"), _faces(10, seed=0))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- OpenVINO

# OpenVINO's bf16 (native bf16 products, float32 accumulation) on the conformance weights.
BF16_COSINE_MIN = 0.999
BF16_LOGIT_ATOL = 0.1


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_openvino_backend_stays_within_tolerance(conformance_model, precision):
    pytest.importorskip("openvino")
    from swinface.backends import OpenVinoBackend, cpu_runs_bf16

    if precision == "bfloat16" and not cpu_runs_bf16():
        pytest.skip("this CPU has no native bf16")
    faces = torch.from_numpy(_faces(5, seed=4))
    reference = TorchBackend(conformance_model, CPU, "float32")(faces)
    backend = OpenVinoBackend(conformance_model, CPU, precision)
    assert backend.precision == precision
    got = backend(faces)
    kept = (got.embedding.clone(), got.logits.clone())
    backend(faces[:2])  # another batch size: earlier outputs are not overwritten
    assert torch.equal(got.embedding, kept[0]) and torch.equal(got.logits, kept[1])
    cosine = torch.nn.functional.cosine_similarity(got.embedding, reference.embedding)
    if precision == "float32":
        np.testing.assert_allclose(got.logits, reference.logits, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.embedding, reference.embedding, rtol=0, atol=1e-4)
    else:
        assert cosine.min() >= BF16_COSINE_MIN
        np.testing.assert_allclose(got.logits, reference.logits, rtol=0, atol=BF16_LOGIT_ATOL)


def test_auto_on_cpu_is_openvino_bf16_where_the_cpu_runs_bf16(monkeypatch):
    pytest.importorskip("openvino")
    import swinface.backends as backends

    model = create_model("swinface_nano").eval()
    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: True)
    auto = create_backend("auto", model, CPU)
    assert (auto.name, auto.precision) == ("openvino", "bfloat16")
    assert create_backend("auto", model, CPU, "float32").precision == "float32"
    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: False)
    assert create_backend("auto", model, CPU).name == "onnxruntime"
    with pytest.raises(ValueError, match="runs on the CPU"):
        backends.OpenVinoBackend(model, torch.device("cuda"))


def test_auto_leaves_openvino_bf16_for_weights_whose_check_misses_the_bar(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from swinface.backends import cpu_runs_bf16
    from swinface.quantize import bf16_check_path, check_bf16, recorded_bf16_agreement

    if not cpu_runs_bf16():
        pytest.skip("this CPU has no native bf16")
    monkeypatch.setenv("SWINFACE_HOME", str(tmp_path))  # a cache of this test's own
    torch.manual_seed(5)
    model = create_model("swinface_nano").eval()
    auto = create_backend("auto", model, CPU)
    assert (auto.name, auto.precision) == ("openvino", "bfloat16")  # nothing recorded yet

    result = check_bf16(model, _faces(6, seed=5))
    assert result.faces == 6 and 0.99 < result.cosine_mean <= 1.0 + 1e-6
    assert recorded_bf16_agreement(model) == result
    path = bf16_check_path(model)
    record = json.loads(path.read_text())

    def recorded(figures: Agreement) -> None:
        path.write_text(json.dumps({**record, "agreement": asdict(figures)}))

    good = Agreement(6, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0)
    recorded(good)
    assert create_backend("auto", model, CPU).name == "openvino"
    recorded(replace(good, expression=0.9))
    auto = create_backend("auto", model, CPU)
    assert (auto.name, auto.precision) == ("onnxruntime", "float32")
    # Asked for by name or precision, bf16 runs whatever its figures.
    assert create_backend("auto", model, CPU, "bfloat16").precision == "bfloat16"
    assert create_backend("openvino", model, CPU).precision == "bfloat16"
    # Other weights do not read this check; a damaged record is ignored.
    assert create_backend("auto", create_model("swinface_nano").eval(), CPU).name == "openvino"
    path.write_text("{not json")
    assert recorded_bf16_agreement(model) is None
    assert create_backend("auto", model, CPU).name == "openvino"
    with pytest.raises(QuantizationError, match="uint8"):
        check_bf16(model, np.zeros((2, 112, 112, 3), np.float32))


# OpenVINO's CPU plugin gives the thread that loads it an alternate signal stack and, when
# unloaded from another thread, frees it while the loading thread still uses it: that
# thread's next signal (SIGCHLD, as a child process ends) killed the process.
_SIGNAL_STACK_SCRIPT = """
import faulthandler, gc, signal, subprocess, threading
import torch
from swinface.backends import OpenVinoBackend
from swinface.model import create_model

faulthandler.enable()  # an alternate signal stack on this thread, as under pytest
signal.signal(signal.SIGCHLD, lambda *_: None)  # handled on that stack (SA_ONSTACK)
torch.manual_seed(0)
held = [OpenVinoBackend(create_model("swinface_nano").eval())]
held[0](torch.zeros(1, 112, 112, 3, dtype=torch.uint8))
dropper = threading.Thread(target=lambda: (held.clear(), gc.collect()))
dropper.start()
dropper.join()
for _ in range(20):
    subprocess.run(["true"], check=True)
print("survived")
"""


def test_openvino_dropped_on_another_thread_leaves_signal_handling_intact():
    pytest.importorskip("openvino")
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _SIGNAL_STACK_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert run.stdout.strip() == "survived"
