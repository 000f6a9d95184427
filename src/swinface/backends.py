"""Ways to run SwinFace on aligned faces, behind one interface, chosen by name.

- `eager`: the PyTorch model as is (fused attention, batched heads), under
  autocast in half precision on GPU;
- `compiled`: the same model through `torch.compile` (on CUDA with CUDA graphs
  for fixed shapes, `mode="reduce-overhead"`);
- `onnxruntime`: the exported ONNX graph on ONNX Runtime; on CPU the fastest.

Every backend takes uint8 RGB faces (N, 112, 112, 3) and returns a
`SwinFaceOutput` of float32 CPU tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from swinface.model import SwinFace, SwinFaceOutput

log = logging.getLogger(__name__)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 on GPUs that have it, else fp16 on GPU, and float32 on CPU."""
    if precision == "auto":
        if device.type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if precision not in ("float32", "float16", "bfloat16"):
        raise ValueError(
            f"precision: expected auto, float32, float16 or bfloat16, got {precision!r}"
        )
    return precision


class TorchBackend:
    """The PyTorch model, optionally compiled; half precision through autocast on GPU."""

    def __init__(
        self,
        model: SwinFace,
        device: torch.device,
        precision: str = "auto",
        *,
        compile: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        self.device = device
        self.model = model.to(device).eval()
        self.precision = resolve_precision(precision, device)
        self.name = "compiled" if compile else "eager"
        # Channels-last helps the multi-level convolutions on GPU; on CPU it costs a copy.
        if channels_last if channels_last is not None else device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward: Callable = self.model
        if compile:
            mode = "reduce-overhead" if device.type == "cuda" else None
            self.forward = torch.compile(self.model, mode=mode, dynamic=False)

    def _autocast(self):
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.precision))

    @torch.inference_mode()
    def __call__(self, faces: torch.Tensor) -> SwinFaceOutput:
        x = faces.to(self.device, non_blocking=True)
        with self._autocast():
            out = self.forward(SwinFace.preprocess(x))
        # One copy back per batch: the only host-device synchronisation.
        return SwinFaceOutput(out.embedding.float().cpu(), out.logits.float().cpu())


def model_digest(model: SwinFace) -> str:
    """A short hash of a model's weights and architecture, to name its exported graph."""
    h = hashlib.sha256(repr(sorted(model.config.to_dict().items())).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def onnx_path_for(model: SwinFace) -> Path:
    """Where the exported graph of `model` is cached (exported once per set of weights)."""
    from swinface.weights.registry import cache_dir

    return cache_dir().parent / "onnx" / f"swinface-{model_digest(model)}.onnx"


class OnnxBackend:
    """The exported graph on ONNX Runtime (CPU, or CUDA when asked and available)."""

    name = "onnxruntime"

    def __init__(
        self,
        graph: str | Path | SwinFace,
        device: torch.device | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        from swinface.export import ONNX_INPUT, ONNX_OUTPUTS, export_onnx

        if isinstance(graph, SwinFace):
            path = onnx_path_for(graph)
            if not path.is_file():
                export_onnx(graph, path)
            graph = path
        self.path = Path(graph)
        self.device = device or torch.device("cpu")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads or os.environ.get("OMP_NUM_THREADS"):
            options.intra_op_num_threads = threads or int(os.environ["OMP_NUM_THREADS"])
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        names = [o.name for o in self.session.get_outputs()]
        if names != list(ONNX_OUTPUTS):
            raise ValueError(f"{self.path}: not a SwinFace graph (outputs {names[:3]}...)")
        self.input_name = ONNX_INPUT
        self.precision = "float32"

    def __call__(self, faces: torch.Tensor) -> SwinFaceOutput:
        outputs = self.session.run(None, {self.input_name: faces.cpu().numpy()})
        logits = np.concatenate(outputs[:-1], axis=1)
        return SwinFaceOutput(torch.from_numpy(outputs[-1]), torch.from_numpy(logits))


BACKENDS: dict[str, Callable[..., object]] = {
    "eager": lambda model, device, precision: TorchBackend(model, device, precision),
    "compiled": lambda model, device, precision: TorchBackend(
        model, device, precision, compile=True
    ),
    "onnxruntime": lambda model, device, precision: OnnxBackend(model, device),
}


def default_backend(device: torch.device) -> str:
    """ONNX Runtime on CPU (about 2-3x eager PyTorch there; see README), eager PyTorch on GPU."""
    if device.type == "cpu":
        try:
            import onnxruntime  # noqa: F401

            return "onnxruntime"
        except ImportError:  # pragma: no cover - onnxruntime is a dependency
            return "eager"
    return "eager"


def create_backend(
    name: str, model: SwinFace, device: torch.device, precision: str = "auto"
) -> TorchBackend | OnnxBackend:
    """The backend `name` ('auto', 'eager', 'compiled', 'onnxruntime') for `model` on `device`."""
    if name == "auto":
        name = default_backend(device)
        if name == "onnxruntime":
            try:
                return OnnxBackend(model, device)
            except Exception as err:  # export or session trouble must not stop an analysis
                log.warning("ONNX Runtime unavailable (%s); running the PyTorch model", err)
                name = "eager"
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"backend: unknown {name!r}; known: auto, {', '.join(BACKENDS)}") from None
    if name == "onnxruntime" and resolve_precision(precision, device) != "float32":
        log.info("onnxruntime runs the float32 graph; precision %s ignored", precision)
    return factory(model, device, precision)
