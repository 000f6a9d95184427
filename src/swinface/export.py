"""Export the whole SwinFace model, all 43 outputs, to ONNX, and the cache of exported graphs.

The graph takes aligned uint8 RGB faces (N, 112, 112, 3), the batch size
dynamic, and does the normalisation itself, so any ONNX runtime can use it
with no Python around it. Its outputs are named by the task table's keys
(`age`, `expression`, `heavy_makeup`, ..., `embedding`: raw logits and values,
the embedding not normalised). The task table, the architecture and a digest
of the weights travel in the graph's metadata.

The export works on a float32 CPU copy of the model in eval mode: the caller's
model keeps its mode, dtype and device. Graphs are written atomically; the
cache (`cached_onnx_graph`) holds one graph per set of weights, exported by one
process at a time, and checks a cached graph before trusting it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from swinface import tasks
from swinface.atomic import atomic_path, file_lock
from swinface.model import SwinFace
from swinface.model.borrowed import working_copy
from swinface.weights.formats import task_table_signature

log = logging.getLogger(__name__)

ONNX_INPUT = "faces"
ONNX_OUTPUTS: tuple[str, ...] = (*(o.key for o in tasks.ANALYSIS_OUTPUTS), tasks.RECOGNITION.key)
DEFAULT_OPSET = 17
GRAPH_FORMAT = "swinface-onnx"
# Raised whenever the exported graph changes shape for the better (2: task heads and channel
# gates as MatMuls, not Einsum), so that cached graphs from older exports are made again.
EXPORT_VERSION = "2"
UINT8_INPUT = "uint8 RGB aligned faces, (batch, 112, 112, 3)"
FLOAT_INPUT = "normalised float RGB, (batch, 3, 112, 112)"


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


def model_digest(model: SwinFace) -> str:
    """A short hash of a model's architecture and weights (any dtype, any device)."""
    h = hashlib.sha256(repr(sorted(model.config.to_dict().items())).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        # Raw bytes: NumPy has no bfloat16, so hash the storage, not `.numpy()` of the values.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


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
    The model itself is not changed (the export runs on a float32 CPU copy).
    """
    path = Path(path)
    digest = model_digest(model)
    # The tracer restores the wrapper's mode after export: a fresh wrapper is in training
    # mode, so exporting the caller's model directly would leave it training.
    wrapper = _ExportWrapper(
        working_copy(model, torch.device("cpu"), torch.float32), normalised_input
    ).eval()
    example = (
        torch.zeros((2, 3, 112, 112))
        if normalised_input
        else torch.zeros((2, 112, 112, 3), dtype=torch.uint8)
    )
    info = getattr(model, "weights_info", None)
    metadata = {
        "format": GRAPH_FORMAT,
        "export_version": EXPORT_VERSION,
        "architecture": json.dumps(model.config.to_dict()),
        "tasks": json.dumps(task_table_signature()),
        "input": FLOAT_INPUT if normalised_input else UINT8_INPUT,
        "name": info.name if info else "",
        "weights_digest": digest,
    }
    if info and info.verify_threshold is not None:
        metadata["verify_threshold"] = str(info.verify_threshold)
    write_traced_graph(
        wrapper,
        example,
        path,
        input_name=ONNX_INPUT,
        output_names=ONNX_OUTPUTS,
        opset=opset,
        metadata=metadata,
    )
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def write_traced_graph(
    module: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    *,
    input_name: str,
    output_names: tuple[str, ...] | list[str],
    opset: int,
    metadata: dict[str, str],
    check: bool = False,
) -> Path:
    """Trace `module` (already in eval mode, on CPU) into an ONNX graph with a dynamic batch,
    with `metadata` in the graph, written atomically; returns the path.

    The one ONNX writer in swinface: the model's export and the teacher converters use it.
    """
    import onnx

    path = Path(path)
    dynamic = {name: {0: "batch"} for name in (input_name, *output_names)}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape arithmetic
            torch.onnx.export(
                module,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=[input_name],
                output_names=list(output_names),
                dynamic_axes=dynamic,
                opset_version=opset,
            )
        graph = onnx.load(str(tmp))
        for key, value in metadata.items():
            graph.metadata_props.add(key=key, value=value)
        if check:
            onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    return path


def graph_problem(path: str | Path, digest: str | None = None) -> str | None:
    """Why the graph at `path` cannot be trusted as SwinFace's uint8 graph, or None if it can.

    Checks that it parses and passes the ONNX checker, and that its metadata
    names this format, this task table, the uint8 input and (given `digest`)
    these weights.
    """
    import onnx

    try:
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
    except Exception as err:  # protobuf and checker errors have no common base
        text = str(err).strip().splitlines()
        return f"not a readable ONNX graph ({text[0][:120] if text else type(err).__name__})"
    meta = {p.key: p.value for p in graph.metadata_props}
    outputs = [o.name for o in graph.graph.output]
    if meta.get("format") != GRAPH_FORMAT or outputs != list(ONNX_OUTPUTS):
        return "not a SwinFace graph"
    if meta.get("tasks") != json.dumps(task_table_signature()):
        return "made for a different task table"
    if meta.get("input") != UINT8_INPUT:
        return f"takes {meta.get('input')!r}, not uint8 faces"
    if meta.get("export_version") != EXPORT_VERSION:
        return f"made by an older export (version {meta.get('export_version', '1')})"
    if digest is not None and meta.get("weights_digest") != digest:
        return f"made for other weights (digest {meta.get('weights_digest')!r}, expected {digest})"
    return None


def onnx_path_for(model: SwinFace, digest: str | None = None) -> Path:
    """Where the exported graph of `model` is cached (one graph per set of weights)."""
    from swinface.weights.registry import cache_dir

    digest = digest or model_digest(model)
    return cache_dir().parent / "onnx" / f"swinface-{digest}.onnx"


# Graphs this process has checked, by path: the file's identity when checked, and its digest.
_CHECKED: dict[Path, tuple[tuple[int, int, int], str]] = {}


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def cached_onnx_graph(model: SwinFace) -> Path:
    """The cached uint8 graph of `model`, exported first if it is absent or cannot be trusted.

    Processes that ask for the same graph at once take turns (a lock beside
    the graph): one exports, the others find its graph. A cached graph that is
    broken, or was made for other weights, is exported again with a warning.
    A graph this process already checked is trusted while the file is the same.
    """
    digest = model_digest(model)
    path = onnx_path_for(model, digest)
    if _CHECKED.get(path) == (_identity(path), digest):
        return path
    with file_lock(path):
        if path.exists():
            problem = graph_problem(path, digest)
            if problem is None:
                _CHECKED[path] = (_identity(path), digest)
                return path
            log.warning(
                "cached ONNX graph %s cannot be used (%s); exporting it again", path, problem
            )
        export_onnx(model, path)
        _CHECKED[path] = (_identity(path), digest)
    return path
