"""Model configurations and the model registry (one factory, no if/elif chains)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from swinface import tasks


@dataclass(frozen=True)
class SwinFaceConfig:
    """Shape of a SwinFace network.

    The defaults are the published model: Swin-T (embed 96, depths 2-2-6-2,
    heads 3-6-12-24, window 7) with patch size 2 on 112x112 faces, 512-wide
    task features and a 512-d identity embedding.
    """

    img_size: int = 112
    # The trunk: "swin" (the published Swin Transformer), or a timm CNN (e.g. "resnet18")
    # whose four feature levels, at strides 2 to 16, feed the same MLCA and heads.
    trunk: str = "swin"
    # Channels of a CNN trunk's four feature levels (checked against timm when built).
    trunk_dims: tuple[int, ...] = ()
    # Swin's patch embedding: "patch" (the published 2x2 patches) or "conv" (3x3
    # convolutions, a stem that gives a from-scratch transformer an image prior).
    stem: str = "patch"
    patch_size: int = 2
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    feature_dim: int = 512  # width of each task group's feature
    attention_hidden: int = 32  # hidden width of the channel gate's MLP
    embedding_dim: int = tasks.EMBEDDING_SIZE
    dropout: float = 0.5  # in the task MLPs, as published
    # The Age output is `raw * age_std + age_mean` years: a model trained from scratch
    # regresses a normalised age (targets of mean 0, spread 1) and still answers in years.
    # The published model regresses years directly (0 and 1: no change to its outputs).
    age_mean: float = 0.0
    age_std: float = 1.0
    drop_path_rate: float = 0.0  # stochastic depth, for training
    num_groups: int = tasks.NUM_GROUPS

    def __post_init__(self) -> None:
        if not self.age_std > 0:
            raise ValueError(f"age_std: must be above 0, got {self.age_std}")
        if self.stem not in ("patch", "conv"):
            raise ValueError(f"stem: expected patch or conv, got {self.stem!r}")
        if self.trunk != "swin" and len(self.trunk_dims) != 4:
            raise ValueError(
                f"trunk_dims: a CNN trunk needs its 4 levels' channels, got {self.trunk_dims}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: a fraction in [0, 1) is needed, got {self.dropout}")

    @property
    def age_scaled(self) -> bool:
        """Whether the Age output is rescaled from a normalised regression."""
        return (self.age_mean, self.age_std) != (0.0, 1.0)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    @property
    def level_dims(self) -> tuple[int, ...]:
        """Channels of the four feature levels: three local, one global (Swin), or a CNN
        trunk's four stages."""
        if self.trunk != "swin":
            return tuple(self.trunk_dims)
        dims = self.stage_dims
        return (*dims[1:], dims[-1])

    @property
    def trunk_width(self) -> int:
        """Channels of the trunk's last features (the embedding head's input)."""
        return self.trunk_dims[-1] if self.trunk != "swin" else self.stage_dims[-1]

    @property
    def level_widths(self) -> tuple[int, ...]:
        """Output channels of each level's 3x3 conv, in proportion to its input.

        For the published model this gives 47, 93, 186, 186 (sum 512).
        """
        total = sum(self.level_dims)
        widths = [round(self.feature_dim * d / total) for d in self.level_dims]
        widths[-1] += self.feature_dim - sum(widths)
        return tuple(widths)

    @property
    def feature_grid(self) -> int:
        """Side of the last stage's token grid (7 for the published model)."""
        return self.img_size // self.patch_size // 2 ** (len(self.depths) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["depths"], d["num_heads"] = list(self.depths), list(self.num_heads)
        d["trunk_dims"] = list(self.trunk_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SwinFaceConfig:
        d = dict(d)
        d["depths"], d["num_heads"] = tuple(d["depths"]), tuple(d["num_heads"])
        d["trunk_dims"] = tuple(d.get("trunk_dims", ()))
        return cls(**d)


MODEL_CONFIGS: dict[str, SwinFaceConfig] = {
    # The published architecture.
    "swinface_t": SwinFaceConfig(),
    # A small network of the same structure, for tests and quick experiments.
    "swinface_nano": SwinFaceConfig(
        embed_dim=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        feature_dim=64,
        attention_hidden=8,
        embedding_dim=64,
    ),
    # A small model of the family for CPU training: 4x4 patches through a convolutional stem
    # and three Swin stages (28, 14 and 7 tokens a side), so its levels are the two patch
    # mergings' outputs and the last stage's; about 2.3x faster to train than swinface_nano.
    "swinface_micro": SwinFaceConfig(
        stem="conv",
        patch_size=4,
        embed_dim=32,
        depths=(2, 2, 2),
        num_heads=(1, 2, 4),
        feature_dim=64,
        attention_hidden=8,
        embedding_dim=128,
        dropout=0.1,
    ),
    # The yardstick of the training proof: a plain small CNN (timm's ResNet-10-T) under the
    # same MLCA subnets and heads as swinface_nano, trained by the same recipe.
    "swinface_nano_resnet": SwinFaceConfig(
        trunk="resnet10t",
        trunk_dims=(64, 128, 256, 512),
        feature_dim=64,
        attention_hidden=8,
        embedding_dim=64,
    ),
}


def model_config(name: str, **overrides) -> SwinFaceConfig:
    """The registered configuration `name`, with fields overridden."""
    if name not in MODEL_CONFIGS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODEL_CONFIGS)}")
    base = MODEL_CONFIGS[name].to_dict()
    base.update(overrides)
    return SwinFaceConfig.from_dict(base)
