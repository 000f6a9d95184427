"""From raw SwinFace outputs to meaning: age in years, labelled probabilities, a unit embedding.

Everything here is read from the task table (`swinface.tasks`). Importing this
module loads NumPy only (torch on first use), so that light users such as
`swinface.evaluate` share the one decoding and the one cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from swinface import tasks

if TYPE_CHECKING:
    import torch

    from swinface.model import SwinFaceOutput


@dataclass(frozen=True)
class FaceAttributes:
    """SwinFace's decoded outputs for one face."""

    age: float  # years
    gender: str  # 'female' or 'male'
    gender_probability: float  # probability of `gender`
    expression: str  # one of tasks.EXPRESSION_LABELS
    expression_probabilities: dict[str, float]
    attributes: dict[str, float]  # CelebA attribute name -> probability of "yes"
    embedding: np.ndarray  # (512,) float32, L2-normalised

    def to_dict(self, include_embedding: bool = True) -> dict:
        """A JSON-ready dict; the single place results become JSON."""
        d = {
            "age": round(max(0.0, self.age), 2),  # years; the regression can dip below 0
            "gender": self.gender,
            "gender_probability": round(self.gender_probability, 4),
            "expression": self.expression,
            "expression_probabilities": {
                k: round(v, 4) for k, v in self.expression_probabilities.items()
            },
            "attributes": {k: round(v, 4) for k, v in self.attributes.items()},
        }
        if include_embedding:
            d["embedding"] = [round(float(v), 6) for v in self.embedding]
        return d


def normalize_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    """L2-normalise identity embeddings along the last axis."""
    import torch

    return torch.nn.functional.normalize(embeddings.float(), dim=-1)


def unit_rows(vectors: np.ndarray | torch.Tensor) -> np.ndarray:
    """L2-normalise NumPy embeddings along the last axis (a zero vector stays zero).

    The one NumPy normalisation in swinface: galleries, flip evaluation, teacher
    targets and video tracks all go through it.
    """
    v = np.asarray(vectors)
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _as_float64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, maybe bfloat16 or on a GPU
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, np.float64)


def cosine_similarity(
    a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor
) -> float | np.ndarray:
    """Cosine similarity of embeddings along the last axis: a float for two vectors,
    row by row (broadcasting) for batches. Raw or normalised embeddings alike.

    The one implementation in swinface: verification, evaluation and training
    validation all score pairs with it.
    """
    a, b = _as_float64(a), _as_float64(b)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    score = np.clip(np.sum(a * b, axis=-1) / np.maximum(norms, 1e-12), -1.0, 1.0)
    return float(score) if score.ndim == 0 else score


def probabilities(output: SwinFaceOutput) -> dict[str, np.ndarray]:
    """Per output name: softmax probabilities for class outputs, years for age, unit embedding."""
    named = output.unpack()
    result: dict[str, np.ndarray] = {}
    for out in tasks.ALL_OUTPUTS:
        value = named[out.name].float()
        if out.kind is tasks.Kind.REGRESSION:
            value = value[:, 0]
        elif out.kind is tasks.Kind.EMBEDDING:
            value = normalize_embeddings(value)
        else:
            value = value.softmax(dim=-1)
        result[out.name] = value.detach().cpu().numpy()
    return result


def decode(output: SwinFaceOutput) -> list[FaceAttributes]:
    """Decode a batch of raw outputs into one `FaceAttributes` per face."""
    p = probabilities(output)
    gender = tasks.output("Gender")
    expression = tasks.output("Expression")
    faces = []
    for i in range(len(p[tasks.RECOGNITION.name])):
        g = int(p[gender.name][i].argmax())
        e = p[expression.name][i]
        faces.append(
            FaceAttributes(
                age=float(p["Age"][i]),
                gender=gender.labels[g],
                gender_probability=float(p[gender.name][i][g]),
                expression=expression.labels[int(e.argmax())],
                expression_probabilities={
                    lab: float(v) for lab, v in zip(expression.labels, e, strict=True)
                },
                attributes={o.celeba: float(p[o.name][i][1]) for o in tasks.ATTRIBUTE_OUTPUTS},
                embedding=p[tasks.RECOGNITION.name][i].astype(np.float32),
            )
        )
    return faces
