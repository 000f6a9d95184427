"""Deterministic SwinFace weights, by the recipe of the conformance specification.

Every tensor is filled from a generator seeded by the CRC-32 of its
`section/key` name, so any implementation can rebuild the same checkpoint
bit for bit. Used to prove conformance with the reference implementation and
to run the whole toolkit (tests, benchmarks) before real weights are at hand.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from swinface.model import SwinFace, create_model
from swinface.weights.formats import (
    _UNUSED_PUBLISHED,
    _computed_published_keys,
    published_checkpoint,
)


def published_manifest(model: SwinFace | None = None) -> dict[str, dict[str, dict]]:
    """Every key of the published checkpoint with its shape, dtype and whether it is computed."""
    model = model or create_model("swinface_t")
    computed = _computed_published_keys(model)
    manifest: dict[str, dict[str, dict]] = {}
    for section, state in published_checkpoint(model).items():
        manifest[section] = {
            k: {
                "shape": list(v.shape),
                "dtype": str(v.dtype).removeprefix("torch."),
                "computed": section == "state_dict_backbone" and k in computed,
            }
            for k, v in state.items()
        }
    assert set(_UNUSED_PUBLISHED) <= set(manifest["state_dict_backbone"])
    return manifest


def deterministic_value(section: str, key: str, shape: list[int], dtype: str) -> np.ndarray:
    """The recipe's value for one non-computed tensor."""
    n = int(np.prod(shape)) if shape else 1
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=dtype)
    u = np.random.Generator(np.random.PCG64(zlib.crc32(f"{section}/{key}".encode()))).random(n)
    if key.endswith("running_var"):
        v = 0.5 + u
    elif key.endswith("running_mean"):
        v = (u - 0.5) * 0.2
    elif key.endswith(("relative_position_bias_table", ".bias")):
        v = (u - 0.5) * 0.1
    elif key.endswith(".weight") and len(shape) == 1:
        v = 0.75 + 0.5 * u
    else:
        fan_in = n // shape[0]
        v = (u - 0.5) * 2 * math.sqrt(3) / math.sqrt(fan_in)
    return v.reshape(shape).astype(dtype)


def deterministic_checkpoint(include_computed: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """The conformance checkpoint in the published layout."""
    model = create_model("swinface_t")
    buffers = dict(model.named_buffers())
    checkpoint: dict[str, dict[str, torch.Tensor]] = {}
    for section, keys in published_manifest(model).items():
        state = {}
        for key, spec in keys.items():
            if spec["computed"]:
                if include_computed:
                    # Computed buffers sit in blocks, whose names the two layouts share.
                    state[key] = buffers["backbone.swin." + key].clone()
                continue
            state[key] = torch.from_numpy(
                deterministic_value(section, key, spec["shape"], spec["dtype"])
            )
        checkpoint[section] = state
    return checkpoint


def deterministic_input(batch: int = 4, size: int = 112) -> torch.Tensor:
    """The recipe's reference input: uniform in [-1, 1), float32, (batch, 3, size, size)."""
    rng = np.random.Generator(np.random.PCG64(zlib.crc32(b"input")))
    return torch.from_numpy((rng.random((batch, 3, size, size)) * 2 - 1).astype(np.float32))


def deterministic_model() -> SwinFace:
    """A SwinFace carrying the conformance weights, in eval mode."""
    from swinface.weights.formats import from_published

    model = create_model("swinface_t")
    model.load_state_dict(from_published(deterministic_checkpoint(include_computed=False), model))
    return model.eval()
