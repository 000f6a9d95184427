"""dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) to ONNX.

The source ships in PyPI `face-recognition-models` 0.3.0
(`face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat`;
the model by Davis King, released into the public domain, CC0). The file is
dlib's own serialisation of its `loss_metric` network (dlib's
`dnn_face_recognition_ex.cpp`): a ResNet-34-like stack of 29 convolutions with
affine (frozen batch-norm) layers, 2x2 average-pooled shortcuts, a global
average pool and a 128-d linear layer without bias. This module reads that
format itself (dlib's variable-length integers, mantissa/exponent floats and
raw little-endian float32 tensors), checks the layer sequence against that
architecture, rebuilds it in PyTorch and exports it to ONNX. No dlib needed.

The converted graph:

- input `faces`: float32, (N, 3, 150, 150), NCHW, RGB in [0, 255] (not
  normalised: the graph subtracts dlib's mean RGB (122.782, 117.001, 104.298)
  and divides by 256, as dlib's `input_rgb_image_sized<150>` does); batch dynamic.
- crop: dlib's face chip, 150x150 with padding 0.25, cut from dlib's 5- or
  68-point landmarks by dlib's alignment (`dlib.get_face_chip(image, shape,
  size=150, padding=0.25)`, what `compute_face_descriptor` uses).
- output `embedding`: float32, (N, 128), the descriptor as dlib returns it
  (not normalised; dlib's rule: same person when the Euclidean distance < 0.6).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from swinface.teachers._convert_common import ConversionError, export_graph, require_file

__all__ = ["DlibResNet", "convert", "read_dlib_net"]

INPUT_SIZE = 150
_SPECIAL_EXPONENTS = {32000: np.inf, 32001: -np.inf, 32002: np.nan, 32003: np.nan}


@dataclasses.dataclass
class DlibLayer:
    """One layer's details as stored: its kind, integer settings and tensors."""

    kind: str
    ints: tuple[int, ...] = ()
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None


class _Reader:
    """dlib's `serialize` primitives over a byte buffer."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def fail(self, what: str) -> ConversionError:
        return ConversionError(f"{self.where}: {what} at byte {self.pos}")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("file ends early (truncated?)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        head = self.take(1)[0]
        size = head & 0x0F
        if size > 8 or head & 0x70:
            raise self.fail(f"not a dlib integer (header byte {head:#x})")
        value = int.from_bytes(self.take(size), "little")
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent in _SPECIAL_EXPONENTS:
            return float(_SPECIAL_EXPONENTS[exponent])
        return float(mantissa * 2.0**exponent)

    def string(self) -> str:
        size = self.int()
        if not 0 <= size <= 256:
            raise self.fail(f"implausible string length {size}")
        try:
            return self.take(size).decode("ascii")
        except UnicodeDecodeError as err:
            raise self.fail("not a dlib string") from err

    def bool(self) -> bool:
        value = self.take(1)
        if value not in (b"0", b"1"):
            raise self.fail(f"not a dlib bool ({value!r})")
        return value == b"1"

    def tensor(self) -> np.ndarray:
        if (version := self.int()) != 2:
            raise self.fail(f"tensor format version {version}, expected 2")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, ...]:
        if (version := self.int()) != 1:
            raise self.fail(f"alias_tensor format version {version}, expected 1")
        return tuple(self.int() for _ in range(4))


def _split(params: np.ndarray, first: tuple[int, ...], second: tuple[int, ...]):
    """Two alias tensors laid end to end in one parameter tensor (dlib's layout)."""
    flat = params.reshape(-1)
    n1, n2 = int(np.prod(first)), int(np.prod(second))
    if n1 + n2 != flat.size:
        raise ConversionError(f"parameter tensor of {flat.size} values, expected {n1 + n2}")
    return flat[:n1].reshape(first), flat[n1 : n1 + n2].reshape(second) if n2 else None


def _details(r: _Reader) -> DlibLayer:
    """One layer's details, after its version string."""
    kind = r.string()
    if kind == "con_4":
        params = r.tensor()
        ints = tuple(r.int() for _ in range(7))  # filters, nr, nc, stride y/x, padding y/x
        filters, biases = r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        w, b = _split(params, filters, biases)
        return DlibLayer("con", ints, w, b)
    if kind == "affine_":
        params = r.tensor()
        gamma, beta = r.alias(), r.alias()
        if r.int() != 0:
            raise r.fail("affine layer in fully-connected mode; expected convolution mode")
        g, b = _split(params, gamma, beta)
        return DlibLayer("affine", (), g.reshape(-1), b.reshape(-1))
    if kind in ("max_pool_2", "avg_pool_2"):
        return DlibLayer(kind[:-2], tuple(r.int() for _ in range(6)))  # nr, nc, stride, padding
    if kind in ("relu_", "add_prev_"):
        return DlibLayer(kind[:-1])
    if kind == "fc_2":
        outputs, inputs = r.int(), r.int()
        params = r.tensor()
        weights, biases = r.alias(), r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        w, b = _split(params, weights, biases)
        return DlibLayer("fc", (outputs, inputs, bias_mode), w.reshape(inputs, outputs), b)
    raise r.fail(f"layer kind {kind!r} is not part of dlib's face recognition ResNet")


def read_dlib_net(source: str | Path) -> tuple[tuple[float, float, float], list[DlibLayer]]:
    """The input layer's mean RGB and the layers, input side first, of a dlib metric net."""
    source = require_file(Path(source), "dlib network file")
    r = _Reader(source.read_bytes(), str(source))
    if r.int() != 1 or (loss := r.string()) != "loss_metric_2":
        raise r.fail("not a dlib loss_metric network (expected 'loss_metric_2')")
    r.float(), r.float()  # the training margin and distance threshold
    # Layers serialise their subnetwork first: a run of format versions, then the input layer.
    innermost = None
    while True:
        start = r.pos
        version = r.int()
        if version not in (1, 2, 3):  # the input layer's name begins: its length
            r.pos = start
            break
        innermost = version
    if r.string() != "input_rgb_image_sized" or innermost not in (2, 3):
        raise r.fail(f"{loss}: expected an input_rgb_image_sized input layer")
    mean = (r.float(), r.float(), r.float())
    if (size := (r.int(), r.int())) != (INPUT_SIZE, INPUT_SIZE):
        raise r.fail(f"input size {size}, expected {INPUT_SIZE}x{INPUT_SIZE}")
    layers = []
    while r.pos < len(r.data):
        layers.append(_details(r))
        for _ in range(3):  # setup called, gradient stale, getters disabled
            r.bool()
        for _ in range(3):  # x_grad, cached output, grad_final/params_grad: empty when saved clean
            r.tensor()
        if len(layers) == 1 and innermost == 3:
            r.int()  # the sample expansion factor of the input-side layer
    return mean, layers


class _Affine(nn.Module):
    def __init__(self, layer: DlibLayer) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(layer.weights.copy()).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(layer.bias.copy()).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _conv(layer: DlibLayer) -> nn.Conv2d:
    filters, nr, nc, sy, sx, py, px = layer.ints
    conv = nn.Conv2d(layer.weights.shape[1], filters, (nr, nc), (sy, sx), (py, px))
    conv.weight.data = torch.from_numpy(layer.weights.copy())
    conv.bias.data = torch.from_numpy(layer.bias.reshape(-1).copy())
    return conv


class _Block(nn.Module):
    """dlib's `ares` / `ares_down`: relu(block(x) + x), or + avg_pool(x) when striding.

    dlib adds tensors of different sizes as if the smaller were zero-padded at the
    end (channels, rows, columns), which the shortcut of a widening block relies on.
    """

    def __init__(self, layers: list[DlibLayer]) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(layers[0]), _Affine(layers[1])
        self.conv2, self.bn2 = _conv(layers[3]), _Affine(layers[4])
        self.pool = None
        if layers[5].kind == "avg_pool":
            nr, nc, sy, sx, py, px = layers[5].ints
            if (py, px) != (0, 0):
                raise ConversionError(f"shortcut pooling with padding {py, px} is not supported")
            self.pool = nn.AvgPool2d((nr, nc), (sy, sx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = self.pool(x) if self.pool is not None else x
        return F.relu(_add_padded(out, shortcut))


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    k, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, k - t.shape[1]))

    return pad(a) + pad(b)


_STEM = ("con", "affine", "relu", "max_pool")
_PLAIN = ("con", "affine", "relu", "con", "affine", "add_prev", "relu")
_DOWN = ("con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu")


class DlibResNet(nn.Module):
    """dlib's face recognition ResNet, rebuilt from the layers `read_dlib_net` returns."""

    def __init__(self, mean: tuple[float, float, float], layers: list[DlibLayer], where: str):
        super().__init__()
        kinds = [layer.kind for layer in layers]
        if tuple(kinds[:4]) != _STEM or kinds[-2:] != ["avg_pool", "fc"]:
            raise ConversionError(f"{where}: not dlib's face recognition ResNet ({kinds[:4]}...)")
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.stem_conv, self.stem_bn = _conv(layers[0]), _Affine(layers[1])
        nr, nc, sy, sx, py, px = layers[3].ints
        self.stem_pool = nn.MaxPool2d((nr, nc), (sy, sx), (py, px))
        blocks, i = [], 4
        while i < len(layers) - 2:
            pattern = _DOWN if tuple(kinds[i : i + len(_DOWN)]) == _DOWN else _PLAIN
            if tuple(kinds[i : i + len(pattern)]) != pattern:
                raise ConversionError(f"{where}: unexpected layers {kinds[i : i + 8]} at {i}")
            blocks.append(_Block(layers[i : i + len(pattern)]))
            i += len(pattern)
        self.blocks = nn.Sequential(*blocks)
        pool, fc = layers[-2], layers[-1]
        if pool.ints[:2] != (0, 0) or fc.bias is not None:
            raise ConversionError(f"{where}: expected a global average pool and fc without bias")
        self.fc = nn.Linear(fc.weights.shape[0], fc.weights.shape[1], bias=False)
        self.fc.weight.data = torch.from_numpy(fc.weights.T.copy())

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = (faces - self.mean) / 256.0
        x = self.stem_pool(F.relu(self.stem_bn(self.stem_conv(x))))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def convert(source: Path, out: Path) -> Path:
    """Convert `dlib_face_recognition_resnet_model_v1.dat` to ONNX at `out`; returns `out`."""
    mean, layers = read_dlib_net(source)
    net = DlibResNet(mean, layers, str(source))
    convs = sum(layer.kind == "con" for layer in layers)
    return export_graph(
        net,
        torch.full((2, 3, INPUT_SIZE, INPUT_SIZE), 128.0),
        Path(out),
        input_name="faces",
        output_names=["embedding"],
        metadata={
            "source": Path(source).name,
            "input": f"float32 RGB in [0, 255], (batch, 3, {INPUT_SIZE}, {INPUT_SIZE})",
            "crop": "dlib face chip, 150x150, padding 0.25",
            "layers": f"{convs} convolutions",
            "licence": "CC0-1.0",
        },
    )
