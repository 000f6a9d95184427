"""Checkpoint formats: the published `torch.save` dict and the native safetensors file.

The published checkpoint holds four state dicts (`state_dict_backbone`,
`state_dict_fam`, `state_dict_tss`, `state_dict_om`) laid out as the reference
code's modules: one module per group and per output. Our model stacks those
over a group axis, so loading is a key mapping plus stacking; saving to the
published layout is the inverse. Both directions live here and nowhere else.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from swinface import tasks
from swinface.atomic import atomic_path
from swinface.errors import SwinFaceError
from swinface.model import SwinFace, SwinFaceConfig
from swinface.model.heads import output_layout

PUBLISHED_SECTIONS = ("state_dict_backbone", "state_dict_fam", "state_dict_tss", "state_dict_om")
NATIVE_FORMAT = "swinface"
NATIVE_FORMAT_VERSION = 1
# Present in the published backbone but not used by the model.
_UNUSED_PUBLISHED = ("head.weight", "head.bias")
# Buffers the model derives from its configuration; a checkpoint may carry them.
_COMPUTED_SUFFIXES = ("relative_position_index", "attn_mask")
_SHOW = 5  # offenders listed in an error


class CheckpointError(SwinFaceError, ValueError):
    """A checkpoint file that cannot be loaded into the model, and why."""


# ---------------------------------------------------------------- key mapping


def _backbone_key_to_native(key: str) -> str:
    # The reference Swin keeps each patch merging at the end of its stage;
    # timm puts it at the start of the next one.
    key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", key)
    if key.startswith("feature."):
        return "embedding_head." + key[len("feature.") :]
    return "backbone.swin." + key


def _backbone_key_to_published(key: str) -> str | None:
    if key.startswith("embedding_head."):
        return "feature." + key[len("embedding_head.") :]
    if not key.startswith("backbone.swin."):
        return None
    key = key[len("backbone.swin.") :]
    return re.sub(
        r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key
    )


def _group_slices(config: SwinFaceConfig) -> Iterable[tuple[str, str, str, int | None]]:
    """(section, published key, native key, conv level or None) for the stacked tensors."""
    g = config.num_groups
    for i in range(g):
        for level in range(len(config.level_dims)):
            yield (
                "state_dict_fam",
                f"nets.{i}.conv.convs.{level}.weight",
                f"mlca.convs.{level}.weight",
                level,
            )
        for pub, nat in (
            ("mlp.1.weight", "gate_w1"),
            ("mlp.1.bias", "gate_b1"),
            ("mlp.3.weight", "gate_w2"),
            ("mlp.3.bias", "gate_b2"),
        ):
            yield "state_dict_fam", f"nets.{i}.channel_attention.{pub}", f"mlca.{nat}", None
        for stat in ("weight", "bias", "running_mean", "running_var"):
            yield "state_dict_fam", f"nets.{i}.norm.{stat}", f"mlca.norm.{stat}", None
        for pub, nat in (
            ("0.weight", "fc1_w"),
            ("0.bias", "fc1_b"),
            ("3.weight", "fc2_w"),
            ("3.bias", "fc2_b"),
        ):
            yield "state_dict_tss", f"nets.{i}.feature.{pub}", f"heads.{nat}", None


def _stacked_view(
    native: torch.Tensor, group: int, native_key: str, level: int | None, config: SwinFaceConfig
) -> torch.Tensor:
    """The part of a stacked native tensor that one group's published tensor maps to."""
    if level is not None:  # conv weights: groups side by side on the output channels
        width = config.level_widths[level]
        return native[group * width : (group + 1) * width]
    if native_key.startswith("mlca.norm."):  # BatchNorm over all groups' channels
        width = config.feature_dim
        return native[group * width : (group + 1) * width]
    return native[group]


def _group_of(published_key: str) -> int:
    return int(published_key.split(".")[1])


def to_published(
    state: Mapping[str, torch.Tensor], config: SwinFaceConfig
) -> dict[str, dict[str, torch.Tensor]]:
    """Native state dict to the published four-section layout (without unused or computed keys)."""
    out: dict[str, dict[str, torch.Tensor]] = {s: {} for s in PUBLISHED_SECTIONS}
    for key, value in state.items():
        pub = _backbone_key_to_published(key)
        if pub is not None:
            out["state_dict_backbone"][pub] = value.clone()
    for section, pub, nat, level in _group_slices(config):
        out[section][pub] = _stacked_view(state[nat], _group_of(pub), nat, level, config).clone()
    for i in range(config.num_groups):
        out["state_dict_fam"][f"nets.{i}.norm.num_batches_tracked"] = state[
            "mlca.norm.num_batches_tracked"
        ].clone()
    _, layout = output_layout(config.num_groups)
    for i, (group, row, size) in enumerate(layout):
        out["state_dict_om"][f"output_fcs.{i}.weight"] = state["heads.out_w"][
            group, row : row + size
        ].clone()
        out["state_dict_om"][f"output_fcs.{i}.bias"] = state["heads.out_b"][
            group, row : row + size
        ].clone()
    return out


def from_published(
    checkpoint: Mapping[str, Mapping[str, torch.Tensor]], model: SwinFace
) -> dict[str, torch.Tensor]:
    """Published four-section checkpoint to a native state dict for `model`.

    Validates first: every missing, unexpected or mis-shaped key is reported,
    the first few by name with the expected shape.
    """
    config = model.config
    template = {k: v for k, v in model.state_dict().items()}
    expected = to_published(template, config)
    computed = _computed_published_keys(model)
    _validate_published(checkpoint, expected, computed)

    state = {k: v.clone() for k, v in template.items()}
    backbone = checkpoint["state_dict_backbone"]
    for key, value in backbone.items():
        if key in _UNUSED_PUBLISHED or key.endswith(_COMPUTED_SUFFIXES):
            continue
        state[_backbone_key_to_native(key)] = value
    for section, pub, nat, level in _group_slices(config):
        _stacked_view(state[nat], _group_of(pub), nat, level, config).copy_(
            checkpoint[section][pub]
        )
    state["mlca.norm.num_batches_tracked"] = checkpoint["state_dict_fam"][
        "nets.0.norm.num_batches_tracked"
    ]
    _, layout = output_layout(config.num_groups)
    out_w, out_b = state["heads.out_w"].zero_(), state["heads.out_b"].zero_()
    for i, (group, row, size) in enumerate(layout):
        out_w[group, row : row + size] = checkpoint["state_dict_om"][f"output_fcs.{i}.weight"]
        out_b[group, row : row + size] = checkpoint["state_dict_om"][f"output_fcs.{i}.bias"]
    return state


def _computed_published_keys(model: SwinFace) -> dict[str, tuple[int, ...]]:
    """Published names and shapes of the buffers the model computes itself."""
    keys = {}
    for name, buf in model.named_buffers():
        if name.endswith(_COMPUTED_SUFFIXES) and name.startswith("backbone.swin."):
            keys[_backbone_key_to_published(name)] = tuple(buf.shape)
    return keys


def _validate_published(
    checkpoint: Mapping,
    expected: dict[str, dict[str, torch.Tensor]],
    computed: dict[str, tuple[int, ...]],
) -> None:
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"expected a dict with {', '.join(PUBLISHED_SECTIONS)}, got {type(checkpoint).__name__}"
        )
    absent = [s for s in PUBLISHED_SECTIONS if s not in checkpoint]
    if absent:
        raise CheckpointError(
            f"not a SwinFace checkpoint: missing section(s) {', '.join(absent)} "
            f"(found: {', '.join(map(str, list(checkpoint)[:8])) or 'nothing'})"
        )
    missing, unexpected, misshaped = [], [], []
    for section in PUBLISHED_SECTIONS:
        got = checkpoint[section]
        want = expected[section]
        optional = computed if section == "state_dict_backbone" else {}
        for key, tensor in want.items():
            if key not in got:
                missing.append(f"{section}/{key} {list(tensor.shape)}")
        for key, value in got.items():
            if not isinstance(value, torch.Tensor):
                unexpected.append(f"{section}/{key} (not a tensor: {type(value).__name__})")
            elif key in want:
                if tuple(value.shape) != tuple(want[key].shape):
                    misshaped.append(
                        f"{section}/{key}: {list(value.shape)}, expected {list(want[key].shape)}"
                    )
            elif key in optional:
                if tuple(value.shape) != optional[key]:
                    misshaped.append(
                        f"{section}/{key}: {list(value.shape)}, expected {list(optional[key])}"
                    )
            elif not (section == "state_dict_backbone" and key in _UNUSED_PUBLISHED):
                unexpected.append(f"{section}/{key}")
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", misshaped),
    ):
        if items:
            more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
            problems.append(f"{len(items)} {label} key(s): {'; '.join(items[:_SHOW])}{more}")
    if problems:
        raise CheckpointError(
            "checkpoint does not match the SwinFace architecture: " + " | ".join(problems)
        )


# ---------------------------------------------------------------- files


def _describe(path: Path) -> str:
    return str(path)


def read_published(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Read a published `torch.save` checkpoint safely (`weights_only=True`: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{_describe(path)}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{_describe(path)}: file is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any global that is not a plain tensor container.
        raise CheckpointError(
            f"{_describe(path)}: refused to load: the file holds objects other than tensors "
            f"and could run code when unpickled ({_first_line(err)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{_describe(path)}: not a readable PyTorch checkpoint, "
            f"truncated or corrupt ({_first_line(err)})"
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{_describe(path)}: expected a dict of state dicts, got {type(obj).__name__}"
        )
    return obj  # type: ignore[return-value]


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def published_checkpoint(model: SwinFace) -> dict[str, dict[str, torch.Tensor]]:
    """The model as the published checkpoint holds it: every key the original code loads.

    The original SwinFace code loads its checkpoint strictly, so besides the
    model's weights this carries the backbone's unused `head` (zeros: the model
    has no such layer) and the buffers Swin computes from its configuration
    (`relative_position_index`, `attn_mask`). Floating tensors are float32 on the
    CPU, as published, whatever the model's dtype and device.
    """
    state = {k: v.detach() for k, v in model.state_dict().items()}
    sections = to_published(state, model.config)
    backbone = sections["state_dict_backbone"]
    width, dim = model.config.stage_dims[-1], model.config.embedding_dim
    backbone["head.weight"] = torch.zeros(dim, width)
    backbone["head.bias"] = torch.zeros(dim)
    buffers = dict(model.named_buffers())
    for key in _computed_published_keys(model):
        # Computed buffers sit inside blocks, whose names the two layouts share.
        backbone[key] = buffers["backbone.swin." + key].detach().clone()
    return {
        section: {
            k: (v.float() if v.is_floating_point() else v).cpu().contiguous()
            for k, v in tensors.items()
        }
        for section, tensors in sections.items()
    }


def save_published(model: SwinFace, path: str | Path) -> None:
    """Write the model in the published checkpoint layout, loadable by the original code.

    Written atomically (a unique temporary file, replaced into place).
    """
    with atomic_path(path) as tmp:
        torch.save(published_checkpoint(model), tmp)


def task_table_signature() -> list[list]:
    """What a native file records of the task table, to refuse a file made for another one."""
    return [[o.name, o.kind.value, o.size, o.group] for o in tasks.ALL_OUTPUTS]


def save_native(
    model: SwinFace,
    path: str | Path,
    *,
    name: str = "",
    half: bool = False,
    int8: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write the model as safetensors with its configuration and task table in the metadata.

    `half` stores floats as float16; `int8` stores every weight matrix and
    convolution as int8 per output channel with its float32 scales (a quarter of
    the size), and the small tensors as float16. `read_native` dequantises.
    Written atomically: a unique temporary file beside `path`, removed on failure.
    """
    state = {}
    quantized = []
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        if int8 and _quantizable(value):
            state[key], state[SCALE_PREFIX + key] = quantize_per_channel(value)
            quantized.append(key)
            continue
        if (half or int8) and value.is_floating_point():
            value = value.half()
        state[key] = value
    meta = {
        "format": NATIVE_FORMAT,
        "format_version": str(NATIVE_FORMAT_VERSION),
        "architecture": json.dumps(model.config.to_dict()),
        "tasks": json.dumps(task_table_signature()),
        "name": name,
    }
    if quantized:
        meta["int8_per_channel"] = json.dumps(quantized)
    meta.update(metadata or {})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def read_native(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a native safetensors file: (state dict, metadata), checking format and task table."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{_describe(path)}: no such file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{_describe(path)}: not a readable safetensors file ({_first_line(err)})"
        ) from None
    if meta.get("format") != NATIVE_FORMAT:
        raise CheckpointError(
            f"{_describe(path)}: not a swinface weights file (metadata format={meta.get('format')!r})"
        )
    version = int(meta.get("format_version", "0"))
    if version > NATIVE_FORMAT_VERSION:
        raise CheckpointError(
            f"{_describe(path)}: format version {version} is newer than this swinface "
            f"understands ({NATIVE_FORMAT_VERSION}); upgrade swinface"
        )
    if json.loads(meta.get("tasks", "[]")) != task_table_signature():
        raise CheckpointError(
            f"{_describe(path)}: made for a different task table than this swinface's"
        )
    for key in json.loads(meta.get("int8_per_channel", "[]")):
        scale = state.pop(SCALE_PREFIX + key, None)
        if scale is None or key not in state or state[key].dtype != torch.int8:
            raise CheckpointError(f"{_describe(path)}: int8 tensor {key} without its scales")
        state[key] = dequantize_per_channel(state[key], scale)
    return state, meta


SCALE_PREFIX = "int8_scale."
_MIN_QUANTIZED = 4096  # smaller tensors (norms, biases, position tables) stay float16


def _quantizable(value: torch.Tensor) -> bool:
    return value.is_floating_point() and value.ndim >= 2 and value.numel() >= _MIN_QUANTIZED


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: (int8 values, float32 scales).

    A matrix (out, in) or convolution (out, in, kh, kw) has a scale per output
    channel; a stack of per-group matrices (groups, out, in), as the task heads
    and channel gates hold, a scale per group and output row: one scale for a
    whole group would let its largest row set the step for every other.
    """
    w = weight.float()
    reduce = (2,) if w.ndim == 3 else tuple(range(1, w.ndim))
    absmax = w.abs().amax(dim=reduce, keepdim=True)
    scale = (absmax / 127).clamp_min(torch.finfo(torch.float32).tiny)
    return (w / scale).round().clamp(-127, 127).to(torch.int8), scale


def dequantize_per_channel(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return values.float() * scale.float()


def native_config(meta: Mapping[str, str]) -> SwinFaceConfig:
    return SwinFaceConfig.from_dict(json.loads(meta["architecture"]))


def load_native_state(model: SwinFace, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a native state dict strictly, with an error naming the first offenders."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k}: {list(state[k].shape)}, expected {list(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = [
        f"{len(v)} {label} key(s): {'; '.join(v[:_SHOW])}"
        for label, v in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", misshaped),
        )
        if v
    ]
    if problems:
        raise CheckpointError(f"{source}: does not match the model: " + " | ".join(problems))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def detect_format(path: str | Path) -> str:
    """'safetensors' or 'published', from the file's first bytes."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError as err:
        raise CheckpointError(f"{_describe(path)}: cannot read ({err.strerror})") from None
    # safetensors: an 8-byte little-endian header length, then the JSON header.
    if len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return "safetensors"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "published"  # a torch.save zip archive, or a legacy pickle
    raise CheckpointError(f"{_describe(path)}: not a PyTorch checkpoint nor a safetensors file")
