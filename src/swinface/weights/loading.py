"""Turn any weights the user names (a file in either format, or a registered name) into a model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from swinface.model import SwinFace, create_model
from swinface.weights import formats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsInfo:
    """Where a loaded model's weights came from, and what travels with them."""

    name: str
    path: str
    format: str
    verify_threshold: float | None = None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) picks CUDA when available, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model_from_file(
    path: str | Path, *, name: str = "", verify_threshold: float | None = None
) -> SwinFace:
    """Load a published `.pt` checkpoint or a native `.safetensors` file onto the CPU, in eval mode."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise formats.CheckpointError(f"{path}: file is empty")
    kind = formats.detect_format(path)
    if kind == "published":
        model = create_model("swinface_t")
        model.load_state_dict(formats.from_published(formats.read_published(path), model))
        threshold = verify_threshold
    else:
        state, meta = formats.read_native(path)
        model = SwinFace(formats.native_config(meta))
        formats.load_native_state(model, state, str(path))
        name = name or meta.get("name", "")
        threshold = verify_threshold
        if threshold is None and meta.get("verify_threshold"):
            threshold = float(meta["verify_threshold"])
    model.weights_info = WeightsInfo(name or path.stem, str(path), kind, threshold)
    return model.eval()


def load_model(
    weights: str | Path | None = None,
    *,
    device: str | torch.device | None = "auto",
    download: bool = True,
) -> SwinFace:
    """Load SwinFace weights: a file path, or a registered name (see `swinface weights list`).

    With no `weights`, the default: the weights shipped with the package
    (`swinface-default`, unpacked into the cache on first use) when it holds them,
    else the published checkpoint (`swinface-published`, downloaded on first use
    unless `download` is False). Returns the model in eval mode on `device`
    ('auto': CUDA when available, else CPU).
    """
    if weights is not None and Path(weights).is_file():
        return load_model_from_file(weights).to(resolve_device(device))
    from swinface.weights import registry
    from swinface.weights.download import resolve_weights

    source = weights if weights is not None else registry.default_weights()
    path, spec = resolve_weights(source, download=download)
    model = load_model_from_file(
        path,
        name=spec.name if spec else "",
        verify_threshold=spec.verify_threshold if spec else None,
    )
    return model.to(resolve_device(device))
