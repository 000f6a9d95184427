"""Multi-level channel attention (MLCA), SwinFace's task-specific feature extractor.

Each of the 11 task groups has its own subnet: 3x3 convolutions on the four
feature levels (concatenated to 512 channels), a CBAM channel gate, ReLU,
global max-pooling and BatchNorm. The published model runs the 11 subnets one
after another; here they run as batched operations over a group axis, which
computes the same thing in a few large kernels instead of 44 small ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from swinface.model.config import SwinFaceConfig


def _uniform_(tensor: torch.Tensor, fan_in: int) -> None:
    """nn.Linear's default initialisation, applied to one group's slice."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(tensor, -bound, bound)


class MultiLevelChannelAttention(nn.Module):
    """The 11 MLCA subnets, batched over groups.

    Input: the multi-level map (B, sum(level_dims), 7, 7).
    Output: one feature per group, (B, groups, feature_dim).
    """

    def __init__(self, config: SwinFaceConfig) -> None:
        super().__init__()
        g, c, h = config.num_groups, config.feature_dim, config.attention_hidden
        self.num_groups = g
        self.level_dims = config.level_dims
        self.level_widths = config.level_widths
        # One conv per level whose output channels are the 11 groups' convs side by side.
        self.convs = nn.ModuleList(
            nn.Conv2d(d, g * w, kernel_size=3, padding=1, bias=False)
            for d, w in zip(self.level_dims, self.level_widths, strict=True)
        )
        # CBAM channel gate: a shared MLP over the spatial average and max, per group.
        self.gate_w1 = nn.Parameter(torch.empty(g, h, c))
        self.gate_b1 = nn.Parameter(torch.empty(g, h))
        self.gate_w2 = nn.Parameter(torch.empty(g, c, h))
        self.gate_b2 = nn.Parameter(torch.empty(g, c))
        # Per-channel statistics, so one BatchNorm over all groups equals 11 separate ones.
        self.norm = nn.BatchNorm1d(g * c, eps=2e-5)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5))
        _uniform_(self.gate_w1, self.gate_w1.shape[-1])
        _uniform_(self.gate_b1, self.gate_w1.shape[-1])
        _uniform_(self.gate_w2, self.gate_w2.shape[-1])
        _uniform_(self.gate_b2, self.gate_w2.shape[-1])

    def _gate_mlp(self, v: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(torch.einsum("bgc,ghc->bgh", v, self.gate_w1) + self.gate_b1)
        return torch.einsum("bgh,gch->bgc", hidden, self.gate_w2) + self.gate_b2

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        b, _, height, width = levels.shape
        g = self.num_groups
        chunks = torch.split(levels, list(self.level_dims), dim=1)
        x = torch.cat(
            [
                conv(chunk).view(b, g, w, height, width)
                for conv, chunk, w in zip(self.convs, chunks, self.level_widths, strict=True)
            ],
            dim=2,
        )  # (B, G, C, H, W)
        flat = x.flatten(3)
        gate = self._gate_mlp(flat.mean(dim=3)) + self._gate_mlp(flat.amax(dim=3))
        flat = torch.relu(flat * torch.sigmoid(gate).unsqueeze(-1))
        pooled = flat.amax(dim=3)  # global max-pool: (B, G, C)
        return self.norm(pooled.reshape(b, -1)).view(b, g, -1)
