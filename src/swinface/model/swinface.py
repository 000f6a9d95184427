"""The SwinFace network: one Swin backbone, 11 MLCA subnets, 11 task MLPs, 42 outputs
and a 512-d identity embedding (Qin et al., "SwinFace: A Multi-task Transformer
for Face Recognition, Expression Recognition, Age Estimation and Attribute
Estimation", IEEE TCSVT 2023).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from swinface import tasks
from swinface.model.backbone import create_trunk
from swinface.model.config import SwinFaceConfig, model_config
from swinface.model.heads import TaskHeads
from swinface.model.mlca import MultiLevelChannelAttention

# Input normalisation: x / 255, then (x - 0.5) / 0.5.
INPUT_MEAN = 0.5
INPUT_STD = 0.5


class SwinFaceOutput(NamedTuple):
    """Raw outputs of one forward pass.

    `embedding` is the identity vector before L2 normalisation; `logits` packs
    the 42 analysis outputs in checkpoint order (`tasks.output_slices()`).
    """

    embedding: torch.Tensor  # (B, 512)
    logits: torch.Tensor  # (B, 88)

    def unpack(self) -> dict[str, torch.Tensor]:
        """All 43 outputs by published name (e.g. 'Age', 'Heavy Makeup', 'Recognition')."""
        named = {name: self.logits[:, s] for name, s in tasks.output_slices().items()}
        named[tasks.RECOGNITION.name] = self.embedding
        return named


class EmbeddingHead(nn.Sequential):
    """Linear, BatchNorm, Linear, BatchNorm: pooled tokens to the identity embedding."""

    def __init__(self, width: int, embedding_dim: int) -> None:
        super().__init__(
            nn.Linear(width, width, bias=False),
            nn.BatchNorm1d(width, eps=2e-5),
            nn.Linear(width, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim, eps=2e-5),
        )


class SwinFace(nn.Module):
    """SwinFace: takes normalised RGB faces (B, 3, 112, 112), returns `SwinFaceOutput`."""

    def __init__(self, config: SwinFaceConfig | None = None, fused_attention: bool = True) -> None:
        super().__init__()
        self.config = config or SwinFaceConfig()
        self.backbone = create_trunk(self.config, fused_attention=fused_attention)
        self.embedding_head = EmbeddingHead(self.config.trunk_width, self.config.embedding_dim)
        self.mlca = MultiLevelChannelAttention(self.config)
        self.heads = TaskHeads(self.config)
        self.age_column = tasks.output_slices()["Age"].start

    def forward(self, x: torch.Tensor) -> SwinFaceOutput:
        levels, tokens = self.backbone(x)
        embedding = self.embedding_head(self.backbone.embed_tokens(tokens))
        logits = self.heads(self.mlca(levels))
        if self.config.age_scaled:
            logits = self._age_in_years(logits)
        return SwinFaceOutput(embedding, logits)

    def _age_in_years(self, logits: torch.Tensor) -> torch.Tensor:
        """The normalised age regression back in years (see `SwinFaceConfig.age_mean`)."""
        c = self.age_column
        age = logits[:, c : c + 1] * self.config.age_std + self.config.age_mean
        return torch.cat([logits[:, :c], age, logits[:, c + 1 :]], dim=1)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameters that weight decay should skip (relative position tables)."""
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    @staticmethod
    def preprocess(faces: torch.Tensor) -> torch.Tensor:
        """uint8 RGB faces (B, 112, 112, 3) to the normalised float32 input (B, 3, 112, 112).

        `faces` is never changed, whatever its dtype (a float32 input is not copied by
        `.float()`, so the first step must not work in place).
        """
        x = faces.permute(0, 3, 1, 2).float() / 255.0
        return x.sub_(INPUT_MEAN).div_(INPUT_STD)


def create_model(name: str = "swinface_t", **overrides) -> SwinFace:
    """Build a registered architecture with fresh weights (`model.config.MODEL_CONFIGS`)."""
    fused = overrides.pop("fused_attention", True)
    return SwinFace(model_config(name, **overrides), fused_attention=fused)
