"""int8 weights per output channel, checksummed parts, and the agreement figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from swinface.evaluate.agreement import agreement
from swinface.model import create_model
from swinface.weights.formats import (
    CheckpointError,
    dequantize_per_channel,
    quantize_per_channel,
    read_native,
    save_native,
)
from swinface.weights.loading import load_model
from swinface.weights.parts import PartsError, join_parts, split_file


def test_per_channel_int8_error_is_bounded_by_each_channels_own_scale():
    torch.manual_seed(0)
    w = torch.randn(8, 5, 3, 3) * torch.logspace(-3, 1, 8)[:, None, None, None]  # a conv
    q, scale = quantize_per_channel(w)
    assert q.dtype == torch.int8 and scale.shape == (8, 1, 1, 1)
    err = (dequantize_per_channel(q, scale) - w).abs().amax(dim=(1, 2, 3))
    assert torch.all(err <= scale.flatten() / 2 + 1e-12)
    assert torch.all(err < 0.01 * w.abs().amax(dim=(1, 2, 3)))


def test_an_int8_file_is_a_quarter_the_size_and_loads_everywhere(tmp_path):
    torch.manual_seed(0)
    model = create_model("swinface_nano").eval()
    full, small = tmp_path / "full.safetensors", tmp_path / "int8.safetensors"
    save_native(model, full)
    save_native(model, small, int8=True)
    assert small.stat().st_size < 0.3 * full.stat().st_size
    state, meta = read_native(small)
    assert json.loads(meta["int8_per_channel"]) and all(
        v.dtype != torch.int8 for v in state.values()
    )
    loaded = load_model(str(small), device="cpu", download=False)
    faces = torch.randint(0, 256, (4, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        a, b = model(model.preprocess(faces)), loaded(loaded.preprocess(faces))
    cos = torch.nn.functional.cosine_similarity(a.embedding, b.embedding)
    assert float(cos.min()) > 0.99


def test_int8_tensor_without_scales_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "int8.safetensors"
    save_native(create_model("swinface_nano"), path, int8=True)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("int8_scale.")}
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="without its scales"):
        read_native(path)


def test_parts_round_trip_and_a_damaged_part_is_named(tmp_path):
    data = np.random.default_rng(0).bytes(10_000)
    source = tmp_path / "w.bin"
    source.write_bytes(data)
    manifest = split_file(source, tmp_path / "parts", part_bytes=3000, compress=False)
    parts = sorted((tmp_path / "parts").glob("w.bin.part[0-9]*"))
    assert [p.stat().st_size for p in parts] == [3000, 3000, 3000, 1000]
    assert join_parts(manifest, tmp_path / "back.bin").read_bytes() == data
    damaged = bytearray(parts[2].read_bytes())
    damaged[5] ^= 1
    parts[2].write_bytes(bytes(damaged))
    with pytest.raises(PartsError, match=r"w\.bin\.part02: damaged"):
        join_parts(manifest, tmp_path / "again.bin")
    assert not (tmp_path / "again.bin").exists()
    parts[1].unlink()
    with pytest.raises(PartsError, match=r"w\.bin\.part01: missing"):
        join_parts(manifest, tmp_path / "again.bin")


def test_agreement_figures():
    rng = np.random.default_rng(0)
    from swinface import tasks

    ref = {o.name: rng.random((10, o.size)) for o in tasks.ALL_OUTPUTS}
    ref["Age"] = rng.random(10) * 60
    ref[tasks.RECOGNITION.name] = rng.normal(size=(10, 512))
    same = agreement(ref, ref)
    assert same.embedding_cosine_min == pytest.approx(1.0) and same.meets()
    other = {k: v.copy() for k, v in ref.items()}
    other["Age"] = other["Age"] + 1.0
    other["Expression"] = other["Expression"][::-1]
    worse = agreement(ref, other)
    assert worse.age_difference_mean == pytest.approx(1.0) and not worse.meets()


def test_compressed_parts_are_smaller_and_give_back_the_same_file(tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 16, 50_000, dtype=np.uint8))
    source = tmp_path / "w.bin"
    source.write_bytes(data)
    manifest = split_file(source, tmp_path / "parts", part_bytes=8000)
    sizes = [p.stat().st_size for p in (tmp_path / "parts").glob("w.bin.part[0-9]*")]
    assert sum(sizes) < 0.7 * len(data) and max(sizes) <= 8000
    assert join_parts(manifest, tmp_path / "back.bin").read_bytes() == data


def test_stacked_group_matrices_get_a_scale_per_group_and_row():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 16)
    w[0, 0] *= 1000  # one huge row must not coarsen the others
    q, scale = quantize_per_channel(w)
    assert scale.shape == (3, 4, 1)
    err = (dequantize_per_channel(q, scale) - w).abs().amax(dim=2)
    assert torch.all(err[0, 1:] < 0.05) and torch.all(err[1:] < 0.05)
