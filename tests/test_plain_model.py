"""The plain, module-per-subnet SwinFace (the benchmark's reference) and the CPU convolution path."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from swinface import tasks
from swinface.export import export_onnx
from swinface.model import create_model
from swinface.model.plain import PlainSwinFace


def test_plain_model_gives_the_conformance_reference_outputs(conformance_model, reference_outputs):
    plain = PlainSwinFace(conformance_model)
    with torch.no_grad():
        got = plain(torch.from_numpy(reference_outputs["input"])).unpack()
    for out in tasks.ALL_OUTPUTS:
        np.testing.assert_allclose(
            got[out.name].numpy(), reference_outputs[out.name], atol=1e-4, err_msg=out.name
        )


def test_plain_model_leaves_the_given_model_as_it_was():
    model = create_model("swinface_nano").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = PlainSwinFace(model)
    assert model.training and all(m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
    assert not any(m.fused_attn for m in plain.modules() if hasattr(m, "fused_attn"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_mlca_takes_any_input_layout_on_cpu():
    """A channels-last multi-level map (what the backbone's permutes give) and a contiguous
    one give the same features, equal to the stacked convolutions'."""
    torch.manual_seed(0)
    model = create_model("swinface_nano").eval()
    mlca, cfg = model.mlca, model.config
    levels = torch.randn(2, sum(cfg.level_dims), 7, 7)
    with torch.no_grad():
        a = mlca(levels)
        b = mlca(levels.contiguous(memory_format=torch.channels_last))
        chunks = torch.split(levels, list(cfg.level_dims), dim=1)
        stacked = torch.cat([conv(c) for conv, c in zip(mlca.convs, chunks, strict=True)], 1)
        per_group = torch.cat(
            [
                mlca._level_conv(conv, c, w)
                for conv, c, w in zip(mlca.convs, chunks, cfg.level_widths, strict=True)
            ],
            1,
        )
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(per_group, stacked, rtol=0, atol=1e-5)


def test_exported_graph_keeps_the_stacked_convolutions(tmp_path):
    """Graph runtimes lay weights out once: the export has one convolution per level, not 44."""
    model = create_model("swinface_nano").eval()
    graph = onnx.load(str(export_onnx(model, tmp_path / "nano.onnx")))
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    assert len(convs) == 1 + len(model.config.level_dims)  # the patch embedding, then the levels
