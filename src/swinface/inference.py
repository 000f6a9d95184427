"""Running SwinFace on aligned 112x112 faces, in batches, on CPU or GPU."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from swinface.decode import FaceAttributes, decode, probabilities
from swinface.model import SwinFace, SwinFaceOutput
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
    """Runs a model on aligned faces in batches.

    On CUDA it runs under autocast in half precision (bf16 where supported,
    else fp16) unless `precision='float32'`; on CPU it runs in float32.
    """

    def __init__(
        self,
        model: SwinFace,
        *,
        device: str | torch.device | None = "auto",
        precision: str = "auto",
        batch_size: int = 64,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        if precision == "auto":
            precision = "float32"
            if self.device.type == "cuda":
                precision = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        if precision not in ("float32", "float16", "bfloat16"):
            raise ValueError(
                f"precision: expected auto, float32, float16 or bfloat16, got {precision!r}"
            )
        self.precision = precision

    def _autocast(self):
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.precision))

    @torch.inference_mode()
    def run(self, faces: np.ndarray | Sequence[np.ndarray] | torch.Tensor) -> SwinFaceOutput:
        """Raw outputs for aligned uint8 faces, as float32 CPU tensors."""
        batch = as_face_batch(faces)
        embeddings, logits = [], []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size].to(self.device, non_blocking=True)
            with self._autocast():
                out = self.model(SwinFace.preprocess(chunk))
            embeddings.append(out.embedding.float().cpu())
            logits.append(out.logits.float().cpu())
        if not embeddings:
            cfg = self.model.config
            from swinface.tasks import PACKED_SIZE

            return SwinFaceOutput(torch.empty(0, cfg.embedding_dim), torch.empty(0, PACKED_SIZE))
        return SwinFaceOutput(torch.cat(embeddings), torch.cat(logits))

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
) -> AlignedAnalysis:
    """Analyse already aligned 112x112 RGB uint8 faces with `model`, on the model's device."""
    device = next(model.parameters()).device
    return SwinFaceRunner(model, device=device, batch_size=batch_size).analyze(faces)


__all__ = ["AlignedAnalysis", "SwinFaceRunner", "analyze_aligned", "as_face_batch", "probabilities"]
