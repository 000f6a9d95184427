"""What makes training learn: ages regressed in spreads of the training ages, validation
beside the constant answer, the collapse guard, teachers on every face, the template's
framing for tight crops, and the trunks a small model can use."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from swinface import tasks
from swinface.data.store import StoreWriter, open_store
from swinface.model import create_model
from swinface.train.batches import LabelPriors
from swinface.train.config import ConfigError, DistillConfig, SoftTargetConfig, load_config
from swinface.train.distill import DistillationLoss
from swinface.train.losses import age_loss
from swinface.train.trainer import Trainer, TrainingCollapsed
from swinface.train.validation import (
    collapsed_figures,
    constant_figures,
    format_figures,
)
from swinface.vision.align import ARCFACE_TEMPLATE, TIGHT_CROP_LANDMARKS, frame_crop

AGE = tasks.output_slices()["Age"].start


def test_age_output_is_in_years_whatever_the_regression_scale():
    torch.manual_seed(0)
    plain = create_model("swinface_nano").eval()
    scaled = create_model("swinface_nano", age_mean=30.0, age_std=10.0).eval()
    scaled.load_state_dict(plain.state_dict())  # the same weights: only the scale differs
    x = torch.randn(2, 3, 112, 112)
    a, b = plain(x).logits, scaled(x).logits
    assert torch.allclose(b[:, AGE], a[:, AGE] * 10.0 + 30.0, atol=1e-5)
    others = [i for i in range(a.shape[1]) if i != AGE]
    assert torch.equal(a[:, others], b[:, others])
    assert plain.config.age_scaled is False  # the published structure is untouched
    with pytest.raises(ValueError, match="age_std"):
        create_model("swinface_nano", age_std=0.0)


def test_age_loss_measures_the_error_in_spreads():
    pred, true = torch.tensor([40.0, 20.0]), torch.tensor([30.0, 30.0])
    assert age_loss(pred, true, "l1", scale=10.0).item() == pytest.approx(1.0)
    # smooth L1 with beta 0.1: |d| - 0.05 past 0.1 of a spread
    assert age_loss(pred, true, "smooth_l1", scale=10.0).item() == pytest.approx(0.95)
    near = age_loss(torch.tensor([30.5]), torch.tensor([30.0]), "smooth_l1", scale=10.0)
    assert near.item() == pytest.approx(0.5 * 0.05**2 / 0.1)
    annealed = age_loss(pred, true, "annealed", scale=10.0, step=0, total_steps=10)
    assert annealed.item() == pytest.approx(50.0)  # squared years / 2: the scale is unused
    with pytest.raises(ValueError, match="unknown"):
        age_loss(pred, true, "l3")


def test_label_priors_are_the_constant_answers_of_the_training_labels():
    priors = LabelPriors.from_labels(
        age=np.array([20.0, 30.0, np.nan, 40.0], np.float32),
        gender=np.array([1, 1, 0, -1]),
        expression=np.array([3, 3, 6, -1, 6, 3]),
        attributes=np.array([[1, 0], [1, -1], [0, -1]]),
    )
    assert priors.age_mean == pytest.approx(30.0)
    assert priors.age_std == pytest.approx(math.sqrt(200 / 3))
    assert (priors.gender, priors.expression) == (1, 3)
    assert priors.attributes == (1, 0)
    assert LabelPriors.from_labels().gender is None


def _labelled_store(path, n=40):
    rng = np.random.default_rng(0)
    writer = StoreWriter(path, capacity=n)
    for i in range(n):
        writer.add(
            rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
            f"{i}.jpg",
            identity=i % 10,
            age=float(10 + i),
            gender=int(i % 4 == 0),  # a quarter of them male (1)
            expression=3 if i % 5 else 0,
            attributes=np.array([1] * 30 + [0] * 10, np.int8),
        )
    return writer.close({})


def test_constant_figures_score_the_training_answer_on_the_same_faces(tmp_path):
    store = _labelled_store(tmp_path / "s")
    priors = LabelPriors(age_mean=20.0, age_std=5.0, gender=0, expression=3, attributes=(1,) * 40)
    figures = constant_figures(store, priors)
    ages = 10 + np.arange(40)
    assert figures["constant_age_mae"] == pytest.approx(np.abs(ages - 20).mean())
    assert figures["constant_gender_accuracy"] == pytest.approx(0.75)
    assert figures["constant_expression_accuracy"] == pytest.approx(0.8)
    assert figures["constant_attributes_mean_accuracy"] == pytest.approx(0.75)
    assert figures["constant_verification_auc"] == 0.5


def test_collapse_is_a_figure_within_its_margin_of_the_constant_answer():
    figures = {
        "fer/expression_accuracy": 0.2495,
        "fer/constant_expression_accuracy": 0.2494,
        "utk/age_mae": 9.0,
        "utk/constant_age_mae": 14.8,
        "utk/gender_accuracy": 0.52,
        "utk/constant_gender_accuracy": 0.521,
        "celeba/verification_auc": 0.81,
        "celeba/constant_verification_auc": 0.5,
    }
    found = collapsed_figures(figures)
    assert [f.split()[0] for f in found] == ["fer/expression_accuracy", "utk/gender_accuracy"]
    line = format_figures(7, figures)
    assert line.startswith("validation at step 7: ")
    assert "utk/age_mae 9 (constant 14.8)" in line
    assert "constant_" not in line


def _fake_teacher_batch(n=4):
    probs = torch.tensor([[0.1, 0.9]] * n)
    return {
        "gender": torch.tensor([0, 1, -1, -1]),
        "expression": torch.full((n,), -1),
        "age": torch.tensor([25.0, float("nan"), 30.0, float("nan")]),
        "teacher_gender": probs,
    }


def test_teachers_teach_every_face_or_only_the_unlabelled():
    logits = torch.zeros(4, 88, requires_grad=True)
    for labelled, rows in ((True, [0, 1, 2, 3]), (False, [2, 3])):
        config = DistillConfig(gender=SoftTargetConfig(teacher="t", labelled=labelled))
        loss = DistillationLoss(config, 8, {})
        total, _ = loss(torch.zeros(4, 8), logits, _fake_teacher_batch(), 0, 1)
        (grad,) = torch.autograd.grad(total, logits)
        taught = grad.abs().sum(1).nonzero().flatten().tolist()
        assert taught == rows


def test_set_reads_exponent_numbers_as_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    store = _labelled_store(tmp_path / "s", n=8).path
    path.write_text(yaml.safe_dump({"tasks": {"age_gender": {"sources": [{"store": str(store)}]}}}))
    config = load_config(path, {"optim.lr": yaml.safe_load("1e-3")})
    assert config.optim.lr == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match="optim.lr: expected float"):
        load_config(path, {"optim.lr": "fast"})


def _run_config(tmp_path, store, **extra) -> dict:
    return {
        "output_dir": str(tmp_path / "run"),
        "model": "swinface_nano",
        "steps": 4,
        "num_workers": 0,
        "augment": False,
        "log_every": 100,
        "checkpoint_every": 100,
        "eval_every": 2,
        "eval_stores": {"val": str(store)},
        "tasks": {
            "age_gender": {"batch_size": 4, "sources": [{"store": str(store)}]},
            "expression": {"batch_size": 4, "sources": [{"store": str(store)}]},
        },
        "optim": {"lr": 0.0, "warmup_steps": 1},
        **extra,
    }


def test_a_run_at_the_constant_answer_after_its_warm_up_stops(tmp_path, caplog):
    """A model that cannot learn (rate 0) is stopped at its first validation past the
    warm-up, with a checkpoint; --allow-collapse lets it go on."""
    store = _labelled_store(tmp_path / "s").path
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_run_config(tmp_path, store)))
    trainer = Trainer(load_config(path))
    # the regression starts at the training mean age: its constant answer from the first step
    assert trainer.model.config.age_mean == pytest.approx(29.5)
    with (
        caplog.at_level("INFO", logger="swinface.train"),
        pytest.raises(TrainingCollapsed, match="no better than a constant answer.*val/"),
    ):
        trainer.fit()
    assert trainer.step == 2
    assert (tmp_path / "run" / "checkpoints" / "latest").is_file()
    assert any("(constant " in r.getMessage() for r in caplog.records)
    path.write_text(yaml.safe_dump(_run_config(tmp_path / "b", store, allow_collapse=True)))
    going_on = Trainer(load_config(path))
    going_on.fit()
    assert going_on.step == 4


def test_published_age_loss_keeps_years(tmp_path):
    store = _labelled_store(tmp_path / "s").path
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_run_config(tmp_path, store, age_loss="annealed")))
    assert Trainer(load_config(path)).model.config.age_scaled is False


def test_a_tight_crop_lands_in_the_template_framing():
    """Without a detector the crop's median landmarks go onto the template: a bright dot
    drawn at the left-eye place of a 48x48 crop lands on the template's left eye."""
    crop = np.zeros((48, 48), np.uint8)
    x, y = (TIGHT_CROP_LANDMARKS[0] * 48).round().astype(int)
    crop[y - 1 : y + 2, x - 1 : x + 2] = 255
    framed = frame_crop(crop)
    assert framed.shape == (112, 112, 3)
    ys, xs = np.nonzero(framed[..., 0] > 100)
    assert abs(xs.mean() - ARCFACE_TEMPLATE[0, 0]) < 2.5
    assert abs(ys.mean() - ARCFACE_TEMPLATE[0, 1]) < 2.5


def test_a_real_fer_face_is_framed_like_a_face_in_a_photo(tmp_path):
    """On a FER2013 face the detector finds the face again in the framed crop, with its
    landmarks on the template (a plain resize leaves them far off)."""
    from conftest import NEEDS_DATA, SHARED_DATA

    from swinface.vision import RetinaFaceDetector, load_image, resize_face

    files = sorted((SHARED_DATA / "fer2013" / "val" / "happy").glob("*.jpg"))[:6]
    if not files:
        pytest.skip(NEEDS_DATA)
    detector = RetinaFaceDetector()
    framed_error, resized_error = [], []
    for file in files:
        crop = load_image(file)
        for face, errors in (
            (frame_crop(crop, detector), framed_error),
            (resize_face(crop), resized_error),
        ):
            padded = np.pad(face, ((56, 56), (56, 56), (0, 0)), mode="edge")
            found = detector.detect(padded)
            if found:
                best = max(found, key=lambda d: d.score)
                errors.append(np.abs(best.landmarks - 56 - ARCFACE_TEMPLATE).mean())
    assert len(framed_error) >= 5
    assert np.median(framed_error) < 3.5  # pixels: the detector's own spread at this size
    assert np.median(resized_error) > 2 * np.median(framed_error)


@pytest.mark.parametrize(
    "overrides",
    [
        {"stem": "conv"},
        {"trunk": "resnet10t", "trunk_dims": (64, 128, 256, 512)},
        {"trunk": "convnext_atto", "trunk_dims": (40, 80, 160, 320)},
    ],
    ids=["swin-conv-stem", "resnet", "convnext"],
)
def test_other_trunks_keep_every_output_and_learn(overrides):
    torch.manual_seed(0)
    model = create_model("swinface_nano", **overrides).train()
    x = torch.randn(4, 3, 112, 112)
    out = model(x)
    assert out.embedding.shape == (4, 64) and out.logits.shape == (4, 88)
    (out.logits.square().mean() + out.embedding.square().mean()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_cnn_trunk_with_wrong_channels_is_refused():
    with pytest.raises(ValueError, match="the config says"):
        create_model("swinface_nano", trunk="resnet10t", trunk_dims=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="not a supported"):
        create_model("swinface_nano", trunk="vit_tiny", trunk_dims=(1, 2, 3, 4))


def test_store_records_the_crop_framing(tmp_path):
    from swinface.data.prepare import prepare_samples
    from swinface.data.samples import Sample

    crop = np.full((48, 48), 128, np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), crop)
    samples = [Sample(image=tmp_path / "a.png", expression=3)]
    store, report = prepare_samples(samples, tmp_path / "store", crops=True, progress=False)
    assert report.aligned == 1
    assert open_store(store.path).meta["crop_mode"] is True
    with pytest.raises(ValueError, match="choose one"):
        prepare_samples(samples, tmp_path / "other", crops=True, aligned=True, progress=False)


@pytest.mark.parametrize(
    "name", ["default.yaml", "proof.yaml", "proof-yardstick.yaml", "laptop.yaml", "public.yaml"]
)
def test_shipped_configs_load_and_build_their_model(name):
    """Every shipped recipe validates and names a model that builds (the proof's model
    and yardstick included); the default recipe teaches on every face."""
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / name)
    model = create_model(config.model, **config.model_overrides)
    assert model.config.dropout <= 0.5
    if name == "default.yaml":
        assert config.age_loss == "smooth_l1" and config.age_loss_weight == 1.0
        assert config.distill.expression.labelled and config.distill.age.labelled
        assert all(s.targets for s in config.tasks["expression"].sources)


def test_prepare_crops_frames_a_fer_layout_and_refuses_both_framings(tmp_path, capsys):
    import cv2

    from swinface.cli import main

    for emotion in ("happy", "sad"):
        folder = tmp_path / "fer" / "train" / emotion
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "Training_1.jpg"), np.full((48, 48), 90, np.uint8))
    out = tmp_path / "store"
    assert main(["prepare", "fer2013-folders", str(tmp_path / "fer"), str(out), "--crops"]) == 0
    store = open_store(out)
    assert len(store) == 2 and store.meta["crop_mode"] is True
    assert sorted(store.labels["expression"].tolist()) == sorted(
        [tasks.EXPRESSION_LABELS.index("happiness"), tasks.EXPRESSION_LABELS.index("sadness")]
    )
    with pytest.raises(SystemExit):
        main(
            ["prepare", "fer2013-folders", str(tmp_path / "fer"), str(out), "--crops", "--aligned"]
        )
    assert "not allowed with argument" in capsys.readouterr().err
