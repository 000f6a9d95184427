"""Distillation: the soft-target and embedding losses, teacher targets in batches, training
with them (every loss falls, resume continues the run), time-boxed chunks, clear errors."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from swinface.data.store import StoreWriter
from swinface.data.targets import TargetsError, write_targets
from swinface.train.config import ConfigError, load_config
from swinface.train.distill import embedding_losses, soft_target_loss
from swinface.train.trainer import Trainer, train

TEACHER_DIM = 12


class FakeTeacher:
    """Deterministic "teacher outputs" computed from the faces themselves (no ONNX needed)."""

    def __init__(self, name: str, tasks: tuple[str, ...], path: Path) -> None:
        path.write_bytes(name.encode())
        self.path = path
        self.teacher = types.SimpleNamespace(
            name=name, package="numpy", version="0", licence="test", tasks=tasks
        )

    def predict(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        x = faces.reshape(len(faces), -1, 3)[:, ::97].astype(np.float32) / 255  # (N, P, 3)
        feats = np.concatenate([x.mean(1), x.std(1), x[:, :2].reshape(len(x), -1)], axis=1)
        out = {}
        for task in self.teacher.tasks:
            if task == "embedding":
                e = np.tile(feats, 2)[:, :TEACHER_DIM] - 0.5
                out[task] = e / np.linalg.norm(e, axis=1, keepdims=True)
            elif task == "age":
                out[task] = 20 + 40 * feats[:, 0]
            else:
                k = 7 if task == "expression" else 2
                logits = 4 * np.tile(feats, 2)[:, :k]
                p = np.exp(logits - logits.max(1, keepdims=True))
                out[task] = p / p.sum(1, keepdims=True)
        return out


def _store(path: Path, n: int = 12, with_targets: bool = True) -> Path:
    """Faces with identities and attributes only: expression, gender and age come from
    the teachers."""
    rng = np.random.default_rng(1)
    writer = StoreWriter(path, capacity=n)
    for i in range(n):
        face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        face[: 10 * (i % 5)] //= 3  # faces differ in ways the fake teachers see
        writer.add(
            face, f"{i}.jpg", identity=i % 3, attributes=rng.integers(0, 2, 40).astype(np.int8)
        )
    store = writer.close({})
    if with_targets:
        teachers = [
            FakeTeacher("fake-id", ("embedding",), path.parent / "id.onnx"),
            FakeTeacher("fake-face", ("expression", "gender", "age"), path.parent / "face.onnx"),
        ]
        write_targets(store, teachers, chunk=5, progress=False)
    return path


DISTILL = {
    "embedding": {"teachers": ["fake-id"], "weight": 1.0, "relation_weight": 1.0},
    "expression": {"teacher": "fake-face", "weight": 1.0, "temperature": 2.0},
    "gender": {"teacher": "ensemble", "weight": 1.0, "temperature": 1.0},
    "age": {"teacher": "ensemble", "weight": 0.05},
}


def _config(tmp_path: Path, store: Path, **overrides) -> Path:
    source = {"store": str(store), "targets": True}
    data = {
        "output_dir": str(tmp_path / "run"),
        "model": "swinface_nano",
        "steps": 40,
        "num_workers": 0,
        "augment": False,
        "log_every": 1,
        "checkpoint_every": 1000,
        "tasks": {
            "identity": {"batch_size": 6, "sources": [source]},
            "attributes": {"batch_size": 6, "sources": [source]},
        },
        "distill": DISTILL,
        "optim": {"lr": 3e-3, "warmup_steps": 1, "backbone_lr_scale": 1.0, "min_lr_ratio": 1.0},
    }
    data.update(overrides)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return _store(tmp_path_factory.mktemp("distill") / "store")


def test_soft_targets_are_knowledge_distillation_on_the_teachers_logits():
    torch.manual_seed(0)
    student, teacher_logits = torch.randn(5, 7), torch.randn(5, 7)
    for t in (1.0, 2.0, 4.0):
        expected = (
            F.kl_div(
                F.log_softmax(student / t, 1),
                F.softmax(teacher_logits / t, 1),
                reduction="batchmean",
            )
            * t**2
        )
        got = soft_target_loss(student, F.softmax(teacher_logits, 1), t)
        assert math.isclose(float(got), float(expected), rel_tol=1e-4, abs_tol=1e-6)
    assert float(soft_target_loss(teacher_logits, F.softmax(teacher_logits, 1), 3.0)) < 1e-6


def test_embedding_losses_vanish_only_when_student_agrees_with_teacher():
    torch.manual_seed(0)
    teacher = F.normalize(torch.randn(6, 4), dim=1)
    student = torch.cat([teacher, torch.zeros(6, 4)], dim=1)  # same geometry, more dimensions
    cosine, relation = embedding_losses(student, teacher * 3, teacher)
    assert float(cosine) < 1e-6 and float(relation) < 1e-10
    cosine, relation = embedding_losses(torch.randn(6, 8), -teacher, teacher)
    assert float(cosine) > 1.9 and float(relation) > 0.01


def test_batches_carry_teacher_rows_and_nan_where_a_store_has_none(tmp_path, store):
    plain = _store(tmp_path / "plain", n=6, with_targets=False)
    config = load_config(
        _config(
            tmp_path,
            store,
            tasks={
                "identity": {"batch_size": 4, "sources": [{"store": str(store), "targets": True}]},
                "attributes": {"batch_size": 4, "sources": [{"store": str(plain)}]},
            },
        )
    )
    trainer = Trainer(config)
    batch = trainer.data[0]
    emb = batch["teacher_embedding/fake-id"]
    assert emb.shape == (8, TEACHER_DIM) and batch["teacher_expression"].shape == (8, 7)
    first = list(config.tasks).index("identity") * 4  # the batch holds the tasks in turn
    mine, other = slice(first, first + 4), slice(4 - first, 8 - first)
    assert not torch.isnan(emb[mine]).any() and torch.isnan(emb[other]).all()
    assert torch.isnan(batch["teacher_age"][other]).all()
    rows = [i for _, i in trainer.data.indices(0)["identity"]]
    targets = trainer.data.sources["identity"][0].teacher
    np.testing.assert_allclose(emb[mine].numpy(), targets["teacher_embedding/fake-id"][rows])


def test_every_distillation_loss_falls_on_a_fixed_batch(tmp_path, store):
    small = {"batch_size": 4, "sources": [{"store": str(store), "targets": True}]}
    tasks = {"identity": small, "attributes": small}
    trainer = Trainer(load_config(_config(tmp_path, store, tasks=tasks)))
    batch = trainer.data[0]
    first = trainer.train_step(batch)
    for _ in range(40):
        last = trainer.train_step(batch)
    names = [k for k in first if k.startswith("distill_")]
    assert sorted(names) == sorted(
        [
            "distill_fake-id_cosine",
            "distill_fake-id_relation",
            "distill_expression",
            "distill_gender",
            "distill_age",
        ]
    )
    for name in names:
        assert last[name] < 0.7 * first[name], f"{name}: {first[name]:.4f} -> {last[name]:.4f}"


def test_a_resumed_distillation_run_is_the_uninterrupted_one(tmp_path, store):
    whole = train(load_config(_config(tmp_path / "whole", store, steps=4)))
    config = load_config(_config(tmp_path / "parts", store, steps=4))
    train(config, max_steps=2)
    assert len(list((Path(config.output_dir) / "checkpoints").glob("*/distill.safetensors"))) == 1
    resumed = train(config)
    assert resumed.history[0]["step"] == 3
    for a, b in zip(whole.history[2:], resumed.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for (name, p), q in zip(
        whole.distill.state_dict().items(), resumed.distill.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)


def test_max_minutes_stops_with_a_checkpoint_and_the_next_chunk_goes_on(tmp_path, store):
    config = load_config(_config(tmp_path, store, steps=50))
    first = train(config, max_minutes=1e-6)
    assert first.step == 1
    assert (Path(config.output_dir) / "checkpoints" / "latest").is_file()
    second = train(config, max_steps=1)
    assert second.step == 2


def test_a_store_without_targets_names_its_file_and_the_command(tmp_path):
    plain = _store(tmp_path / "plain", n=6, with_targets=False)
    with pytest.raises(TargetsError, match=r"targets/meta\.json.*swinface distill-targets"):
        Trainer(load_config(_config(tmp_path, plain)))


def test_a_teacher_the_targets_lack_is_named(tmp_path, store):
    distill = {**DISTILL, "embedding": {"teachers": ["sface"]}}
    with pytest.raises(TargetsError, match=r"no sface embedding targets.*fake-id/embedding"):
        Trainer(load_config(_config(tmp_path, store, distill=distill)))


def test_a_store_lacking_one_teacher_skips_that_loss_when_another_store_has_it(tmp_path, store):
    """FER2013's faces carry expression targets but no identity embedding: their rows are
    NaN for the embedding (no loss) while the CelebA-like store's faces learn from it."""
    expression_only = _store(tmp_path / "fer", n=6, with_targets=False)
    teacher = FakeTeacher("fake-face", ("expression", "gender", "age"), tmp_path / "f.onnx")
    write_targets(expression_only, [teacher], chunk=5, progress=False)
    tasks = {
        "identity": {"batch_size": 4, "sources": [{"store": str(store), "targets": True}]},
        "attributes": {
            "batch_size": 4,
            "sources": [{"store": str(expression_only), "targets": True}],
        },
    }
    trainer = Trainer(load_config(_config(tmp_path, store, tasks=tasks)))
    batch = trainer.data[0]
    first = list(trainer.config.tasks).index("identity") * 4  # tasks in turn, 4 rows each
    mine, other = slice(first, first + 4), slice(4 - first, 8 - first)
    emb = batch["teacher_embedding/fake-id"]
    assert not torch.isnan(emb[mine]).any() and torch.isnan(emb[other]).all()
    assert not torch.isnan(batch["teacher_expression"]).any()  # both stores have it
    parts = trainer.train_step(batch)
    assert np.isfinite(parts["distill_fake-id_cosine"]) and np.isfinite(parts["loss"])


def test_distillation_without_a_store_of_targets_is_a_config_error(tmp_path, store):
    tasks = {"attributes": {"batch_size": 2, "sources": [{"store": str(store)}]}}
    with pytest.raises(ConfigError, match="targets: true"):
        load_config(_config(tmp_path, store, tasks=tasks))
    with pytest.raises(ConfigError, match="temperature"):
        load_config(_config(tmp_path, store, distill={"gender": {"temperature": 0}}))


def test_the_train_command_takes_dotted_overrides_and_a_time_box(tmp_path, store, capsys):
    from safetensors import safe_open

    from swinface.cli import main

    config = _config(tmp_path, store, steps=50)
    args = ["train", str(config), "--set", "tasks.identity.batch_size=3", "--set", "seed=7"]
    assert main([*args, "--steps", "40", "--max-minutes", "0.000001"]) == 0
    assert "step 1 of 40" in capsys.readouterr().out
    model = next((tmp_path / "run" / "checkpoints").glob("*/model.safetensors"))
    with safe_open(str(model), framework="pt") as f:
        saved = json.loads(f.metadata()["train_config"])
    assert saved["tasks"]["identity"]["batch_size"] == 3 and saved["seed"] == 7
    assert saved["steps"] == 40
    assert main(["train", str(config), "--set", "steps"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["train", str(config), "--set", "optim.lr.x=1"]) == 2
    assert "optim.lr is not a mapping" in capsys.readouterr().err
