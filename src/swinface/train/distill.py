"""Distillation losses: what the teachers (`swinface teachers`) teach the student.

- identity, from teacher embeddings (any face, labelled or not): a linear
  projection of the student's embedding into each teacher's space, matched by
  cosine, and the batch's face-to-face cosine matrix matched to the teacher's
  (the relation between faces, which needs no projection). The projections are
  training-only parameters, like Partial FC's class centres, and are not part of
  the saved model;
- expression and gender, from teacher probabilities: Hinton's soft targets with
  a temperature, on every face with a target (or, with `labelled: false`, only on
  faces whose batch row has no label of that output);
- age, from the teachers' age in years with the run's age loss, likewise.

Teacher rows are NaN where a face's store has no targets: those faces are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from swinface import tasks
from swinface.train.config import DistillConfig
from swinface.train.losses import age_loss


def _rows_with(target: torch.Tensor) -> torch.Tensor:
    """Mask of the rows holding a teacher target (not NaN)."""
    return ~torch.isnan(target.reshape(len(target), -1)[:, 0])


def soft_target_loss(
    logits: torch.Tensor, probabilities: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) at `temperature`, times T^2 so gradients keep their scale.

    The teachers give probabilities, not logits: raising them to 1/T and
    renormalising is the same softening as dividing their logits by T.
    """
    t = 1.0 / temperature
    teacher = probabilities.float().clamp_min(1e-8).pow(t)
    teacher = teacher / teacher.sum(dim=1, keepdim=True)
    student = F.log_softmax(logits.float() * t, dim=1)
    kl = (teacher * (teacher.log() - student)).sum(dim=1)
    return kl.mean() * temperature**2


def embedding_losses(
    student: torch.Tensor, projected: torch.Tensor, teacher: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - cosine of the projection to the teacher, squared error of the batch's cosine
    matrices off the diagonal) over rows that all hold a teacher embedding."""
    teacher = F.normalize(teacher.float(), dim=1)
    cosine = 1 - (F.normalize(projected.float(), dim=1) * teacher).sum(dim=1)
    unit = F.normalize(student.float(), dim=1)
    n = len(unit)
    if n < 2:
        return cosine.mean(), student.sum() * 0.0
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=unit.device)
    relation = (unit @ unit.T - teacher @ teacher.T)[off_diagonal].square().mean()
    return cosine.mean(), relation


class DistillationLoss(nn.Module):
    """All distillation losses of a batch; holds the projections into the teachers' spaces."""

    def __init__(
        self,
        config: DistillConfig,
        embedding_dim: int,
        teacher_shapes: dict[str, tuple],
        *,
        age_kind: str = "smooth_l1",
        age_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.config = config
        self.age_kind, self.age_scale = age_kind, age_scale
        self.projections = nn.ModuleDict()
        if config.embedding is not None:
            for name in config.embedding.teachers:
                (dim,) = teacher_shapes[f"teacher_embedding/{name}"]
                # ModuleDict keys may not contain dots; teacher names may hold dashes only.
                self.projections[name] = nn.Linear(embedding_dim, dim, bias=False)
        slices = tasks.output_slices()
        self.columns = {
            "expression": slices["Expression"],
            "gender": slices["Gender"],
            "age": slices["Age"],
        }

    def forward(
        self,
        embedding: torch.Tensor,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        step: int,
        total_steps: int,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total = logits.sum() * 0.0
        parts: dict[str, float] = {}
        embedding_config = self.config.embedding
        if embedding_config is not None:
            for name, projection in self.projections.items():
                target = batch[f"teacher_embedding/{name}"]
                rows = _rows_with(target)
                if not bool(rows.any()):
                    continue
                student = embedding[rows].float()
                cosine, relation = embedding_losses(student, projection(student), target[rows])
                total = (
                    total
                    + embedding_config.weight * cosine
                    + embedding_config.relation_weight * relation
                )
                parts[f"distill_{name}_cosine"] = float(cosine.detach())
                parts[f"distill_{name}_relation"] = float(relation.detach())
        for task, label_missing in (
            ("expression", batch["expression"] < 0),
            ("gender", batch["gender"] < 0),
        ):
            soft = getattr(self.config, task)
            if soft is None:
                continue
            target = batch[f"teacher_{task}"]
            rows = _rows_with(target) & (label_missing | soft.labelled)
            if bool(rows.any()):
                loss = soft_target_loss(
                    logits[rows][:, self.columns[task]], target[rows], soft.temperature
                )
                total = total + soft.weight * loss
                parts[f"distill_{task}"] = float(loss.detach())
        if self.config.age is not None:
            target = batch["teacher_age"]
            rows = _rows_with(target) & (torch.isnan(batch["age"]) | self.config.age.labelled)
            if bool(rows.any()):
                predicted = logits[rows][:, self.columns["age"]].squeeze(1).float()
                loss = age_loss(
                    predicted,
                    target[rows],
                    self.age_kind,
                    scale=self.age_scale,
                    step=step,
                    total_steps=total_steps,
                )
                total = total + self.config.age.weight * loss
                parts["distill_age"] = float(loss.detach())
        return total, parts
