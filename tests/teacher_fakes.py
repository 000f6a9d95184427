"""A tiny teacher whose "package" is numpy (always installed), for registry and targets tests."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from swinface.atomic import atomic_path
from swinface.teachers.base import (
    Crop,
    CropKind,
    PackageFile,
    Preprocess,
    Reading,
    Teacher,
    TeacherInput,
    TeacherOutput,
)
from swinface.teachers.registry import sha256_of

NUMPY_FILE = "numpy/__init__.py"


def tiny_convert(source: Path, out: Path) -> Path:
    """A graph: mean colour of the face as a 3-d 'embedding', and 2 gender logits from it."""
    assert Path(source).is_file()
    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])
    emb = helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 3])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    weight = numpy_helper.from_array(
        np.array([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]], np.float32), "w"
    )
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["emb"]),
        helper.make_node("MatMul", ["emb", "w"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [emb, logits], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return Path(out)


def tiny_teacher(name: str = "tiny", **changes) -> Teacher:
    dist = importlib.metadata.distribution("numpy")
    file = Path(str(dist.locate_file(NUMPY_FILE)))
    fields = dict(
        name=name,
        description="mean colour",
        package="numpy",
        version=dist.version,
        files=(PackageFile(NUMPY_FILE, sha256_of(file)),),
        licence="BSD-3-Clause",
        converter=tiny_convert,
        check=None,
        inputs=(TeacherInput("data", Crop(CropKind.ARCFACE, 112), Preprocess(scale=1 / 255)),),
        outputs=(
            TeacherOutput("emb", "embedding", Reading.EMBEDDING, size=3),
            # [male, female] on purpose: the runner must reorder to swinface's [female, male]
            TeacherOutput("logits", "gender", Reading.LOGITS, labels=("man", "woman")),
        ),
    )
    fields.update(changes)
    return Teacher(**fields)


def expected_outputs(teacher_scale: float, faces: np.ndarray) -> dict[str, np.ndarray]:
    """What `tiny_teacher` must predict for aligned `faces`, computed directly."""
    mean = faces.reshape(len(faces), -1, 3).astype(np.float64).mean(1) * teacher_scale
    emb = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    logits = np.stack([mean[:, 0] - mean[:, 2], mean[:, 2] - mean[:, 0]], 1)  # [man, woman]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return {"embedding": emb, "gender": p[:, ::-1]}  # [female, male]
