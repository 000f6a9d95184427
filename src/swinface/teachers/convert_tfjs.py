"""face-api.js expression and age/gender networks (TF.js weights) to ONNX.

The sources are the `model/` folder of npm `@vladmandic/face-api` 1.7.15
(`npm pack @vladmandic/face-api@1.7.15`; code and weights under the MIT
licence): `face_expression_model-weights_manifest.json` and
`age_gender_model-weights_manifest.json`, each beside its binary shard(s). The
manifest lists every tensor's name, shape, dtype and (uint8/uint16/float16)
quantisation; the tensors are read from the shards and dequantised as TF.js
does (`q * scale + min`). The networks are rebuilt in PyTorch following the
package's TypeScript (`src/faceFeatureExtractor`, `src/faceExpressionNet`,
`src/xception/TinyXception.ts`, `src/ageGenderNet`) and exported to ONNX.

Both graphs:

- input `faces`: float32, (N, 3, 112, 112), NCHW, RGB in [0, 255] (not
  normalised: the graph subtracts face-api's mean RGB (122.782, 117.001,
  104.298) and divides by 255 itself, as the package does); batch dynamic.
- crop: face-api's own: the face box (its `alignedRect`, a square-ish box
  around the 68 landmarks, not rotated), padded to a square with black borders
  centred (`padToSquare`), resized bilinearly to 112x112.

Expression (`convert(..., kind)` with kind "expression"; a densely connected
separable-convolution extractor of four blocks, not TinyXception):

- output `expression`: float32, (N, 7), softmax probabilities in the order
  neutral, happy, sad, angry, fearful, disgusted, surprised.

Age and gender (kind "age_gender"; TinyXception with two middle blocks):

- output `age`: float32, (N,), age in years (a regression, not clipped).
- output `gender`: float32, (N, 2), softmax probabilities in the order male,
  female (face-api reads index 0 as the probability of male).
"""

from __future__ import annotations

import json
from pathlib import Path

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

__all__ = [
    "AgeGenderNet",
    "EXPRESSION_LABELS",
    "FaceExpressionNet",
    "GENDER_LABELS",
    "MEAN_RGB",
    "build",
    "convert",
    "convert_age_gender",
    "convert_expression",
    "read_weights",
]

EXPRESSION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
GENDER_LABELS = ("male", "female")
MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_SIZE = 112
_MANIFESTS = {
    "expression": "face_expression_model-weights_manifest.json",
    "age_gender": "age_gender_model-weights_manifest.json",
}
_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "uint16": np.uint16}
_QUANTISED = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def _manifest_path(source: Path, kind: str) -> Path:
    if kind not in _MANIFESTS:
        raise ConversionError(f"unknown face-api model {kind!r}; one of {sorted(_MANIFESTS)}")
    source = Path(source)
    return source / _MANIFESTS[kind] if source.is_dir() else source


def read_weights(manifest: str | Path) -> dict[str, np.ndarray]:
    """The float32 tensors a TF.js weights manifest describes, by name, dequantised."""
    manifest = require_file(Path(manifest), "TF.js weights manifest")
    try:
        groups = json.loads(manifest.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConversionError(f"{manifest}: not a TF.js weights manifest ({err})") from err
    if not isinstance(groups, list):
        raise ConversionError(f"{manifest}: not a TF.js weights manifest (expected a list)")
    tensors: dict[str, np.ndarray] = {}
    for group in groups:
        shards = [require_file(manifest.parent / p, "TF.js weights shard") for p in group["paths"]]
        data = b"".join(p.read_bytes() for p in shards)
        offset = 0
        for spec in group["weights"]:
            quant = spec.get("quantization")
            dtype = _QUANTISED[quant["dtype"]] if quant else _DTYPES.get(spec["dtype"])
            if dtype is None:
                raise ConversionError(f"{manifest}: {spec['name']}: dtype {spec['dtype']!r}")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            size = count * np.dtype(dtype).itemsize
            if offset + size > len(data):
                raise ConversionError(
                    f"{shards[-1]}: truncated ({len(data)} bytes, {spec['name']} needs more)"
                )
            raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += size
            value = raw.astype(np.float32)
            if quant and quant["dtype"] != "float16":
                value = value * np.float32(quant["scale"]) + np.float32(quant["min"])
            tensors[spec["name"]] = value.reshape(spec["shape"])
        if offset != len(data):
            raise ConversionError(f"{shards[-1]}: {len(data) - offset} bytes left unread")
    return tensors


class _Weights:
    """Named tensors taken one by one, so that unused or missing ones are noticed."""

    def __init__(self, tensors: dict[str, np.ndarray], where: str) -> None:
        self.tensors, self.where, self.used = tensors, where, set()

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if name not in self.tensors:
            raise ConversionError(f"{self.where}: tensor {name!r} missing")
        value = self.tensors[name]
        if shape is not None and value.shape != shape:
            raise ConversionError(f"{self.where}: {name} has shape {value.shape}, not {shape}")
        self.used.add(name)
        return torch.from_numpy(np.ascontiguousarray(value))

    def check_all_used(self) -> None:
        unused = sorted(set(self.tensors) - self.used)
        if unused:
            raise ConversionError(f"{self.where}: tensors not in the network: {unused[:5]}")


def _conv(w: _Weights, prefix: str, stride: int) -> nn.Module:
    """face-api's conv: filters (kh, kw, in, out) + bias, "same" padding."""
    filters = w.take(f"{prefix}/filters")
    kh, kw, cin, cout = filters.shape
    conv = Conv2dSame(cin, cout, (kh, kw), stride=stride)
    conv.weight.data = filters.permute(3, 2, 0, 1).contiguous()
    conv.bias.data = w.take(f"{prefix}/bias", (cout,))
    return conv


def _separable(w: _Weights, prefix: str, stride: int) -> nn.Module:
    """`tf.separableConv2d(x, depthwise, pointwise, stride, 'same') + bias`."""
    depthwise = w.take(f"{prefix}/depthwise_filter")
    kh, kw, cin, mult = depthwise.shape
    pointwise = w.take(f"{prefix}/pointwise_filter")
    cout = pointwise.shape[3]
    dw = Conv2dSame(cin, cin * mult, (kh, kw), stride=stride, groups=cin, bias=False)
    dw.weight.data = depthwise.reshape(kh, kw, cin * mult).permute(2, 0, 1)[:, None].contiguous()
    pw = nn.Conv2d(cin * mult, cout, 1)
    pw.weight.data = pointwise.permute(3, 2, 0, 1).contiguous()
    pw.bias.data = w.take(f"{prefix}/bias", (cout,))
    return nn.Sequential(dw, pw)


def _linear(w: _Weights, prefix: str) -> nn.Linear:
    weights = w.take(f"{prefix}/weights")
    fc = nn.Linear(weights.shape[0], weights.shape[1])
    fc.weight.data = weights.T.contiguous()
    fc.bias.data = w.take(f"{prefix}/bias", (weights.shape[1],))
    return fc


class _Normalise(nn.Module):
    """face-api's input step: RGB 0-255 minus the mean RGB, over 255."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / 255.0


class _DenseBlock4(nn.Module):
    """`denseBlock4` of faceFeatureExtractor/denseBlock.ts (scale-down variant)."""

    def __init__(self, w: _Weights, prefix: str, first: bool) -> None:
        super().__init__()
        self.conv0 = (
            _conv(w, f"{prefix}/conv0", 2) if first else _separable(w, f"{prefix}/conv0", 2)
        )
        self.conv1 = _separable(w, f"{prefix}/conv1", 1)
        self.conv2 = _separable(w, f"{prefix}/conv2", 1)
        self.conv3 = _separable(w, f"{prefix}/conv3", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + (out2 + out3)))
        return F.relu(out1 + (out2 + (out3 + out4)))


class FaceExpressionNet(nn.Module):
    """faceExpressionNet: FaceFeatureExtractor (four dense blocks), 7x7 average pool, fc, softmax."""

    def __init__(self, tensors: dict[str, np.ndarray], where: str = "face_expression_model"):
        super().__init__()
        w = _Weights(tensors, where)
        self.normalise = _Normalise()
        self.blocks = nn.Sequential(*(_DenseBlock4(w, f"dense{i}", first=i == 0) for i in range(4)))
        self.fc = _linear(w, "fc")
        w.check_all_used()

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.normalise(faces))
        x = F.avg_pool2d(x, 7, 2)
        return torch.softmax(self.fc(x.flatten(1)), dim=1)


class _ReductionBlock(nn.Module):
    def __init__(self, w: _Weights, prefix: str, activate_input: bool) -> None:
        super().__init__()
        self.activate_input = activate_input
        self.separable_conv0 = _separable(w, f"{prefix}/separable_conv0", 1)
        self.separable_conv1 = _separable(w, f"{prefix}/separable_conv1", 1)
        self.pool = MaxPool2dSame((3, 3), (2, 2), "same")
        self.expansion_conv = _conv(w, f"{prefix}/expansion_conv", 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(x) if self.activate_input else x
        out = self.separable_conv1(F.relu(self.separable_conv0(out)))
        return self.pool(out) + self.expansion_conv(x)


class _MainBlock(nn.Module):
    def __init__(self, w: _Weights, prefix: str) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            _separable(w, f"{prefix}/separable_conv{i}", 1) for i in range(3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs:
            out = conv(F.relu(out))
        return out + x


class AgeGenderNet(nn.Module):
    """ageGenderNet: TinyXception(2), 7x7 average pool, age regression and gender softmax."""

    def __init__(self, tensors: dict[str, np.ndarray], where: str = "age_gender_model"):
        super().__init__()
        w = _Weights(tensors, where)
        main_blocks = sorted(
            {k.split("/")[1] for k in tensors if k.startswith("middle_flow/")},
            key=lambda name: int(name.rsplit("_", 1)[-1]),
        )
        self.normalise = _Normalise()
        self.conv_in = _conv(w, "entry_flow/conv_in", 2)
        self.entry = nn.Sequential(
            _ReductionBlock(w, "entry_flow/reduction_block_0", activate_input=False),
            _ReductionBlock(w, "entry_flow/reduction_block_1", activate_input=True),
        )
        self.middle = nn.Sequential(*(_MainBlock(w, f"middle_flow/{b}") for b in main_blocks))
        self.exit = _ReductionBlock(w, "exit_flow/reduction_block", activate_input=True)
        self.exit_conv = _separable(w, "exit_flow/separable_conv", 1)
        self.age = _linear(w, "fc/age")
        self.gender = _linear(w, "fc/gender")
        w.check_all_used()

    def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.conv_in(self.normalise(faces)))
        x = self.exit(self.middle(self.entry(x)))
        x = F.relu(self.exit_conv(x))
        x = F.avg_pool2d(x, 7, 2).flatten(1)
        return self.age(x)[:, 0], torch.softmax(self.gender(x), dim=1)


def build(source: str | Path, kind: str) -> nn.Module:
    """The PyTorch network for face-api's `kind` ("expression" or "age_gender").

    `source` is the package's `model/` folder or the model's manifest file.
    """
    manifest = _manifest_path(Path(source), kind)
    tensors = read_weights(manifest)
    net_class = FaceExpressionNet if kind == "expression" else AgeGenderNet
    return net_class(tensors, str(manifest)).eval()


def convert(source: Path, out: Path, kind: str = "expression") -> Path:
    """Convert face-api's `kind` model ("expression" or "age_gender") to ONNX at `out`.

    `source` is the package's `model/` folder or the model's manifest file; returns `out`.
    """
    net = build(source, kind)
    outputs = ["expression"] if kind == "expression" else ["age", "gender"]
    labels = (
        {"expression": list(EXPRESSION_LABELS)}
        if kind == "expression"
        else {"age": "years", "gender": list(GENDER_LABELS)}
    )
    return export_graph(
        net,
        torch.full((2, 3, INPUT_SIZE, INPUT_SIZE), 128.0),
        Path(out),
        input_name="faces",
        output_names=outputs,
        metadata={
            "source": _MANIFESTS[kind],
            "input": f"float32 RGB in [0, 255], (batch, 3, {INPUT_SIZE}, {INPUT_SIZE})",
            "labels": labels,
            "licence": "MIT",
        },
    )


def convert_expression(source: Path, out: Path) -> Path:
    """Convert face-api's expression model (`source`: `model/` or its manifest) to ONNX."""
    return convert(source, out, "expression")


def convert_age_gender(source: Path, out: Path) -> Path:
    """Convert face-api's age and gender model (`source`: `model/` or its manifest) to ONNX."""
    return convert(source, out, "age_gender")
