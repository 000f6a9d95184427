"""Using a caller's model without changing it.

Everything in swinface that receives a model (backends, export, benchmarks,
the pipeline) goes through these helpers, so that its parameters, buffers,
training mode, dtype, device and memory layout are exactly as they were
afterwards: inference runs in eval mode for the duration of a call only, and
a different device or dtype is reached through a copy, never by converting the
caller's model in place.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["eval_mode", "model_device", "model_dtype", "on_device", "working_copy"]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's parameters (float32 when it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU when it has none)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def on_device(model: nn.Module, device: torch.device) -> bool:
    """Whether the model already sits on `device` ('cuda' matches the current CUDA device)."""
    here = model_device(model)
    if here.type != device.type:
        return False
    if device.type != "cuda" or device.index is None:
        return True
    return here.index == device.index


def working_copy(
    model: nn.Module,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    channels_last: bool = False,
) -> nn.Module:
    """A copy of `model` in eval mode, on `device` in `dtype`; the original is untouched."""
    clone = copy.deepcopy(model)
    if device is not None or dtype is not None:
        clone = clone.to(device=device, dtype=dtype)
    if channels_last:
        clone = clone.to(memory_format=torch.channels_last)
    return clone.eval()


def _lock_for(model: nn.Module) -> threading.RLock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with every module of `model` in eval mode, then restore each one's own mode.

    A model already wholly in eval mode is used as is, concurrently. A model
    with any module in training mode is switched for the block only, under a
    lock per model, so that another thread never sees it half switched.
    """
    lock = _lock_for(model)
    lock.acquire()
    training = [m for m in model.modules() if m.training]
    if not training:
        lock.release()
        yield model
        return
    try:
        model.eval()
        yield model
    finally:
        for module in training:
            module.training = True
        lock.release()
