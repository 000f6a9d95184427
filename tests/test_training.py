"""Training end to end on CPU: overfitting, stop and resume, two processes, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from swinface.cli import main
from swinface.data.store import StoreWriter
from swinface.model import SwinFace
from swinface.train.config import load_config
from swinface.train.losses import TaskTargets
from swinface.train.trainer import Trainer

TASKS = ("identity", "age_gender", "attributes", "expression")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """16 random faces, each carrying every label (4 identities)."""
    path = tmp_path_factory.mktemp("data") / "store"
    rng = np.random.default_rng(0)
    writer = StoreWriter(path, capacity=16)
    for i in range(16):
        writer.add(
            rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
            f"{i}.jpg",
            identity=i % 4,
            age=float(18 + 3 * i),
            gender=i % 2,
            expression=i % 7,
            attributes=rng.integers(0, 2, 40).astype(np.int8),
        )
    writer.close({})
    return path


def _config(tmp_path: Path, store: Path, **overrides) -> Path:
    data = {
        "output_dir": str(tmp_path / "run"),
        "model": "swinface_nano",
        "steps": 30,
        "num_workers": 0,
        "augment": False,
        "log_every": 1,
        "checkpoint_every": 1000,
        "tasks": {t: {"batch_size": 4, "sources": [{"store": str(store)}]} for t in TASKS},
        "optim": {
            "lr": 3e-3,
            "warmup_steps": 1,
            "backbone_lr_scale": 1.0,
            "weight_decay": 0.0,
            "min_lr_ratio": 1.0,
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _losses_on(trainer: Trainer, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Every task's loss on `batch`, the age loss at its start-of-training form."""
    with torch.no_grad():
        out = trainer.model(SwinFace.preprocess(batch["images"]))
        targets = TaskTargets(
            batch["age"], batch["gender"], batch["expression"], batch["attributes"]
        )
        _, parts = trainer.task_loss(out.logits, targets, 0, 1)
        parts["identity"] = float(trainer.partial_fc(out.embedding, batch["identity"]))
    return parts


def test_tiny_model_overfits_a_fixed_batch_for_every_task(tmp_path, store):
    trainer = Trainer(load_config(_config(tmp_path, store)))
    batch = trainer.data[0]
    before = _losses_on(trainer, batch)
    for _ in range(30):
        trainer.train_step(batch)
    after = _losses_on(trainer, batch)
    assert set(before) == {"age", "gender", "attributes", "expression", "identity"}
    for task, loss in before.items():
        assert after[task] <= loss / 2, f"{task}: {loss:.3f} -> {after[task]:.3f}"


def test_stop_and_resume_continues_the_same_run(tmp_path, store):
    overrides = {
        "steps": 4,
        "augment": True,  # the augmentation's randomness must resume too
        "identity_loss": {"sample_rate": 0.5},  # and Partial FC's sampling
        "optim": {"min_lr_ratio": 0.0, "warmup_steps": 2},
    }
    whole = Trainer(load_config(_config(tmp_path / "a", store, **overrides)))
    whole.fit()
    first = Trainer(load_config(_config(tmp_path / "b", store, **overrides)))
    first.fit(max_steps=2)
    checkpoint = first.save_checkpoint()
    resumed = Trainer(load_config(_config(tmp_path / "b", store, **overrides)))
    assert resumed.latest_checkpoint() == checkpoint
    resumed.load_checkpoint(checkpoint)
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 4
    for a, b in zip(whole.history[2:], resumed.history, strict=True):
        assert a["step"] == b["step"]
        for key in ("loss", "age", "gender", "attributes", "expression", "identity", "lr"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    for (name, p), q in zip(
        whole.model.named_parameters(), resumed.model.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


def test_two_gloo_processes_hold_identical_weights_after_each_step(tmp_path, store):
    config = _config(
        tmp_path,
        store,
        steps=3,
        augment=True,
        tasks={t: {"batch_size": 2, "sources": [{"store": str(store)}]} for t in TASKS},
    )
    worker = Path(__file__).with_name("dist_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(worker),
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in ranks[0]] == [1, 2, 3]
    for a, b in zip(*ranks, strict=True):
        assert a["model"] == b["model"], f"replicas differ after step {a['step']}"
        assert a["shard_rows"] == b["shard_rows"] == 2  # 4 identities, sharded over 2 ranks
    # Each rank saw its own data: the losses differ while the weights agree.
    assert [a["loss"] for a in ranks[0]] != [b["loss"] for b in ranks[1]]


def test_train_command_writes_checkpoints_and_logs_and_resumes(tmp_path, store, capsys):
    config = _config(tmp_path, store, steps=3, checkpoint_every=2)
    assert main(["train", str(config), "--max-steps", "2"]) == 0
    run = tmp_path / "run"
    step2 = run / "checkpoints" / "step_0000002"
    assert (step2 / "model.safetensors").is_file()
    assert (step2 / "partial_fc_rank0.safetensors").is_file()
    assert "step 2 of 3" in capsys.readouterr().out
    assert main(["train", str(config)]) == 0
    assert "step 3 of 3" in capsys.readouterr().out
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 4
    # A checkpoint's model loads as ordinary weights.
    from swinface.weights import load_model

    model = load_model(run / "checkpoints" / "step_0000003" / "model.safetensors", device="cpu")
    assert model.config.embed_dim == 16


def test_periodic_validation_scores_every_label_of_a_store(tmp_path, store):
    config = _config(tmp_path, store, steps=2, eval_every=2, eval_stores={"val": str(store)})
    trainer = Trainer(load_config(config))
    trainer.fit()
    lines = (tmp_path / "run" / "validation.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["step"] == 2
    for key in (
        "age_mae",
        "age_cs5",
        "gender_accuracy",
        "expression_accuracy",
        "attributes_mean_accuracy",
        "verification_auc",
        "verification_accuracy",
    ):
        value = record[f"val/{key}"]
        assert np.isfinite(value), key
    assert 0.0 <= record["val/gender_accuracy"] <= 1.0
    assert trainer.model.training  # validation leaves the model as it found it


def test_identity_pairs_are_balanced_and_honest():
    from swinface.train.validation import identity_pairs

    ids = np.array([0, 0, 1, 1, 1, 2, -1])
    pairs, same = identity_pairs(ids)
    assert same.sum() == (~same).sum() == 4  # 1 + 3 genuine pairs
    for (a, b), s in zip(pairs, same, strict=True):
        assert ids[a] >= 0 and ids[b] >= 0
        assert (ids[a] == ids[b]) == s
