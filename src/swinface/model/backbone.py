"""Trunks with SwinFace's multi-level feature taps.

The published trunk is timm's Swin Transformer; SwinFace only needs to read
features at four levels: the output of each patch merging (local features at
28, 14 and 7 tokens a side) and the output of the last stage (global features).
A timm CNN can stand in (`CnnTrunk`): its four stages are the four levels, so
the MLCA subnets, heads and outputs stay as they are.
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
        if config.stem == "conv":
            self.swin.patch_embed.proj = conv_stem(config.embed_dim, config.patch_size)
        self.set_fused_attention(fused_attention)
        # Each local level is pooled to the last stage's grid by a fixed factor (4, 2, 1 for
        # Swin-T at 112 px): a plain average pool, which exports to ONNX with a dynamic batch.
        last = len(config.depths) - 1
        self.pool_factors = [2 ** (last - i) for i in range(1, len(config.depths))]

    def no_weight_decay(self) -> set[str]:
        return {f"swin.{n}" for n in self.swin.no_weight_decay()}

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


def conv_stem(width: int, stride: int) -> nn.Sequential:
    """3x3 convolutions in place of Swin's patch embedding (same output grid and width):
    the locality prior that lets a small transformer learn from thousands of faces rather
    than millions (Xiao et al., "Early convolutions help transformers see better", 2021)."""
    if stride not in (1, 2, 4):
        raise ValueError(f"conv stem: patch size {stride} is not 1, 2 or 4")
    half = max(8, width // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(3, half, 3, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.GELU(),
    ]
    for _ in range({1: 0, 2: 1, 4: 2}[stride]):
        layers += [
            nn.Conv2d(half, half, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.GELU(),
        ]
    layers.append(nn.Conv2d(half, width, 1))
    return nn.Sequential(*layers)


def _drop_stem_pool(trunk: nn.Module, width: int) -> None:
    """ResNets: no max-pool after the stem, so the four stages run at strides 2 to 16."""
    trunk.maxpool = nn.Identity()


def _stride_two_stem(trunk: nn.Module, width: int) -> None:
    """ConvNeXts: 2x2 patches in the stem instead of 4x4 (strides 2 to 16)."""
    trunk.stem_0 = nn.Conv2d(3, width, kernel_size=2, stride=2)


# timm family -> how its stem is changed so that 112 px faces end on a 7x7 grid.
_STEM_CHANGES = {"resnet": _drop_stem_pool, "convnext": _stride_two_stem}


class CnnTrunk(nn.Module):
    """A timm CNN's four stages as SwinFace's four feature levels (strides 2, 4, 8, 16:
    56, 28, 14 and 7 a side at 112 px), each average-pooled to the last grid."""

    def __init__(self, config: SwinFaceConfig) -> None:
        super().__init__()
        family = next((f for f in _STEM_CHANGES if config.trunk.startswith(f)), None)
        if family is None:
            raise ValueError(
                f"trunk {config.trunk!r}: not a supported timm CNN family ({', '.join(_STEM_CHANGES)})"
            )
        self.cnn = timm.create_model(
            config.trunk,
            pretrained=False,
            features_only=True,
            out_indices=(1, 2, 3, 4) if family == "resnet" else (0, 1, 2, 3),
            drop_path_rate=config.drop_path_rate,
        )
        channels = tuple(self.cnn.feature_info.channels())
        if channels != tuple(config.trunk_dims):
            raise ValueError(
                f"trunk {config.trunk}: its levels have {channels} channels, "
                f"the config says {tuple(config.trunk_dims)}"
            )
        _STEM_CHANGES[family](self.cnn, channels[0])
        self.pool_factors = [8, 4, 2, 1]

    def no_weight_decay(self) -> set[str]:
        return set()

    def set_fused_attention(self, enabled: bool) -> None:
        """No attention in a CNN: nothing to switch."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the four levels pooled to 7x7 and concatenated NCHW, last features NHWC)."""
        features = self.cnn(x)
        levels = [
            F.avg_pool2d(f, k) if k > 1 else f
            for f, k in zip(features, self.pool_factors, strict=True)
        ]
        return torch.cat(levels, dim=1), features[-1].permute(0, 2, 3, 1)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean over the last grid: the input to the embedding head."""
        return tokens.mean(dim=(1, 2))


def create_trunk(config: SwinFaceConfig, fused_attention: bool = True) -> nn.Module:
    """The trunk a config names: Swin (published) or a timm CNN."""
    if config.trunk == "swin":
        return SwinBackbone(config, fused_attention=fused_attention)
    return CnnTrunk(config)
