"""Task-specific subnets (a two-layer MLP per group) and the 42 output layers.

Both run batched over the group axis. The output layers of one group are
packed into a zero-padded (groups, rows, features) weight, and a fixed index
picks the 88 real logits out in checkpoint order (see `tasks.output_slices`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from swinface import tasks
from swinface.model.config import SwinFaceConfig


def output_layout(num_groups: int = tasks.NUM_GROUPS) -> tuple[int, list[tuple[int, int, int]]]:
    """(rows per group, [(group, first row, size) for each output in checkpoint order])."""
    next_row = [0] * num_groups
    layout = []
    for out in tasks.ANALYSIS_OUTPUTS:
        layout.append((out.group, next_row[out.group], out.size))
        next_row[out.group] += out.size
    return max(next_row), layout


class TaskHeads(nn.Module):
    """Task MLPs (Linear, ReLU, Dropout, twice) and output layers, batched over groups.

    Input: (B, groups, feature_dim). Output: packed logits (B, 88).
    """

    def __init__(self, config: SwinFaceConfig) -> None:
        super().__init__()
        g, c = config.num_groups, config.feature_dim
        self.fc1_w = nn.Parameter(torch.empty(g, c, c))
        self.fc1_b = nn.Parameter(torch.empty(g, c))
        self.fc2_w = nn.Parameter(torch.empty(g, c, c))
        self.fc2_b = nn.Parameter(torch.empty(g, c))
        self.dropout = nn.Dropout(config.dropout)
        rows, layout = output_layout(g)
        self.out_w = nn.Parameter(torch.zeros(g, rows, c))
        self.out_b = nn.Parameter(torch.zeros(g, rows))
        index = [grp * rows + row + k for grp, row, size in layout for k in range(size)]
        self.register_buffer(
            "packed_index", torch.tensor(index, dtype=torch.long), persistent=False
        )
        mask = torch.zeros(g, rows, dtype=torch.bool)
        for grp, row, size in layout:
            mask[grp, row : row + size] = True
        self.register_buffer("output_mask", mask, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.fc1_w.shape[-1])
        for p in (self.fc1_w, self.fc1_b, self.fc2_w, self.fc2_b):
            nn.init.uniform_(p, -bound, bound)
        with torch.no_grad():
            # Padding rows stay zero: they are never read.
            self.out_w.uniform_(-bound, bound).mul_(self.output_mask.unsqueeze(-1))
            self.out_b.uniform_(-bound, bound).mul_(self.output_mask)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Group-major (G, B, C): one batched matrix product per layer. Plain MatMuls with
        # transposed weights, which graph runtimes fold once, where an einsum would re-lay
        # out the weights on every call (20 ms a face in ONNX Runtime on CPU).
        x = features.transpose(0, 1)
        x = self.dropout(torch.relu(grouped_linear(x, self.fc1_w, self.fc1_b)))
        x = self.dropout(torch.relu(grouped_linear(x, self.fc2_w, self.fc2_b)))
        logits = grouped_linear(x, self.out_w, self.out_b).transpose(0, 1)
        return logits.flatten(1).index_select(1, self.packed_index)


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """One linear layer per group: x (G, B, in), weight (G, out, in), bias (G, out) -> (G, B, out)."""
    return torch.matmul(x, weight.transpose(1, 2)) + bias.unsqueeze(1)
