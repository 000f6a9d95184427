"""Swin Transformer backbone with SwinFace's multi-level feature taps.

The backbone is timm's Swin Transformer; SwinFace only needs to read features
at four levels: the output of each patch merging (local features at 28, 14 and
7 tokens a side) and the output of the last stage (global features).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from swinface.model.config import SwinFaceConfig


class SwinBackbone(nn.Module):
    """timm's Swin Transformer, returning SwinFace's local and global features."""

    def __init__(self, config: SwinFaceConfig, fused_attention: bool = True) -> None:
        super().__init__()
        self.config = config
        self.swin = timm.create_model(
            "swin_tiny_patch4_window7_224",
            pretrained=False,
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depths=config.depths,
            num_heads=config.num_heads,
            window_size=config.window_size,
            mlp_ratio=config.mlp_ratio,
            drop_path_rate=config.drop_path_rate,
            num_classes=0,
            global_pool="",
        )
        self.set_fused_attention(fused_attention)
        # Each local level is pooled to the last stage's grid by a fixed factor (4, 2, 1 for
        # Swin-T at 112 px): a plain average pool, which exports to ONNX with a dynamic batch.
        last = len(config.depths) - 1
        self.pool_factors = [2 ** (last - i) for i in range(1, len(config.depths))]

    def set_fused_attention(self, enabled: bool) -> None:
        """Use torch's scaled_dot_product_attention in every window attention."""
        for module in self.swin.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = enabled

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (multi-level features NCHW (B, 1344+768, 7, 7), final tokens (B, 7, 7, 768)).

        The multi-level map concatenates, in this order, the three local
        levels average-pooled to the last grid, then the global level.
        """
        swin = self.swin
        x = swin.patch_embed(x)  # (B, H, W, C): timm's Swin works in NHWC
        x = swin.layers[0](x)
        levels = []
        for stage, factor in zip(swin.layers[1:], self.pool_factors, strict=True):
            x = stage.downsample(x)
            level = x.permute(0, 3, 1, 2)
            levels.append(F.avg_pool2d(level, factor) if factor > 1 else level)
            x = stage.blocks(x)
        levels.append(x.permute(0, 3, 1, 2))
        return torch.cat(levels, dim=1), x

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final norm and mean over tokens: the input to the embedding head."""
        return self.swin.norm(tokens).mean(dim=(1, 2))
