"""How closely one model's outputs follow a reference's on the same faces: the figures that
decide whether a quantised or faster path may replace float32."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from swinface import tasks
from swinface.decode import cosine_similarity


@dataclass(frozen=True)
class Agreement:
    faces: int
    embedding_cosine_mean: float
    embedding_cosine_min: float
    expression_agreement: float  # share of faces with the same top expression
    gender_agreement: float
    attribute_agreement: float  # mean over the 40 attributes of the same yes/no
    age_difference_mean: float  # years

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def meets(self, floors: AgreementFloors | None = None) -> bool:
        f = floors or AgreementFloors()
        return (
            self.embedding_cosine_mean >= f.embedding_cosine_mean
            and self.embedding_cosine_min >= f.embedding_cosine_min
            and self.expression_agreement >= f.expression_agreement
            and self.gender_agreement >= f.gender_agreement
            and self.attribute_agreement >= f.attribute_agreement
            and self.age_difference_mean <= f.age_difference_mean
        )


@dataclass(frozen=True)
class AgreementFloors:
    """What a replacement for float32 must reach to become a default."""

    embedding_cosine_mean: float = 0.995
    embedding_cosine_min: float = 0.98
    expression_agreement: float = 0.99
    gender_agreement: float = 0.99
    attribute_agreement: float = 0.99
    age_difference_mean: float = 0.3


def agreement(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> Agreement:
    """Compare two `decode.probabilities` results over the same faces."""
    embedding = tasks.RECOGNITION.name
    cosines = np.atleast_1d(cosine_similarity(reference[embedding], other[embedding]))

    def same_top(name: str) -> float:
        return float(np.mean(reference[name].argmax(1) == other[name].argmax(1)))

    attributes = np.mean([same_top(o.name) for o in tasks.ATTRIBUTE_OUTPUTS])
    return Agreement(
        faces=len(cosines),
        embedding_cosine_mean=float(cosines.mean()),
        embedding_cosine_min=float(cosines.min()),
        expression_agreement=same_top("Expression"),
        gender_agreement=same_top("Gender"),
        attribute_agreement=float(attributes),
        age_difference_mean=float(np.abs(reference["Age"] - other["Age"]).mean()),
    )
