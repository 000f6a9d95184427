"""The published checkpoint layout loads and reproduces the reference outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import swinface
from swinface import tasks
from swinface.weights.synthetic import (
    deterministic_checkpoint,
    deterministic_input,
    published_manifest,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _outputs(model, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in model(torch.from_numpy(x)).unpack().items()}


def test_manifest_matches_the_published_checkpoint():
    expected = json.loads((FIXTURES / "conformance" / "checkpoint_manifest.json").read_text())
    assert published_manifest() == expected


def test_reference_input_recipe(reference_outputs):
    np.testing.assert_array_equal(deterministic_input().numpy(), reference_outputs["input"])


def test_published_checkpoint_gives_reference_outputs(published_checkpoint, reference_outputs):
    model = swinface.load_model(published_checkpoint, device="cpu")
    got = _outputs(model, reference_outputs["input"])
    assert set(got) == {o.name for o in tasks.ALL_OUTPUTS}
    for name, value in got.items():
        np.testing.assert_allclose(value, reference_outputs[name], rtol=0, atol=1e-4, err_msg=name)


def test_computed_buffers_may_be_absent(tmp_path, reference_outputs):
    path = tmp_path / "no_buffers.pt"
    torch.save(deterministic_checkpoint(include_computed=False), path)
    got = _outputs(swinface.load_model(path, device="cpu"), reference_outputs["input"])
    np.testing.assert_allclose(got["Age"], reference_outputs["Age"], atol=1e-4)


def test_native_round_trip_is_identical(conformance_model, native_weights, reference_outputs):
    reloaded = swinface.load_model(native_weights, device="cpu")
    a = _outputs(conformance_model, reference_outputs["input"])
    b = _outputs(reloaded, reference_outputs["input"])
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert reloaded.weights_info.format == "safetensors"
    assert reloaded.weights_info.verify_threshold == pytest.approx(0.3)


def test_half_precision_native_file_stays_close(tmp_path, conformance_model, reference_outputs):
    from swinface.weights import save_native

    path = tmp_path / "half.safetensors"
    save_native(conformance_model, path, half=True)
    assert path.stat().st_size < 0.6 * 4 * sum(p.numel() for p in conformance_model.parameters())
    got = _outputs(swinface.load_model(path, device="cpu"), reference_outputs["input"])
    np.testing.assert_allclose(got["Recognition"], reference_outputs["Recognition"], atol=0.05)


def test_published_layout_round_trips(tmp_path, conformance_model, reference_outputs):
    from swinface.weights import save_published

    path = tmp_path / "again.pt"
    save_published(conformance_model, path)
    got = _outputs(swinface.load_model(path, device="cpu"), reference_outputs["input"])
    np.testing.assert_allclose(got["Expression"], reference_outputs["Expression"], atol=1e-4)
