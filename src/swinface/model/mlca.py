"""Multi-level channel attention (MLCA), SwinFace's task-specific feature extractor.

Each of the 11 task groups has its own subnet: 3x3 convolutions on the four
feature levels (concatenated to 512 channels), a CBAM channel gate, ReLU,
global max-pooling and BatchNorm. The published model runs the 11 subnets one
after another; here the gates, pooling and norms run as batched operations over
a group axis. The convolutions are stored stacked (one per level, the groups'
output channels side by side) and run stacked on GPU, where one large kernel
beats 44 small ones; on CPU they run one group at a time (see `_level_conv`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from swinface.model.config import SwinFaceConfig
from swinface.model.heads import grouped_linear


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
        """The channel gate's MLP on group-major features (G, B, C)."""
        hidden = torch.relu(grouped_linear(v, self.gate_w1, self.gate_b1))
        return grouped_linear(hidden, self.gate_w2, self.gate_b2)

    def _level_conv(self, conv: nn.Conv2d, chunk: torch.Tensor, width: int) -> torch.Tensor:
        """One level's 3x3 convolution for all groups: (B, G * width, H, W).

        The input takes the weights' memory layout, so that the convolution never
        converts the weights (up to 56 MB a level) on each call. On CPU, where
        oneDNN re-lays out a convolution's weights on every eager call, one group's
        weights at a time stay in cache: 4-5x faster than the stacked weights at
        batch 1, still faster at batch 8 (measured in one thread). Exported graphs
        keep the stacked convolution: their runtimes lay weights out once, at load.
        """
        layout = (
            torch.channels_last
            if conv.weight.is_contiguous(memory_format=torch.channels_last)
            and not conv.weight.is_contiguous()
            else torch.contiguous_format
        )
        chunk = chunk.contiguous(memory_format=layout)
        if chunk.is_cuda or torch.onnx.is_in_onnx_export():
            return conv(chunk)
        weights = conv.weight.split(width)
        return torch.cat([F.conv2d(chunk, w, padding=1) for w in weights], dim=1)

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        b, _, height, width = levels.shape
        g = self.num_groups
        chunks = torch.split(levels, list(self.level_dims), dim=1)
        x = torch.cat(
            [
                self._level_conv(conv, chunk, w).view(b, g, w, height, width)
                for conv, chunk, w in zip(self.convs, chunks, self.level_widths, strict=True)
            ],
            dim=2,
        )  # (B, G, C, H, W)
        flat = x.flatten(3)
        # Both statistics through the MLP at once, group-major: (G, 2B, C).
        stats = torch.cat([flat.mean(dim=3), flat.amax(dim=3)]).transpose(0, 1)
        gate = self._gate_mlp(stats).transpose(0, 1)
        gate = gate[:b] + gate[b:]
        flat = torch.relu(flat * torch.sigmoid(gate).unsqueeze(-1))
        pooled = flat.amax(dim=3)  # global max-pool: (B, G, C)
        return self.norm(pooled.reshape(b, -1)).view(b, g, -1)
