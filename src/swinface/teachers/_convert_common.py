"""Pieces shared by the teacher converters: TensorFlow's padding rule, ONNX export.

The teachers come from TensorFlow-family formats (Keras HDF5, TF.js layers)
whose "same" padding is not PyTorch's: when the total padding is odd, TF puts
the extra row and column at the bottom and right. The rebuilt networks run in
NCHW and pad the way TF does, so the converted graphs agree with the originals
to float rounding.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from swinface.errors import SwinFaceError

log = logging.getLogger(__name__)

ONNX_OPSET = 17


class ConversionError(SwinFaceError):
    """A teacher's source file is missing, unreadable or not the network expected."""


def require_file(path: Path, what: str) -> Path:
    """`path` as a Path, or a clear error naming it when it is not a readable file."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: {what} not found (no such file)")
    return path


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding for one axis: (before, after), the extra one after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], value: float = 0.0):
    """Pad an NCHW tensor as TF's "same" does for this kernel and stride."""
    top, bottom = tf_same_padding(int(x.shape[-2]), kernel[0], stride[0])
    left, right = tf_same_padding(int(x.shape[-1]), kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class Conv2dSame(nn.Conv2d):
    """`nn.Conv2d` with TF padding ("same" or "valid"); groups give depthwise convolutions."""

    def __init__(self, *args, tf_padding: str = "same", **kwargs) -> None:
        super().__init__(*args, padding=0, **kwargs)
        if tf_padding not in ("same", "valid"):
            raise ConversionError(f"unsupported padding {tf_padding!r}")
        self.tf_padding = tf_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_padding == "same":
            x = pad_same(x, self.kernel_size, self.stride)
        return super().forward(x)


class MaxPool2dSame(nn.Module):
    """TF max pooling; "same" pads with -inf so padding never wins."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int], tf_padding: str) -> None:
        super().__init__()
        self.kernel, self.stride, self.tf_padding = tuple(kernel), tuple(stride), tf_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_padding == "same":
            x = pad_same(x, self.kernel, self.stride, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


def export_graph(
    module: nn.Module,
    example: torch.Tensor,
    out: Path,
    *,
    input_name: str,
    output_names: Sequence[str],
    metadata: Mapping[str, object],
) -> Path:
    """Write `module` as an ONNX graph with a dynamic batch axis, atomically; returns `out`.

    `metadata` values that are not strings are stored as JSON.
    """
    from swinface.export import write_traced_graph

    out = Path(out)
    write_traced_graph(
        module.float().cpu().eval(),
        example,
        out,
        input_name=input_name,
        output_names=list(output_names),
        opset=ONNX_OPSET,
        metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()},
        check=True,
    )
    log.info("wrote %s (%.2f MB)", out, out.stat().st_size / 1e6)
    return out
