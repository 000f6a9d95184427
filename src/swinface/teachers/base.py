"""What a teacher is: a face model shipped inside a registry package, declared once.

A `Teacher` says where its weights come from (package, version, file inside the
package, SHA-256, licence), how to turn them into one ONNX graph (its
converter), what each graph input wants (crop and preprocessing) and what each
graph output teaches, mapped onto swinface's task table (`swinface.tasks`).
Nothing here runs a model; `swinface.teachers.runner` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from swinface import tasks
from swinface.errors import SwinFaceError


class TeacherError(SwinFaceError, ValueError):
    """A teacher that cannot be found, checked, converted or run: says what to do."""


class CropKind(StrEnum):
    """How a teacher's input is cut from a face with five landmarks."""

    ARCFACE = "arcface"  # the 5-point similarity onto the ArcFace 112x112 template, scaled
    DLIB_CHIP = "dlib-chip"  # dlib's get_face_chip_details(shape, size, padding)
    GREY = "grey"  # the aligned face, resized and converted to one grey channel


@dataclass(frozen=True)
class Crop:
    """The square crop a graph input wants, `size` pixels a side."""

    kind: CropKind
    size: int
    padding: float = 0.0  # dlib chips only: border around dlib's mean face, as a fraction

    def describe(self) -> str:
        if self.kind is CropKind.DLIB_CHIP:
            return f"dlib chip {self.size}x{self.size}, padding {self.padding}"
        if self.kind is CropKind.GREY:
            return f"aligned face resized to {self.size}x{self.size} grey"
        return f"ArcFace-aligned {self.size}x{self.size}"


@dataclass(frozen=True)
class Preprocess:
    """uint8 pixels to the graph's float32 input: ``(x - mean) * scale``, then the layout.

    `mean` has one value per channel (RGB order, or one for grey). The
    identity (mean 0, scale 1) is right for graphs that normalise themselves.
    """

    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    layout: str = "nchw"  # or "nhwc"

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, C) uint8 crops to the float32 batch the graph takes."""
        x = crops.astype(np.float32)
        x -= np.asarray(self.mean, dtype=np.float32)
        x *= np.float32(self.scale)
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)


@dataclass(frozen=True)
class TeacherInput:
    """One input of the converted graph."""

    name: str
    crop: Crop
    preprocess: Preprocess = Preprocess()


class Reading(StrEnum):
    """How a graph output is read."""

    EMBEDDING = "embedding"  # a vector compared by cosine similarity
    PROBABILITIES = "probabilities"  # softmax already in the graph
    LOGITS = "logits"  # softmax applied here
    DISTRIBUTION = "distribution"  # probabilities over `values`; the expectation is the value
    VALUE = "value"  # the quantity itself, one per face (an age in years)


# Teachers name classes their own way; these spellings map onto swinface's labels.
LABEL_SYNONYMS: dict[str, str] = {
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
    "man": "male",
    "woman": "female",
}


@dataclass(frozen=True)
class TeacherOutput:
    """One output of the converted graph and the swinface task it teaches.

    `task` is a key of `swinface.tasks` (``embedding``, ``gender``, ``age``,
    ``expression``). `labels` is the teacher's own class order; `values` the
    quantity of each class for a distribution (ages of the 81 age classes).
    """

    name: str
    task: str
    reading: Reading
    labels: tuple[str, ...] = ()
    values: tuple[float, ...] = ()
    size: int | None = None  # embedding length
    threshold: float | None = None  # cosine threshold for same/different, embeddings only

    def __post_init__(self) -> None:
        out = tasks.output(self.task)  # raises on an unknown task
        if self.reading is Reading.DISTRIBUTION and not self.values:
            raise ValueError(f"{self.name}: a distribution needs the value of each class")
        if out.labels and self.reading in (Reading.PROBABILITIES, Reading.LOGITS):
            self.label_order()  # every teacher label must map onto a swinface label

    def label_order(self) -> np.ndarray:
        """Column `i` of swinface's order is column `order[i]` of the teacher's output."""
        ours = tasks.output(self.task).labels
        theirs = [LABEL_SYNONYMS.get(label.lower(), label.lower()) for label in self.labels]
        if sorted(theirs) != sorted(ours):
            raise ValueError(
                f"{self.name}: labels {self.labels} do not map onto swinface's "
                f"{self.task} labels {ours}"
            )
        return np.array([theirs.index(label) for label in ours])


@dataclass(frozen=True)
class PackageFile:
    """A file inside an installed package (path relative to site-packages), with its hash."""

    path: str
    sha256: str
    size: int | None = None


Converter = Callable[..., Path]
"""``convert(*source_files, out) -> out``: writes one float32 ONNX graph."""


@dataclass(frozen=True)
class CheckResult:
    """How closely a converted graph matches the original on sample faces."""

    metric: str  # e.g. "least cosine similarity", "largest absolute difference"
    value: float
    tolerance: float
    higher_is_better: bool
    faces: int

    @property
    def ok(self) -> bool:
        if self.higher_is_better:
            return self.value >= self.tolerance
        return self.value <= self.tolerance

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "value": self.value,
            "tolerance": self.tolerance,
            "faces": self.faces,
            "ok": self.ok,
        }

    def __str__(self) -> str:
        bound = ">=" if self.higher_is_better else "<="
        return f"{self.metric} {self.value:.3g} on {self.faces} faces, needs {bound} {self.tolerance:g}"


Checker = Callable[..., CheckResult]
"""``check(*source_files, converted) -> CheckResult``: the converted graph against the original."""


@dataclass(frozen=True)
class Teacher:
    """A teacher model: where it comes from, how it is converted, what it teaches."""

    name: str
    description: str
    package: str  # the distribution name on PyPI (or npm, for `install` to say)
    version: str
    files: tuple[PackageFile, ...]
    licence: str
    converter: Converter
    inputs: tuple[TeacherInput, ...]
    outputs: tuple[TeacherOutput, ...]
    check: Checker | None = None  # converted graph against the original, run by `ensure`
    install: str = ""  # the command that installs the package; defaults to pip
    reference: str = ""  # published accuracy, for the listing
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def install_command(self) -> str:
        return self.install or f"pip install {self.package}=={self.version}"

    @property
    def needs_source(self) -> bool:
        """True for a package Python cannot import (npm): its files come through --source."""
        return self.install_command.startswith("npm ")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(o.task for o in self.outputs))

    def fingerprint(self) -> dict:
        """What a cached conversion must match to be reused."""
        return {
            "teacher": self.name,
            "package": self.package,
            "version": self.version,
            "files": {f.path: f.sha256 for f in self.files},
            "inputs": [i.name for i in self.inputs],
            "outputs": [o.name for o in self.outputs],
        }
