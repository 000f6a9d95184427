"""The records every dataset reader yields: one labelled face image, or one verification pair.

Labels follow the task table (`swinface.tasks`): `gender` indexes
`GENDER_LABELS` (0 female, 1 male), `expression` indexes `EXPRESSION_LABELS`,
`attributes` holds the 40 CelebA attributes in CelebA column order as 0/1.
A label a dataset does not have is `None`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ImageRef = str | Path | bytes | np.ndarray  # a path, encoded image bytes, or RGB uint8 pixels


@dataclass
class Sample:
    """One face image and whatever labels its dataset gives it."""

    image: ImageRef
    source: str = ""  # where it came from, for messages: "file.csv:12" or a path
    identity: int | None = None
    age: float | None = None  # years (the mean apparent age for CLAP2015)
    age_std: float | None = None  # standard deviation of the apparent age (CLAP2015)
    gender: int | None = None
    expression: int | None = None
    attributes: np.ndarray | None = None  # (40,) int8, 0/1
    groups: dict[str, str] = field(default_factory=dict)  # e.g. {"race": "Asian"}
    split: str | None = None  # the dataset's own split name, where it has one


@dataclass
class Pair:
    """A verification pair: two faces and whether they show the same person."""

    image_a: ImageRef
    image_b: ImageRef
    same: bool
    source: str = ""
    fold: int | None = None  # the dataset's own fold, where it defines one


@dataclass
class LabelError:
    """A malformed label line: where, and what is wrong with it."""

    source: str  # "file:line"
    problem: str

    def __str__(self) -> str:
        return f"{self.source}: {self.problem}"
