"""A plain SwinFace: the published structure, one module per subnet and per output layer.

This is what a straightforward implementation of the paper's model looks like
(and how the published checkpoint is laid out): Swin attention written out
(no fused kernel), the 11 multi-level channel attention subnets and the 11 task
MLPs as separate modules run one after another, 42 separate output layers.
It computes the same outputs as `SwinFace`, so `swinface bench` times it as the
reference that the optimised paths are measured against, and the tests use it
as an independent check of the batched subnets.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from swinface import tasks
from swinface.model.swinface import SwinFace, SwinFaceOutput


class _ChannelGate(nn.Module):
    """CBAM's channel gate: a shared MLP over the spatial average and max, summed, sigmoid."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        gate = self.mlp(F.avg_pool2d(x, size)) + self.mlp(F.max_pool2d(x, size))
        return x * torch.sigmoid(gate)[:, :, None, None]


class _LevelConvs(nn.Module):
    """One 3x3 convolution per feature level, outputs concatenated."""

    def __init__(self, level_dims: tuple[int, ...], widths: tuple[int, ...]) -> None:
        super().__init__()
        self.level_dims = list(level_dims)
        self.convs = nn.ModuleList(
            nn.Conv2d(d, w, 3, padding=1, bias=False)
            for d, w in zip(level_dims, widths, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(x, self.level_dims, dim=1)
        return torch.cat([conv(c) for conv, c in zip(self.convs, chunks, strict=True)], dim=1)


class _AttentionSubnet(nn.Module):
    """One group's multi-level channel attention: convs, channel gate, ReLU, max-pool, norm."""

    def __init__(self, model: SwinFace) -> None:
        super().__init__()
        c = model.config
        self.conv = _LevelConvs(c.level_dims, c.level_widths)
        self.channel_attention = _ChannelGate(c.feature_dim, c.attention_hidden)
        self.norm = nn.BatchNorm1d(c.feature_dim, eps=2e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.channel_attention(self.conv(x)))
        return self.norm(torch.amax(x, dim=(2, 3)))


class _TaskSubnet(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.feature = nn.Sequential(
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature(x)


class _Subnets(nn.Module):
    """A list of per-group modules under the published name `nets`."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)


class _Outputs(nn.Module):
    """The 42 output layers under the published name `output_fcs`, in checkpoint order."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.groups = [o.group for o in tasks.ANALYSIS_OUTPUTS]
        self.output_fcs = nn.ModuleList(nn.Linear(width, o.size) for o in tasks.ANALYSIS_OUTPUTS)


class PlainSwinFace(nn.Module):
    """SwinFace written module by module, as published; built from a `SwinFace` with its weights.

    Takes and returns what `SwinFace` does. The given model is not changed.
    """

    def __init__(self, model: SwinFace) -> None:
        super().__init__()
        from swinface.weights.formats import to_published

        c = model.config
        self.config = c
        self.backbone = copy.deepcopy(model.backbone).float().cpu()
        self.backbone.set_fused_attention(False)
        self.embedding_head = copy.deepcopy(model.embedding_head).float().cpu()
        self.fam = _Subnets([_AttentionSubnet(model) for _ in range(c.num_groups)])
        self.tss = _Subnets([_TaskSubnet(c.feature_dim, c.dropout) for _ in range(c.num_groups)])
        self.om = _Outputs(c.feature_dim)
        state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
        published = to_published(state, c)
        # nn.Flatten in the gate shifts nothing: published keys are `mlp.1` and `mlp.3`.
        for section, module in (
            ("state_dict_fam", self.fam),
            ("state_dict_tss", self.tss),
            ("state_dict_om", self.om),
        ):
            module.load_state_dict(published[section])
        self.eval()

    def forward(self, x: torch.Tensor) -> SwinFaceOutput:
        levels, tokens = self.backbone(x)
        embedding = self.embedding_head(self.backbone.embed_tokens(tokens))
        features = [net(levels) for net in self.fam.nets]
        features = [net(f) for net, f in zip(self.tss.nets, features, strict=True)]
        logits = [fc(features[g]) for fc, g in zip(self.om.output_fcs, self.om.groups, strict=True)]
        return SwinFaceOutput(embedding, torch.cat(logits, dim=1))
