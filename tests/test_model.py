"""The network: shapes, the batched subnets against a plain per-group computation, training mode."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from swinface import tasks
from swinface.model import create_model


def test_nano_model_forward_backward():
    model = create_model("swinface_nano").train()
    x = torch.randn(2, 3, 112, 112)
    out = model(x)
    assert out.embedding.shape == (2, 64)
    assert out.logits.shape == (2, tasks.PACKED_SIZE)
    (out.embedding.sum() + out.logits.sum()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_batched_mlca_equals_per_group_subnets():
    """The batched MLCA computes exactly what 11 separate CBAM subnets compute."""
    torch.manual_seed(0)
    model = create_model("swinface_nano").eval()
    mlca, cfg = model.mlca, model.config
    with torch.no_grad():
        mlca.norm.running_mean.uniform_(-0.1, 0.1)
        mlca.norm.running_var.uniform_(0.5, 1.5)
    levels = torch.randn(3, sum(cfg.level_dims), 7, 7)
    got = mlca(levels)
    chunks = torch.split(levels, list(cfg.level_dims), dim=1)
    for g in range(cfg.num_groups):
        parts = []
        for level, (conv, width) in enumerate(zip(mlca.convs, cfg.level_widths, strict=True)):
            w = conv.weight[g * width : (g + 1) * width]
            parts.append(F.conv2d(chunks[level], w, padding=1))
        x = torch.cat(parts, dim=1)

        def mlp(v, g=g):
            h = F.relu(F.linear(v, mlca.gate_w1[g], mlca.gate_b1[g]))
            return F.linear(h, mlca.gate_w2[g], mlca.gate_b2[g])

        gate = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))
        x = F.relu(x * gate[:, :, None, None]).amax(dim=(2, 3))
        c = cfg.feature_dim
        sl = slice(g * c, (g + 1) * c)
        want = F.batch_norm(
            x,
            mlca.norm.running_mean[sl],
            mlca.norm.running_var[sl],
            mlca.norm.weight[sl],
            mlca.norm.bias[sl],
            eps=2e-5,
        )
        torch.testing.assert_close(got[:, g], want, rtol=1e-5, atol=1e-5)


def test_heads_pack_outputs_in_checkpoint_order():
    model = create_model("swinface_nano").eval()
    heads = model.heads
    features = torch.randn(2, model.config.num_groups, model.config.feature_dim)
    logits = heads(features)
    # Expression (output 3) belongs to group 2 and sits after Gender(2), Age(1), Young(2).
    expression = tasks.output_slices()["Expression"]
    assert (expression.start, expression.stop) == (5, 12)
    x = F.relu(torch.einsum("bc,dc->bd", features[:, 2], heads.fc1_w[2]) + heads.fc1_b[2])
    x = F.relu(torch.einsum("bc,dc->bd", x, heads.fc2_w[2]) + heads.fc2_b[2])
    # Group 2's rows: Expression first (7 rows), then Smiling (2 rows).
    want = x @ heads.out_w[2, :7].T + heads.out_b[2, :7]
    torch.testing.assert_close(logits[:, expression], want)


def test_padding_rows_start_at_zero():
    heads = create_model("swinface_nano").heads
    assert torch.all(heads.out_w[~heads.output_mask] == 0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_preprocess_leaves_its_input_unchanged(dtype):
    from swinface.model import SwinFace

    faces = torch.randint(0, 256, (2, 112, 112, 3)).to(dtype)
    before = faces.clone()
    x = SwinFace.preprocess(faces)
    assert torch.equal(faces, before)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 112, 112)
    assert x.min() >= -1 and x.max() <= 1


def test_bfloat16_model_runs_on_cpu():
    """A bfloat16 model runs in its own dtype (eager) or as a float32 graph (auto), unchanged."""
    from swinface.backends import TorchBackend
    from swinface.export import model_digest
    from swinface.inference import SwinFaceRunner

    torch.manual_seed(0)
    model = create_model("swinface_nano").eval()
    half = copy.deepcopy(model).to(torch.bfloat16)
    assert model_digest(half) != model_digest(model)
    faces = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), np.uint8)
    ref = SwinFaceRunner(model, device="cpu", backend="eager").run(faces)
    eager = SwinFaceRunner(half, device="cpu", backend="eager")
    assert eager.precision == "bfloat16"
    as_float = TorchBackend(half, torch.device("cpu"), "float32")
    auto = SwinFaceRunner(half, device="cpu", backend="auto")
    assert auto.backend.name in ("onnxruntime", "openvino")  # the float32 graph, exported
    for out in (eager.run(faces), as_float(torch.from_numpy(faces)), auto.run(faces)):
        cos = F.cosine_similarity(out.embedding, ref.embedding)
        assert cos.min() > 0.99
        assert out.embedding.dtype == torch.float32
    assert next(half.parameters()).dtype == torch.bfloat16
