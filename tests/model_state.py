"""Check that code which borrows a model leaves it exactly as it was.

    before = snapshot(model)
    anything_that_takes(model)
    assert_unchanged(model, before)

Compared: every state-dict entry and every buffer (persistent or not) bit for
bit, each module's training flag, and each parameter's and buffer's dtype,
device, strides, storage address and `requires_grad`: a tensor moved or
converted in place and back is a change too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelSnapshot:
    values: dict[str, torch.Tensor]
    modes: dict[str, bool]
    layout: dict[str, tuple]
    attributes: dict[str, object]


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors = {f"param {n}": p for n, p in model.named_parameters()}
    tensors |= {f"buffer {n}": b for n, b in model.named_buffers()}
    return tensors


def snapshot(model: nn.Module) -> ModelSnapshot:
    values = {f"state {k}": v.detach().clone() for k, v in model.state_dict().items()}
    values |= {k: v.detach().clone() for k, v in _tensors(model).items()}
    layout = {
        k: (v.dtype, v.device, v.stride(), v.data_ptr(), v.requires_grad)
        for k, v in _tensors(model).items()
    }
    return ModelSnapshot(
        values=values,
        modes={name or "<model>": m.training for name, m in model.named_modules()},
        layout=layout,
        attributes={k: v for k, v in vars(model).items() if not k.startswith("_")},
    )


def differences(model: nn.Module, before: ModelSnapshot) -> list[str]:
    """What changed since `before`, one line per difference (empty when nothing did)."""
    after = snapshot(model)
    problems = []
    for label, old, new in (
        ("modes", before.modes, after.modes),
        ("layout", before.layout, after.layout),
        ("attributes", before.attributes, after.attributes),
    ):
        for key in sorted(set(old) | set(new)):
            if old.get(key, "<absent>") != new.get(key, "<absent>"):
                problems.append(f"{label} {key}: {old.get(key, '<absent>')} -> {new.get(key)}")
    for key in sorted(set(before.values) | set(after.values)):
        a, b = before.values.get(key), after.values.get(key)
        if a is None or b is None:
            problems.append(f"{key}: {'added' if a is None else 'removed'}")
        elif a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a.cpu(), b.cpu()):
            problems.append(f"{key}: values changed")
    return problems


def assert_unchanged(model: nn.Module, before: ModelSnapshot) -> None:
    problems = differences(model, before)
    shown = "\n  ".join(problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    assert not problems, f"the model was changed:\n  {shown}{more}"
