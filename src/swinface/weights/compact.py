"""Compact weights for shipping: int8 per output channel, cut into checksummed parts, with
the figures of how closely the compact model follows the float one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from swinface.atomic import atomic_write_text
from swinface.evaluate.agreement import Agreement, agreement


def _outputs(model, faces: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    from swinface.decode import probabilities
    from swinface.model import SwinFace
    from swinface.model.borrowed import eval_mode

    device = next(model.parameters()).device
    parts: list[dict[str, np.ndarray]] = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(faces), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(faces[start : start + batch_size]))
            parts.append(probabilities(model(SwinFace.preprocess(batch.to(device)))))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def carried_metadata(source: Path) -> dict[str, str]:
    """The model card facts of `source` that its compact copy keeps (training config, step,
    verification threshold, ...), and where the copy came from (`quantized_from`)."""
    from swinface.weights.card import _FORMAT_KEYS, read_header
    from swinface.weights.download import file_sha256
    from swinface.weights.formats import detect_format

    meta = {}
    if detect_format(source) == "safetensors":
        meta = {k: v for k, v in read_header(source)[1].items() if k not in _FORMAT_KEYS}
    meta["quantized_from"] = json.dumps({"file": source.name, "sha256": file_sha256(source)})
    return meta


def compact(
    weights: str | Path,
    out_dir: str | Path,
    *,
    name: str = "",
    part_bytes: int | None = None,
    check_faces: np.ndarray | None = None,
    device: str = "auto",
    metadata: dict[str, str] | None = None,
) -> tuple[Path, Agreement | None]:
    """Write `weights` as an int8 file in `out_dir` (and its parts when `part_bytes`), and,
    with `check_faces` (N, 112, 112, 3 uint8), how the int8 model agrees with the float one.

    The file keeps the source's metadata (`carried_metadata`), then `metadata` on top:
    what `swinface weights info` and the model card read.
    """
    from swinface.weights.download import resolve_weights
    from swinface.weights.formats import save_native
    from swinface.weights.loading import load_model, load_model_from_file, resolve_device
    from swinface.weights.parts import split_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source, _ = resolve_weights(str(weights), download=False)
    model = load_model_from_file(source)
    path = out_dir / f"{name or Path(weights).stem}-int8.safetensors"
    meta = carried_metadata(source) | dict(metadata or {})
    save_native(model.cpu(), path, name=name or path.stem, int8=True, metadata=meta)
    if part_bytes:
        split_file(path, out_dir / "parts", part_bytes)
    if check_faces is None:
        return path, None
    dev = resolve_device(device)  # the device the caller asked for, not only auto
    reference = _outputs(model.to(dev), check_faces)
    quantized = _outputs(load_model(str(path), device=str(dev), download=False), check_faces)
    figures = agreement(reference, quantized)
    atomic_write_text(
        out_dir / "int8-agreement.json", json.dumps(figures.as_dict(), indent=1) + "\n"
    )
    return path, figures
