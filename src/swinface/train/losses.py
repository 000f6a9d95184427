"""SwinFace's training losses, each reading its outputs from the task table.

- identity: a margin loss on cosine logits (CosFace, ArcFace) or SFace, applied
  through Partial FC (`swinface.train.partial_fc`);
- age: smooth L1 (or L1) on the age error in units of the training ages' spread
  (`SwinFaceConfig.age_std`), or the published annealed loss in years;
- gender and the 40 attributes: two-way cross-entropy;
- expression: cross-entropy with label smoothing 0.1.

Every target uses -1 (NaN for age) for "this sample has no such label": a
sample contributes only the losses its dataset labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from swinface import tasks
from swinface.train.config import AGE_LOSSES

# --------------------------------------------------------------------- identity


class MarginLoss(nn.Module):
    """Base for identity losses on cosine logits (N, C) with labels (N,).

    A label of -1 marks a row whose class centre lives on another rank (Partial
    FC shards the classes): the row still counts in the softmax denominator.
    """

    softmax_based = True

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CosFace(MarginLoss):
    """Large margin cosine loss (Wang et al., 2018): s * (cos(theta_y) - m)."""

    def __init__(self, s: float = 64.0, m: float = 0.4) -> None:
        super().__init__()
        self.s, self.m = s, m

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = torch.nonzero(labels >= 0).flatten()
        logits = cosine.clone()
        logits[rows, labels[rows]] -= self.m
        return logits * self.s


class ArcFace(MarginLoss):
    """Additive angular margin loss (Deng et al., 2019): s * cos(theta_y + m).

    Past theta = pi - m the angle would wrap; the usual fallback keeps the
    target logit monotone there (cos(theta) - m * sin(m)), as InsightFace does.
    """

    def __init__(self, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__()
        self.s, self.m = s, m
        self.threshold = math.cos(math.pi - m)
        self.fallback = math.sin(math.pi - m) * m

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = torch.nonzero(labels >= 0).flatten()
        logits = cosine.clone()
        target = cosine[rows, labels[rows]].clamp(-1 + 1e-7, 1 - 1e-7)
        with_margin = torch.cos(torch.acos(target) + self.m)
        logits[rows, labels[rows]] = torch.where(
            target > self.threshold, with_margin, target - self.fallback
        )
        return logits * self.s


class SFace(MarginLoss):
    """Sigmoid-constrained hypersphere loss (Zhong et al., 2021).

    Pulls the target cosine up and pushes the others down, each weighted by a
    sigmoid of its angle (computed without gradient) so that easy pairs stop
    pulling: loss = -r_intra * s*cos(theta_y) + sum_j r_inter_j * s*cos(theta_j).
    Returns per-row losses, summed across Partial FC shards by the caller.
    """

    softmax_based = False

    def __init__(self, s: float = 64.0, k: float = 80.0, a: float = 0.8, b: float = 1.23) -> None:
        super().__init__()
        self.s, self.k, self.a, self.b = s, k, a, b

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        is_target = torch.zeros_like(cosine, dtype=torch.bool)
        rows = torch.nonzero(labels >= 0).flatten()
        is_target[rows, labels[rows]] = True
        scaled = cosine * self.s
        with torch.no_grad():
            theta = torch.acos(cosine.clamp(-1 + 1e-7, 1 - 1e-7))
            intra = torch.sigmoid(self.k * (theta - self.a))
            inter = torch.sigmoid(-self.k * (theta - self.b))
        weights = torch.where(is_target, -intra, inter)
        return (weights * scaled).sum(dim=1)


MARGIN_LOSSES: dict[str, type[MarginLoss]] = {
    "cosface": CosFace,
    "arcface": ArcFace,
    "sface": SFace,
}


def make_margin_loss(name: str, *, s: float = 64.0, m: float = 0.4) -> MarginLoss:
    """The identity loss named in a config: cosface (s, m), arcface (s, m) or sface (s)."""
    try:
        cls = MARGIN_LOSSES[name.lower()]
    except KeyError:
        raise ValueError(
            f"identity_loss.margin: unknown loss {name!r}; known: {sorted(MARGIN_LOSSES)}"
        ) from None
    return cls(s=s) if cls is SFace else cls(s=s, m=m)


# --------------------------------------------------------------------- analysis


def annealed_age_loss(
    pred: torch.Tensor, target: torch.Tensor, step: int, total_steps: int
) -> torch.Tensor:
    """The published age loss: (1 - l)/2 * d^2 + l * (1 - exp(-d^2 / 18)), l = step / total.

    Early on it is squared error (strong gradients far from the answer); late
    it saturates, so outliers in noisy apparent-age labels stop dominating.
    """
    lam = min(1.0, max(0.0, step / max(1, total_steps)))
    d2 = (pred - target).square()
    return ((1 - lam) / 2 * d2 + lam * (1 - torch.exp(-d2 / 18))).mean()


def age_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    kind: str = "smooth_l1",
    *,
    scale: float = 1.0,
    step: int = 0,
    total_steps: int = 1,
) -> torch.Tensor:
    """The age loss of predictions and targets in years.

    `smooth_l1` and `l1` measure the error in units of `scale` (the training ages'
    spread, so that a constant answer at the mean costs about 0.8 whatever the data,
    the scale of a cross-entropy); `smooth_l1` is quadratic within 0.1 of a spread.
    `annealed` is the published loss in years (`annealed_age_loss`).
    """
    if kind == "annealed":
        return annealed_age_loss(pred, target, step, total_steps)
    error = (pred.float() - target.float()) / scale
    if kind == "l1":
        return error.abs().mean()
    if kind == "smooth_l1":
        return F.smooth_l1_loss(error, torch.zeros_like(error), beta=0.1)
    raise ValueError(f"age_loss: unknown loss {kind!r}; known: {', '.join(AGE_LOSSES)}")


@dataclass
class TaskTargets:
    """A mixed batch's labels; -1 (NaN for age) where a sample lacks the label."""

    age: torch.Tensor  # (N,) float years
    gender: torch.Tensor  # (N,) long, index into GENDER_LABELS
    expression: torch.Tensor  # (N,) long, index into EXPRESSION_LABELS
    attributes: torch.Tensor  # (N, 40) long 0/1, CelebA column order


def _columns(name: str) -> slice:
    return tasks.output_slices()[name]


def _attribute_columns() -> torch.Tensor:
    """(40, 2) logit columns of each CelebA attribute, in CelebA column order."""
    slices = tasks.output_slices()
    starts = [slices[tasks.output(a).name].start for a in tasks.CELEBA_ATTRIBUTES]
    return torch.tensor(starts)[:, None] + torch.arange(2)


def _masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over rows whose target is not -1; zero (with a graph) when there are none."""
    valid = target >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid], target[valid], label_smoothing=label_smoothing)


class MultiTaskLoss(nn.Module):
    """All analysis losses on the packed logits (N, 88); identity is handled by Partial FC.

    `weights` are per training task (age_gender, attributes, expression), as in
    the config; the returned parts are per output (age, gender, attributes,
    expression) so that each can be watched on its own.
    """

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        label_smoothing: float = 0.1,
        age_weight: float = 1.0,
        age_kind: str = "smooth_l1",
        age_scale: float = 1.0,
    ):
        super().__init__()
        self.age_weight = age_weight
        self.age_kind, self.age_scale = age_kind, age_scale
        self.weights = {"age_gender": 1.0, "attributes": 1.0, "expression": 1.0}
        self.weights.update({k: v for k, v in (weights or {}).items() if k in self.weights})
        self.label_smoothing = label_smoothing
        self.register_buffer("attribute_columns", _attribute_columns(), persistent=False)

    def forward(
        self, logits: torch.Tensor, targets: TaskTargets, step: int, total_steps: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = logits.float()
        zero = logits.sum() * 0.0
        has_age = ~torch.isnan(targets.age)
        age = (
            age_loss(
                logits[has_age, _columns("Age")].squeeze(1),
                targets.age[has_age],
                self.age_kind,
                scale=self.age_scale,
                step=step,
                total_steps=total_steps,
            )
            if bool(has_age.any())
            else zero
        )
        gender = _masked_cross_entropy(logits[:, _columns("Gender")], targets.gender)
        n = logits.shape[0]
        attribute_logits = logits[:, self.attribute_columns.flatten()].reshape(n * 40, 2)
        attributes = _masked_cross_entropy(attribute_logits, targets.attributes.reshape(-1))
        expression = _masked_cross_entropy(
            logits[:, _columns("Expression")], targets.expression, self.label_smoothing
        )
        total = (
            self.weights["age_gender"] * (self.age_weight * age + gender)
            + self.weights["attributes"] * attributes
            + self.weights["expression"] * expression
        )
        parts = {
            "age": float(age.detach()),
            "gender": float(gender.detach()),
            "attributes": float(attributes.detach()),
            "expression": float(expression.detach()),
        }
        return total, parts
