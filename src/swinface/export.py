"""Export the whole SwinFace model, all 43 outputs, to ONNX.

The graph takes aligned uint8 RGB faces (N, 112, 112, 3), the batch size
dynamic, and does the normalisation itself, so any ONNX runtime can use it
with no Python around it. Its outputs are named by the task table's keys
(`age`, `expression`, `heavy_makeup`, ..., `embedding`: raw logits and values,
the embedding not normalised). The task table and the architecture travel in
the model's metadata.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from swinface import tasks
from swinface.model import SwinFace
from swinface.weights.formats import task_table_signature

log = logging.getLogger(__name__)

ONNX_INPUT = "faces"
ONNX_OUTPUTS: tuple[str, ...] = (*(o.key for o in tasks.ANALYSIS_OUTPUTS), tasks.RECOGNITION.key)
DEFAULT_OPSET = 17


class _ExportWrapper(nn.Module):
    """Faces in; the 42 analysis outputs and the embedding out, each on its own."""

    def __init__(self, model: SwinFace, normalised_input: bool) -> None:
        super().__init__()
        self.model = model
        self.normalised_input = normalised_input
        self.slices = list(tasks.output_slices().values())

    def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = faces if self.normalised_input else SwinFace.preprocess(faces)
        out = self.model(x)
        return (*(out.logits[:, s] for s in self.slices), out.embedding)


def export_onnx(
    model: SwinFace,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    normalised_input: bool = False,
) -> Path:
    """Write `model` as an ONNX graph with a dynamic batch; returns the path (written atomically).

    By default the graph takes uint8 faces (N, 112, 112, 3); with
    `normalised_input` it takes the model's own float input (N, 3, 112, 112).
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    wrapper = _ExportWrapper(model.float().cpu().eval(), normalised_input)
    example = (
        torch.zeros((2, 3, 112, 112))
        if normalised_input
        else torch.zeros((2, 112, 112, 3), dtype=torch.uint8)
    )
    dynamic = {name: {0: "batch"} for name in (ONNX_INPUT, *ONNX_OUTPUTS)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape arithmetic
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes=dynamic,
            opset_version=opset,
        )
    graph = onnx.load(str(tmp))
    info = getattr(model, "weights_info", None)
    metadata = {
        "format": "swinface-onnx",
        "architecture": json.dumps(model.config.to_dict()),
        "tasks": json.dumps(task_table_signature()),
        "input": (
            "normalised float RGB, (batch, 3, 112, 112)"
            if normalised_input
            else "uint8 RGB aligned faces, (batch, 112, 112, 3)"
        ),
        "name": info.name if info else "",
    }
    if info and info.verify_threshold is not None:
        metadata["verify_threshold"] = str(info.verify_threshold)
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp))
    os.replace(tmp, path)
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
