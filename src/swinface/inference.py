"""Running SwinFace on aligned 112x112 faces, in batches, on CPU or GPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from swinface.decode import FaceAttributes, decode, probabilities
from swinface.model import SwinFace, SwinFaceOutput
from swinface.model.borrowed import model_device
from swinface.weights.loading import resolve_device

FACE_SIZE = 112


@dataclass
class AlignedAnalysis:
    """Results for a batch of aligned faces: raw outputs by name, and decoded results."""

    raw: dict[str, np.ndarray]  # published output name -> (N, size) raw logits / values / embedding
    faces: list[FaceAttributes]


def as_face_batch(faces: np.ndarray | Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
    """Check and stack aligned faces into a uint8 tensor (N, 112, 112, 3), RGB."""
    if isinstance(faces, torch.Tensor):
        faces = faces.cpu().numpy()
    if isinstance(faces, np.ndarray) and faces.ndim == 3:
        faces = faces[None]
    items = list(faces)
    for i, face in enumerate(items):
        face = np.asarray(face)
        if face.shape != (FACE_SIZE, FACE_SIZE, 3):
            raise ValueError(
                f"face {i}: expected an aligned RGB face of shape (112, 112, 3), got {face.shape}"
            )
        if face.dtype != np.uint8:
            raise ValueError(f"face {i}: expected uint8 pixels (0-255), got {face.dtype}")
    if not items:
        return torch.empty((0, FACE_SIZE, FACE_SIZE, 3), dtype=torch.uint8)
    return torch.from_numpy(np.ascontiguousarray(np.stack(items)))


class SwinFaceRunner:
    """Runs a model on aligned faces in batches, on one of the backends (`swinface.backends`).

    `backend='auto'` (the default, as for `FaceAnalyzer`) is, on CPU, a graph
    runtime on the graph exported once per set of weights and cached: OpenVINO
    in bf16 where the CPU has native bf16, else ONNX Runtime (see
    `swinface.backends.create_backend`); and eager PyTorch on GPU.

    On CUDA the eager and compiled backends run under autocast in half
    precision (bf16 where supported, else fp16) unless `precision='float32'`;
    on CPU they run in float32, or in the model's own dtype for a half-precision
    model. The model is never changed: not its mode, dtype, device or weights.
    """

    def __init__(
        self,
        model: SwinFace,
        *,
        device: str | torch.device | None = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        backend: str = "auto",
    ) -> None:
        from swinface.backends import create_backend

        if batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        self.model = model
        self.batch_size = batch_size
        self.backend = create_backend(backend, model, self.device, precision)
        self.precision = self.backend.precision

    def run(self, faces: np.ndarray | Sequence[np.ndarray] | torch.Tensor) -> SwinFaceOutput:
        """Raw outputs for aligned uint8 faces, as float32 CPU tensors."""
        batch = as_face_batch(faces)
        if self.device.type == "cuda":
            batch = batch.pin_memory()  # lets the copy to the GPU overlap
        outs = [
            self.backend(batch[start : start + self.batch_size])
            for start in range(0, len(batch), self.batch_size)
        ]
        if not outs:
            from swinface.tasks import PACKED_SIZE

            dim = self.model.config.embedding_dim
            return SwinFaceOutput(torch.empty(0, dim), torch.empty(0, PACKED_SIZE))
        return SwinFaceOutput(
            torch.cat([o.embedding for o in outs]), torch.cat([o.logits for o in outs])
        )

    def analyze(self, faces: np.ndarray | Sequence[np.ndarray] | torch.Tensor) -> AlignedAnalysis:
        """Raw outputs and decoded results for aligned faces."""
        out = self.run(faces)
        raw = {name: value.numpy() for name, value in out.unpack().items()}
        return AlignedAnalysis(raw=raw, faces=decode(out))


def analyze_aligned(
    model: SwinFace,
    faces: np.ndarray | Sequence[np.ndarray] | torch.Tensor,
    *,
    batch_size: int = 64,
    backend: str = "auto",
) -> AlignedAnalysis:
    """Analyse already aligned 112x112 RGB uint8 faces with `model`, on the model's device.

    `backend` as for `SwinFaceRunner`; the model is not changed.
    """
    runner = SwinFaceRunner(
        model, device=model_device(model), batch_size=batch_size, backend=backend
    )
    return runner.analyze(faces)


__all__ = ["AlignedAnalysis", "SwinFaceRunner", "analyze_aligned", "as_face_batch", "probabilities"]
