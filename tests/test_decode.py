"""Decoding raw outputs into meaning, and the aligned-face API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import swinface
from swinface import tasks
from swinface.decode import decode
from swinface.model import SwinFaceOutput


def test_decode_reads_the_task_table():
    logits = torch.zeros(1, tasks.PACKED_SIZE)
    s = tasks.output_slices()
    logits[0, s["Age"]] = 37.5
    logits[0, s["Gender"]] = torch.tensor([2.0, 0.0])  # female
    logits[0, s["Expression"]] = torch.tensor([0, 0, 0, 5.0, 0, 0, 0])  # happiness
    logits[0, s["Eyeglasses"]] = torch.tensor([0.0, 3.0])
    embedding = torch.tensor([[3.0, 4.0] + [0.0] * 510])
    face = decode(SwinFaceOutput(embedding, logits))[0]
    assert face.age == pytest.approx(37.5)
    assert face.gender == "female"
    assert face.gender_probability == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert face.expression == "happiness"
    assert sum(face.expression_probabilities.values()) == pytest.approx(1.0)
    assert list(face.expression_probabilities) == list(tasks.EXPRESSION_LABELS)
    assert len(face.attributes) == 40 and set(face.attributes) == set(tasks.CELEBA_ATTRIBUTES)
    assert face.attributes["Eyeglasses"] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert face.attributes["Male"] == pytest.approx(1 - face.gender_probability)
    np.testing.assert_allclose(face.embedding[:2], [0.6, 0.8], atol=1e-6)
    d = face.to_dict()
    assert d["gender"] == "female" and len(d["embedding"]) == 512


def test_analyze_aligned_returns_raw_and_decoded(conformance_model, reference_outputs):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)
    result = swinface.analyze_aligned(conformance_model, faces, batch_size=2)
    assert len(result.faces) == 3
    assert result.raw["Expression"].shape == (3, 7)
    assert result.raw["Recognition"].shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(result.faces[1].embedding), 1.0, atol=1e-5)
    # Batched in twos, the third face gives the same answer as alone.
    alone = swinface.analyze_aligned(conformance_model, faces[2])
    np.testing.assert_allclose(alone.raw["Age"][0], result.raw["Age"][2], atol=1e-4)


def test_analyze_aligned_names_the_bad_face(conformance_model):
    good = np.zeros((112, 112, 3), np.uint8)
    with pytest.raises(
        ValueError,
        match=r"face 1: expected an aligned RGB face of shape \(112, 112, 3\), got \(100, 100, 3\)",
    ):
        swinface.analyze_aligned(conformance_model, [good, np.zeros((100, 100, 3), np.uint8)])
    with pytest.raises(ValueError, match="face 0: expected uint8"):
        swinface.analyze_aligned(conformance_model, [good.astype(np.float32)])
