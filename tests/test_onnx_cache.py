"""The cache of exported ONNX graphs: one writer at a time, no leftovers, no broken graph trusted."""

from __future__ import annotations

import logging
import multiprocessing

import numpy as np
import onnx
import pytest
import torch

import swinface.backends as backends
from swinface.backends import OnnxBackend, TorchBackend, create_backend
from swinface.export import cached_onnx_graph, export_onnx, graph_problem, model_digest
from swinface.model import create_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(1)
    return create_model("swinface_nano").eval()


def _faces(n: int = 2) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, 112, 112, 3), np.uint8))


def _leftovers(folder) -> list[str]:
    """Files other than graphs and their lock files."""
    return sorted(p.name for p in folder.iterdir() if p.suffix not in (".onnx", ".lock"))


def test_two_processes_asking_at_once_share_one_export(tmp_path):
    from onnx_cache_worker import ask_for_graph

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    home = str(tmp_path / "home")
    workers = [ctx.Process(target=ask_for_graph, args=(home, barrier, results)) for _ in range(2)]
    for w in workers:
        w.start()
    got = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert [g[0] for g in got] == ["ok", "ok"], got
    assert sum(g[1] for g in got) == 1  # one process exported, the other waited and reused it
    assert got[0][2] == got[1][2]
    np.testing.assert_array_equal(got[0][3], got[1][3])
    graph = tmp_path / "home" / "onnx"
    assert _leftovers(graph) == []
    assert len(list(graph.glob("*.onnx"))) == 1
    assert graph_problem(got[0][2]) is None


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other weights"])
def test_a_damaged_cached_graph_is_detected_and_exported_again(nano, damage, caplog, monkeypatch):
    path = cached_onnx_graph(nano)
    digest = model_digest(nano)
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a graph at all")
    else:
        graph = onnx.load(str(path))
        for prop in graph.metadata_props:
            if prop.key == "weights_digest":
                prop.value = "0123456789abcdef"
        onnx.save(graph, str(path))
    assert graph_problem(path, digest) is not None
    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: False)  # ONNX Runtime, not OpenVINO
    with caplog.at_level(logging.WARNING, logger="swinface.export"):
        backend = create_backend("auto", nano, CPU)
    assert backend.name == "onnxruntime"  # repaired, not a silent fall back to eager
    assert any("exporting it again" in r.getMessage() for r in caplog.records)
    assert graph_problem(path, digest) is None
    eager = TorchBackend(nano, CPU, "float32")(_faces())
    np.testing.assert_allclose(backend(_faces()).embedding, eager.embedding, atol=1e-4)


def test_a_failed_export_leaves_nothing_behind(nano, tmp_path, monkeypatch):
    def half_written(model, args, f, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"\x08\x07 half a graph")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(nano, tmp_path / "out" / "model.onnx")
    assert list((tmp_path / "out").iterdir()) == []
    torch.manual_seed(5)
    other = create_model("swinface_nano")  # a graph the cache does not hold yet
    with pytest.raises(RuntimeError, match="exporter crashed"):
        OnnxBackend(other)
    folder = backends.onnx_path_for(other).parent
    assert _leftovers(folder) == []
    assert not backends.onnx_path_for(other).exists()


def test_auto_warns_once_saying_why_it_falls_back(nano, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no ONNX Runtime here")

    monkeypatch.setattr(backends, "OnnxBackend", broken)
    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: False)  # ONNX Runtime, not OpenVINO
    monkeypatch.setattr(backends, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="swinface.backends"):
        first = create_backend("auto", nano, CPU)
        second = create_backend("auto", nano, CPU)
    assert first.name == second.name == "eager"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no ONNX Runtime here" in warnings[0] and "PyTorch" in warnings[0]


def test_the_graph_records_the_weights_it_was_made_from(nano, tmp_path):
    path = export_onnx(nano, tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["weights_digest"] == model_digest(nano)
    assert graph_problem(path, model_digest(nano)) is None
    torch.manual_seed(2)
    assert graph_problem(path, model_digest(create_model("swinface_nano"))) is not None


def test_a_graph_from_an_older_export_is_made_again(nano, caplog):
    path = cached_onnx_graph(nano)
    graph = onnx.load(str(path))
    for prop in graph.metadata_props:
        if prop.key == "export_version":
            prop.value = "1"
    onnx.save(graph, str(path))
    assert "older export" in graph_problem(path, model_digest(nano))
    with caplog.at_level(logging.WARNING, logger="swinface.export"):
        assert cached_onnx_graph(nano) == path
    assert any("older export" in r.getMessage() for r in caplog.records)
    assert graph_problem(path, model_digest(nano)) is None
