"""Fast paths compute what the float32 eager model computes: ONNX export, ONNX Runtime, half precision."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from swinface import tasks
from swinface.backends import OnnxBackend, TorchBackend, create_backend, default_backend
from swinface.export import ONNX_OUTPUTS, export_onnx
from swinface.inference import SwinFaceRunner
from swinface.pipeline import FaceAnalyzer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def onnx_graph(conformance_model, tmp_path_factory):
    return export_onnx(conformance_model, tmp_path_factory.mktemp("onnx") / "swinface.onnx")


def _faces(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 112, 112, 3), np.uint8))


def test_onnx_graph_has_all_43_named_outputs_and_a_dynamic_batch(onnx_graph):
    graph = onnx.load(str(onnx_graph))
    names = [o.name for o in graph.graph.output]
    assert names == list(ONNX_OUTPUTS) and len(names) == 43
    assert names[-1] == "embedding" and "heavy_makeup" in names
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["format"] == "swinface-onnx" and "tasks" in meta


def test_onnx_graph_gives_the_conformance_reference_outputs(
    conformance_model, reference_outputs, tmp_path
):
    """The conformance fixture through ONNX Runtime, within 1e-4 in float32."""
    path = export_onnx(conformance_model, tmp_path / "float.onnx", normalised_input=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(
        zip(ONNX_OUTPUTS, session.run(None, {"faces": reference_outputs["input"]}), strict=True)
    )
    for out in tasks.ALL_OUTPUTS:
        np.testing.assert_allclose(
            got[out.key], reference_outputs[out.name], rtol=0, atol=1e-4, err_msg=out.name
        )


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_backend_matches_eager_float32(conformance_model, onnx_graph, batch):
    faces = _faces(batch, seed=batch)
    eager = TorchBackend(conformance_model, CPU, "float32")(faces)
    fast = OnnxBackend(onnx_graph)(faces)
    np.testing.assert_allclose(fast.embedding, eager.embedding, rtol=0, atol=1e-4)
    np.testing.assert_allclose(fast.logits, eager.logits, rtol=0, atol=1e-4)


def test_half_precision_stays_within_the_documented_tolerance(conformance_model):
    """bfloat16 autocast: embeddings within cosine 0.99 of float32, probabilities within 0.05."""
    faces = _faces(2, seed=7)
    ref = TorchBackend(conformance_model, CPU, "float32")(faces)
    half = TorchBackend(conformance_model, CPU, "bfloat16")(faces)
    cos = torch.nn.functional.cosine_similarity(ref.embedding, half.embedding)
    assert cos.min() > 0.99
    for name, s in tasks.output_slices().items():
        if tasks.output(name).kind == tasks.Kind.REGRESSION:
            continue
        p_ref = ref.logits[:, s].softmax(-1)
        p_half = half.logits[:, s].softmax(-1)
        assert (p_ref - p_half).abs().max() < 0.05, name


def test_runner_and_analyzer_choose_backends_by_name(conformance_model, monkeypatch):
    import swinface.backends as backends

    # Without native bf16 (or OpenVINO), auto is ONNX Runtime's float32 graph.
    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: False)
    runner = SwinFaceRunner(conformance_model, device="cpu", backend="auto")
    assert runner.backend.name == default_backend(CPU) == "onnxruntime"
    assert runner.backend.path.is_file()  # exported once into the (test) cache
    again = SwinFaceRunner(conformance_model, device="cpu", backend="onnxruntime")
    assert again.backend.path == runner.backend.path
    with pytest.raises(ValueError, match="unknown 'tensorrt'"):
        create_backend("tensorrt", conformance_model, CPU)
    analyzer = FaceAnalyzer(model=conformance_model, device="cpu", backend="eager", aligned=True)
    assert analyzer.runner.backend.name == "eager"
    faces = _faces(3).numpy()
    a = runner.analyze(faces).faces
    b = analyzer.runner.analyze(faces).faces
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-5)


def test_auto_falls_back_to_pytorch_when_onnx_runtime_cannot_run(conformance_model, monkeypatch):
    import swinface.backends as backends

    def broken(*args, **kwargs):
        raise RuntimeError("no ONNX Runtime here")

    monkeypatch.setattr(backends, "OnnxBackend", broken)
    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: False)  # ONNX Runtime, not OpenVINO
    assert create_backend("auto", conformance_model, CPU).name == "eager"
    with pytest.raises(RuntimeError, match="no ONNX Runtime"):
        create_backend("onnxruntime", conformance_model, CPU)


def test_one_default_backend_everywhere():
    """SwinFaceRunner, FaceAnalyzer and analyze_aligned all default to 'auto'."""
    import inspect

    from swinface.inference import analyze_aligned

    for entry in (SwinFaceRunner, FaceAnalyzer, analyze_aligned):
        assert inspect.signature(entry).parameters["backend"].default == "auto", entry


def test_eager_backend_runs_a_training_model_in_eval_mode_from_many_threads():
    """Each call sees the whole model in eval mode; afterwards it is training again, its
    statistics untouched, even with calls from several threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    from swinface.model import create_model

    torch.manual_seed(0)
    model = create_model("swinface_nano").train()
    stats = model.mlca.norm.running_mean.clone()
    faces = [_faces(2, seed=s) for s in range(6)]
    backend = TorchBackend(model, CPU, "float32")
    assert backend.model is model  # same device and dtype: no copy
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(backend, faces))
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model.mlca.norm.running_mean, stats)
    model.eval()
    for x, out in zip(faces, outs, strict=True):
        want = TorchBackend(model, CPU, "float32")(x)
        np.testing.assert_allclose(out.embedding, want.embedding, rtol=0, atol=1e-5)


def test_bench_times_eager_float32_once_as_the_baseline():
    from swinface import bench
    from swinface.model import create_model

    torch.manual_seed(0)
    model = create_model("swinface_nano").train()
    rows = bench.bench_model(model, CPU, ["eager", "onnxruntime"], [1], min_seconds=0)
    assert [(r.backend, r.precision) for r in rows] == [
        ("eager (baseline)", "float32"),
        ("onnxruntime", "float32"),
    ]
    assert model.training
