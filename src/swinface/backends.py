"""Ways to run SwinFace on aligned faces, behind one interface, chosen by name.

- `eager`: the PyTorch model as is (fused attention, batched heads), under
  autocast in half precision on GPU;
- `compiled`: the same model through `torch.compile` (on CUDA with CUDA graphs
  for fixed shapes, `mode="reduce-overhead"`; CUDA graphs share their output
  memory between calls, so on CUDA its calls from several threads take turns);
- `onnxruntime`: the exported ONNX graph on ONNX Runtime, in float32 or
  (`precision='int8'`) as the int8 graph that `swinface.quantize` made for
  these weights, calibrated on faces and checked against float32; `auto` on
  CPUs without native bf16;
- `openvino`: the same graph on OpenVINO, in bf16 where the CPU runs it
  natively (AVX-512 BF16, AMX; `auto` there, the fastest CPU path), else float32.

Every backend takes uint8 RGB faces (N, 112, 112, 3) and returns a
`SwinFaceOutput` of float32 CPU tensors. None changes the model it is given
(mode, weights, dtype, device): see `swinface.model.borrowed`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from swinface.export import (
    ONNX_INPUT,
    ONNX_OUTPUTS,
    cached_onnx_graph,
    model_digest,
    onnx_path_for,
)
from swinface.model import SwinFace, SwinFaceOutput
from swinface.model.borrowed import eval_mode, model_dtype, on_device, working_copy
from swinface.quantize import INT8_FORMAT

log = logging.getLogger(__name__)


_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_precision(
    precision: str, device: torch.device, model_dtype: torch.dtype = torch.float32
) -> str:
    """The precision a model runs in: 'auto' follows a half-precision model's own dtype,
    else bf16 on GPUs that have it, fp16 on other GPUs, and float32 on CPU."""
    if precision == "auto":
        for name, dtype in _HALF.items():
            if model_dtype == dtype:
                return name
        if device.type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if precision not in ("float32", *_HALF):
        raise ValueError(
            f"precision: expected auto, float32, float16 or bfloat16, got {precision!r}"
        )
    return precision


class TorchBackend:
    """The PyTorch model, optionally compiled; half precision through autocast on GPU.

    The caller's model is never changed. It is run as is when it already sits
    on `device` in a dtype that suits `precision`, switched to eval mode for
    each call only; otherwise the backend runs its own eval-mode copy (moved,
    converted to float32, or channels-last on GPU), a snapshot of the weights
    when the backend was made. A half-precision model runs in its own dtype;
    a float32 model runs half precision through autocast.

    Thread safety: the eager backend may be called from several threads. The
    compiled backend on CUDA replays CUDA graphs, whose output buffers are
    shared between calls, so its calls are serialised by a lock.
    """

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
        dtype = model_dtype(model)
        self.precision = resolve_precision(precision, device, dtype)
        self.name = "compiled" if compile else "eager"
        # A half-precision model asked for its own precision runs as it is; any other
        # combination runs float32 weights, under autocast for half precision.
        weights = dtype if _HALF.get(self.precision) == dtype else torch.float32
        self.input_dtype = weights
        self.autocast = self.precision != "float32" and weights == torch.float32
        # Channels-last helps the multi-level convolutions on GPU; on CPU it costs a copy.
        layout = channels_last if channels_last is not None else device.type == "cuda"
        if layout or weights != dtype or not on_device(model, device):
            self.model = working_copy(model, device, weights, channels_last=layout)
        else:
            self.model = model
        self.forward: Callable = self.model
        if compile:
            mode = "reduce-overhead" if device.type == "cuda" else None
            self.forward = torch.compile(self.model, mode=mode, dynamic=False)
        # CUDA graphs (reduce-overhead) reuse their output memory: one call at a time.
        serialise = compile and device.type == "cuda"
        self._lock = threading.Lock() if serialise else contextlib.nullcontext()

    def _autocast(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_HALF[self.precision])

    def __call__(self, faces: torch.Tensor) -> SwinFaceOutput:
        x = faces.to(self.device, non_blocking=True)
        with self._lock, eval_mode(self.model), torch.inference_mode(), self._autocast():
            out = self.forward(SwinFace.preprocess(x).to(self.input_dtype))
            # One copy back per batch: the only host-device synchronisation.
            return SwinFaceOutput(out.embedding.float().cpu(), out.logits.float().cpu())


class OnnxBackend:
    """The exported graph on ONNX Runtime (CPU, or CUDA when asked and available).

    Given a model, the graph comes from the cache (`swinface.export.cached_onnx_graph`),
    exported from a float32 copy of the model on first use.
    """

    name = "onnxruntime"

    def __init__(
        self,
        graph: str | Path | SwinFace,
        device: torch.device | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        if isinstance(graph, SwinFace):
            graph = cached_onnx_graph(graph)
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
        meta = self.session.get_modelmeta().custom_metadata_map
        self.precision = "int8" if meta.get("format") == INT8_FORMAT else "float32"

    def __call__(self, faces: torch.Tensor) -> SwinFaceOutput:
        outputs = self.session.run(None, {self.input_name: faces.cpu().numpy()})
        logits = np.concatenate(outputs[:-1], axis=1)
        return SwinFaceOutput(torch.from_numpy(outputs[-1]), torch.from_numpy(logits))


def cpu_runs_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), per oneDNN."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


_OPENVINO_CORE = None
_OPENVINO_LOCK = threading.Lock()


def openvino_core():
    """The process's one OpenVINO `Core`, kept until the process ends.

    OpenVINO's CPU plugin, when it loads, gives the thread that loads it an
    alternate signal stack of its own, and when it unloads puts the previous
    one back on whichever thread unloads it, freeing its own. Unloaded from
    another thread (a garbage collection anywhere), it leaves the loading
    thread's signal stack pointing at freed memory, and that thread's next
    signal handled on it (a Python SIGCHLD handler, when a child process ends)
    kills the process. One Core for the process loads the plugin once and never
    unloads it while Python runs.
    """
    global _OPENVINO_CORE
    with _OPENVINO_LOCK:
        if _OPENVINO_CORE is None:
            import openvino as ov

            _OPENVINO_CORE = ov.Core()
        return _OPENVINO_CORE


class OpenVinoBackend:
    """The exported graph on OpenVINO's CPU plugin.

    Precision 'auto' is bf16 where the CPU has native bf16 (products in bf16,
    accumulation and the softmax/norm statistics in float32), else float32.
    Each thread gets its own inference request, so calls may come from several
    threads.
    """

    name = "openvino"

    def __init__(
        self, graph: str | Path | SwinFace, device: torch.device | None = None, precision="auto"
    ) -> None:
        core = openvino_core()
        if device is not None and device.type != "cpu":
            raise ValueError(f"openvino: runs on the CPU, not {device}")
        if isinstance(graph, SwinFace):
            graph = cached_onnx_graph(graph)
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"openvino: precision auto, float32 or bfloat16, not {precision!r}")
        if precision == "auto":
            precision = "bfloat16" if cpu_runs_bf16() else "float32"
        self.path, self.device, self.precision = Path(graph), torch.device("cpu"), precision
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        names = [o.get_any_name() for o in self.compiled.outputs]
        if names != list(ONNX_OUTPUTS):
            raise ValueError(f"{self.path}: not a SwinFace graph (outputs {names[:3]}...)")
        self._local = threading.local()

    def __call__(self, faces: torch.Tensor) -> SwinFaceOutput:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(faces.cpu().numpy())})
        outputs = [request.get_output_tensor(i).data for i in range(len(ONNX_OUTPUTS))]
        # The request reuses its output memory: copy out before the next call.
        logits = np.concatenate(outputs[:-1], axis=1)
        return SwinFaceOutput(torch.from_numpy(outputs[-1].copy()), torch.from_numpy(logits))


BACKENDS: dict[str, Callable[..., object]] = {
    "eager": lambda model, device, precision: TorchBackend(model, device, precision),
    "compiled": lambda model, device, precision: TorchBackend(
        model, device, precision, compile=True
    ),
    "onnxruntime": lambda model, device, precision: OnnxBackend(model, device),
    "openvino": lambda model, device, precision: OpenVinoBackend(model, device, precision),
}


def default_backend(device: torch.device) -> str:
    """Eager PyTorch on GPU. On CPU, OpenVINO where the CPU runs bf16 natively (AVX-512
    BF16 or AMX: the fastest CPU path, see README), else ONNX Runtime (faster than eager
    PyTorch there)."""
    if device.type != "cpu":
        return "eager"
    if cpu_runs_bf16():
        try:
            import openvino  # noqa: F401

            return "openvino"
        except ImportError:  # pragma: no cover - openvino is a dependency
            pass
    try:
        import onnxruntime  # noqa: F401

        return "onnxruntime"
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        return "eager"


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log a warning the first time it is given in this process; later repeats go to debug."""
    if message in _WARNED:
        log.debug("%s", message)
        return
    _WARNED.add(message)
    log.warning("%s", message)


def checked_int8_graph(model: SwinFace) -> Path | None:
    """The cached int8 graph of `model`'s weights when its recorded agreement with float32
    meets `swinface.quantize.ACCURACY_BAR`; None when there is none or it falls short."""
    from swinface.quantize import cached_int8_graph, recorded_agreement

    path = cached_int8_graph(model)
    if path is None:
        return None
    result = recorded_agreement(path)
    if result is None or not result.meets():
        why = "; ".join(result.shortfalls()) if result else "never checked against float32"
        log.info("int8 graph %s not used by default: %s", path, why)
        return None
    return path


def bf16_misses_bar(model: SwinFace) -> bool:
    """Whether a recorded check of `model`'s weights (`swinface.quantize.check_bf16`) says
    OpenVINO bf16 misses `swinface.quantize.ACCURACY_BAR`; False when none was made."""
    from swinface.quantize import recorded_bf16_agreement

    result = recorded_bf16_agreement(model)
    if result is None or result.meets():
        return False
    log.info("OpenVINO bf16 not used by default: %s", "; ".join(result.shortfalls()))
    return True


def _int8_backend(model: SwinFace, device: torch.device) -> OnnxBackend:
    from swinface.quantize import cached_int8_graph

    path = cached_int8_graph(model)
    if path is None:
        raise ValueError(
            "precision int8: no int8 graph for these weights yet; make one with "
            "`swinface quantize --faces FOLDER` (aligned faces to calibrate on)"
        )
    return OnnxBackend(path, device)


def create_backend(
    name: str, model: SwinFace, device: torch.device, precision: str = "auto"
) -> TorchBackend | OnnxBackend | OpenVinoBackend:
    """The backend `name` ('auto', 'eager', 'compiled', 'onnxruntime', 'openvino') for `model`.

    'auto' is eager PyTorch on GPU. On CPU it is OpenVINO in bf16 where the CPU
    runs bf16 natively, unless a check of these weights recorded that bf16
    misses the accuracy bar (`bf16_misses_bar`); elsewhere ONNX Runtime: at
    precision 'auto' the cached int8 graph of these weights when one meets the
    accuracy bar (`checked_int8_graph`), else the float32 graph. When the graph runtime
    cannot run, 'auto' warns once, saying why, and runs the PyTorch model.
    Precision 'int8' is ONNX Runtime's alone.
    """
    if precision == "int8":
        if name not in ("auto", "onnxruntime"):
            raise ValueError(f"precision int8: only the onnxruntime backend runs it, not {name!r}")
        return _int8_backend(model, device)
    if name == "auto":
        name = default_backend(device)
        if name == "openvino" and precision not in ("auto", "float32", "bfloat16"):
            name = "onnxruntime"
        if name == "openvino" and precision == "auto" and bf16_misses_bar(model):
            name = "onnxruntime"
        if name in ("openvino", "onnxruntime"):
            try:
                if name == "openvino":
                    return OpenVinoBackend(model, device, precision)
                int8 = checked_int8_graph(model) if precision == "auto" else None
                return OnnxBackend(int8 or model, device)
            except Exception as err:  # export or session trouble must not stop an analysis
                reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
                runtime = "OpenVINO" if name == "openvino" else "ONNX Runtime"
                _warn_once(
                    f"backend 'auto': {runtime} cannot run this model "
                    f"({type(err).__name__}: {reason}); running the PyTorch model instead"
                )
                name = "eager"
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"backend: unknown {name!r}; known: auto, {', '.join(BACKENDS)}") from None
    if name == "onnxruntime" and resolve_precision(precision, device) != "float32":
        log.info("onnxruntime runs the float32 graph; precision %s ignored", precision)
    return factory(model, device, precision)


__all__ = [
    "BACKENDS",
    "OnnxBackend",
    "OpenVinoBackend",
    "TorchBackend",
    "bf16_misses_bar",
    "checked_int8_graph",
    "cpu_runs_bf16",
    "create_backend",
    "default_backend",
    "model_digest",
    "onnx_path_for",
    "resolve_precision",
]
