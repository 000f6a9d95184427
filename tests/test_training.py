"""Training end to end on CPU: overfitting, stop and resume, two processes, the CLI."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from swinface.cli import main
from swinface.data.store import StoreWriter
from swinface.model import SwinFace, create_model
from swinface.train.batches import MultiTaskBatches
from swinface.train.checkpoints import ResumeError, resume_point
from swinface.train.config import load_config
from swinface.train.losses import TaskTargets
from swinface.train.trainer import DistEnv, Trainer, decays, parameter_groups, train

TASKS = ("identity", "age_gender", "attributes", "expression")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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


def _make_store(path: Path, labels: set[str], n: int = 8, seed: int = 0) -> Path:
    """`n` random faces carrying only `labels` (identities: 4, in turn)."""
    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, capacity=n)
    for i in range(n):
        values = {
            "identity": i % 4,
            "age": float(20 + 5 * i),
            "gender": i % 2,
            "expression": i % 7,
            "attributes": rng.integers(0, 2, 40).astype(np.int8),
        }
        face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        writer.add(face, f"{i}.jpg", **{k: v for k, v in values.items() if k in labels})
    writer.close({})
    return path


def _small_tasks(store: Path, tasks=TASKS, batch_size: int = 2) -> dict:
    return {t: {"batch_size": batch_size, "sources": [{"store": str(store)}]} for t in tasks}


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
        if isinstance(value, dict) and key != "tasks":  # the tasks given replace the default
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


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ),
    ],
)
def test_stop_and_resume_with_workers_continues_the_same_run(tmp_path, store, device):
    overrides = {
        "steps": 4,
        "num_workers": 2,  # as every shipped config: batches come from worker processes
        "augment": True,  # the augmentation's randomness must resume too
        "precision": "float32",
        "identity_loss": {"sample_rate": 0.5},  # and Partial FC's sampling
        "optim": {"min_lr_ratio": 0.0, "warmup_steps": 2},
    }
    env = DistEnv(device=torch.device(device))

    def trainer(folder: str) -> Trainer:
        return Trainer(load_config(_config(tmp_path / folder, store, **overrides)), env)

    whole = trainer("a")
    whole.fit()
    first = trainer("b")
    first.fit(max_steps=2)
    checkpoint = first.save_checkpoint()
    resumed = trainer("b")
    assert resumed.latest_checkpoint() == checkpoint
    resumed.load_checkpoint(checkpoint)
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 4
    for a, b in zip(whole.history[2:], resumed.history, strict=True):
        assert a["step"] == b["step"]
        for key in ("loss", "age", "gender", "attributes", "expression", "identity", "lr"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (b["step"], key)
    for (name, p), q in zip(
        whole.model.named_parameters(), resumed.model.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


def test_workers_started_by_spawn_train_on_the_same_batches(tmp_path, store):
    overrides = {"steps": 2, "augment": True, "tasks": _small_tasks(store)}
    spawned = Trainer(
        load_config(
            _config(
                tmp_path / "a",
                store,
                num_workers=1,
                multiprocessing_context="spawn",
                **overrides,
            )
        )
    )
    # What a spawned worker receives: the stores by path, not their faces.
    faces = sum(s.store.faces.nbytes for t in spawned.data.sources.values() for s in t)
    assert len(pickle.dumps(spawned.data)) < faces / 10
    spawned.fit()
    local = Trainer(load_config(_config(tmp_path / "b", store, num_workers=0, **overrides)))
    local.fit()
    assert [h["loss"] for h in spawned.history] == pytest.approx(
        [h["loss"] for h in local.history], rel=1e-5
    )


@pytest.fixture(scope="module")
def gloo(tmp_path_factory, store) -> dict[str, Path]:
    """One torchrun launch of 2 gloo ranks running every distributed scenario; their configs."""
    root = tmp_path_factory.mktemp("gloo")
    analysis = [t for t in TASKS if t != "identity"]
    configs = {
        "replicas": _config(
            root / "replicas", store, steps=3, augment=True, tasks=_small_tasks(store)
        ),
        "gradients": _config(
            root / "gradients", store, steps=1, precision="float32", tasks=_small_tasks(store)
        ),
        "no_identity": _config(
            root / "no_identity", store, steps=3, tasks=_small_tasks(store, analysis)
        ),
    }
    scenarios = {"replicas": "steps", "gradients": "gradients", "no_identity": "steps"}
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
            *(f"{scenarios[name]}:{path}" for name, path in configs.items()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return configs


def _rank_records(config: Path) -> list[list[dict]]:
    out = Path(load_config(config).output_dir)
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, result in enumerate(results):
        assert "error" not in result, f"rank {rank}: {result.get('error')}"
    return [r["records"] for r in results]


def test_two_gloo_processes_hold_identical_weights_after_each_step(gloo):
    ranks = _rank_records(gloo["replicas"])
    assert [r["step"] for r in ranks[0]] == [1, 2, 3]
    for a, b in zip(*ranks, strict=True):
        assert a["model"] == b["model"], f"replicas differ after step {a['step']}"
        assert a["shard_rows"] == b["shard_rows"] == 2  # 4 identities, sharded over 2 ranks
    # Each rank saw its own data: the losses differ while the weights agree.
    assert [a["loss"] for a in ranks[0]] != [b["loss"] for b in ranks[1]]


def test_two_ranks_give_the_gradients_of_one_process_on_the_same_global_batch(gloo):
    from dist_worker import full_centres

    config = load_config(gloo["gradients"])
    reference = Trainer(config)
    pfc = reference.partial_fc
    with torch.no_grad():
        pfc.weight.copy_(full_centres(pfc.num_classes, pfc.weight.shape[1]))
    reference.model.eval()  # as the ranks: BatchNorm statistics would differ per rank
    halves = [MultiTaskBatches(config, rank=r, world_size=2)[0] for r in (0, 1)]
    reference.forward_backward({k: torch.cat([h[k] for h in halves]) for k in halves[0]})
    expected = {n: p.grad for n, p in reference.model.named_parameters() if p.grad is not None}
    backbone = torch.cat([g.flatten() for n, g in expected.items() if n.startswith("backbone.")])
    out = Path(config.output_dir)
    for rank in (0, 1):
        saved = torch.load(out / f"grads_rank{rank}.pt", weights_only=True)
        grads = saved.pop("grads")
        shard = grads.pop("partial_fc.weight")
        got = torch.cat([g.flatten() for n, g in grads.items() if n.startswith("backbone.")])
        ratio = float(got.norm() / backbone.norm())
        assert ratio == pytest.approx(1.0, rel=1e-4), f"rank {rank}: backbone gradient x{ratio}"
        assert set(grads) == set(expected)
        for name, grad in grads.items():  # float32 sums in another order: relative to the norm
            error = float((grad - expected[name]).norm() / expected[name].norm().clamp(min=1e-12))
            assert error < 1e-4, f"rank {rank}: {name} differs by {error:.2g} of its norm"
        start = saved["class_start"]
        torch.testing.assert_close(shard, pfc.weight.grad[start : start + len(shard)])


def test_two_gloo_processes_train_without_an_identity_task(gloo):
    ranks = _rank_records(gloo["no_identity"])
    assert [r["step"] for r in ranks[0]] == [1, 2, 3]
    for a, b in zip(*ranks, strict=True):
        assert a["model"] == b["model"], f"replicas differ after step {a['step']}"
    # Only what feeds the identity embedding is left untrained.
    frozen = ranks[0][0]["frozen"]
    assert frozen and all(n.startswith(("embedding_head.", "backbone.swin.norm.")) for n in frozen)


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
    config = _config(
        tmp_path, store, steps=2, eval_every=2, eval_stores={"val": str(store)}, allow_collapse=True
    )
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
        if key != "age_cs5":  # beside each figure, the constant answer's on the same faces
            assert np.isfinite(record[f"val/constant_{key}"]), key
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


def test_a_task_takes_samples_that_carry_any_of_its_labels(tmp_path):
    ages = _make_store(tmp_path / "ages", {"age"})
    genders = _make_store(tmp_path / "genders", {"gender", "attributes"})
    config = load_config(
        _config(
            tmp_path,
            ages,
            tasks={
                "age_gender": {
                    "batch_size": 16,
                    "sources": [{"store": str(ages)}, {"store": str(genders)}],
                }
            },
        )
    )
    batch = MultiTaskBatches(config)[0]
    has_age, has_gender = ~batch["age"].isnan(), batch["gender"] >= 0
    assert (has_age ^ has_gender).all()  # each sample brings the one label its store has
    assert has_age.any() and has_gender.any()
    assert (batch["attributes"] == -1).all()  # and nothing of another task
    with pytest.raises(ValueError, match=r"ages: no sample has a label of task attributes"):
        MultiTaskBatches(load_config(_config(tmp_path, ages, tasks=_small_tasks(ages))))


def test_a_batch_is_its_own_random_stream_and_leaves_the_global_one_alone(tmp_path, store):
    config = load_config(_config(tmp_path, store, augment=True, tasks=_small_tasks(store)))
    data = MultiTaskBatches(config)
    with torch.random.fork_rng(devices=[]):
        state = torch.get_rng_state()
        first = data[3]
        # In the main process (num_workers: 0) the global generator drives dropout.
        assert torch.equal(torch.get_rng_state(), state)
        torch.manual_seed(99)
        again = data[3]
    for key, value in first.items():
        torch.testing.assert_close(again[key], value, equal_nan=True, msg=key)


def test_the_published_config_starts_and_trains(tmp_path):
    """configs/published.yaml as shipped (sources, weights, losses), on tiny stores with the
    labels each named dataset has: CelebA gives age_gender a gender but no age."""
    stores = tmp_path / "stores"
    labels = {
        "ms1mv2": {"identity"},
        "clap2015": {"age"},
        "celeba": {"identity", "gender", "attributes"},
        "celeba-val": {"identity", "gender", "attributes"},
        "rafdb": {"expression"},
        "rafdb-test": {"expression"},
    }
    for name, have in labels.items():
        _make_store(stores / name, have)
    data = yaml.safe_load((CONFIGS / "published.yaml").read_text())
    data.update(model="swinface_nano", steps=2, num_workers=0, checkpoint_every=2, eval_every=2)
    for task in data["tasks"].values():
        task["batch_size"] = 4
    path = tmp_path / "configs" / "published.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    trainer = train(load_config(path))
    assert trainer.step == 2
    for row in trainer.history:
        for key in ("identity", "age", "gender", "attributes", "expression"):
            assert np.isfinite(row[key]), key
    # Within the first steps, CelebA faces join the age_gender batches with their gender only.
    step = next(
        s for s in range(20) if any(k == 1 for k, _ in trainer.data.indices(s)["age_gender"])
    )
    batch, tasks = trainer.data[step], list(trainer.data.sources)
    first = 4 * tasks.index("age_gender")  # rows come task by task, 4 each
    for j, (k, _) in enumerate(trainer.data.indices(step)["age_gender"]):
        row = first + j  # CLAP2015 (source 0) has ages only, CelebA (source 1) genders only
        assert bool(batch["age"][row].isnan()) == (k == 1)
        assert bool(batch["gender"][row] >= 0) == (k == 1)
    record = json.loads((tmp_path / "runs" / "published" / "validation.jsonl").read_text())
    assert "celeba/gender_accuracy" in record and "rafdb/expression_accuracy" in record


def _expected_decay(name: str, module: torch.nn.Module) -> bool:
    """Written out by hand: the stacked per-group biases are biases."""
    if isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm1d)):
        return False
    leaf = name.rsplit(".", 1)[-1]
    stacked_biases = {"gate_b1", "gate_b2", "fc1_b", "fc2_b", "out_b"}
    return not (leaf == "bias" or leaf in stacked_biases or "relative_position_bias" in leaf)


def test_weight_decay_falls_on_weights_only(tmp_path, store):
    config = load_config(_config(tmp_path, store))
    model = create_model("swinface_nano")
    centres = torch.nn.Parameter(torch.zeros(4, 64))
    groups = parameter_groups(model, [centres], config)
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(decay_of)  # each in one group
    modules = dict(model.named_modules())
    checked = set()
    for name, p in model.named_parameters():
        expected = _expected_decay(name, modules[name.rsplit(".", 1)[0]])
        assert decay_of[id(p)] == (config.optim.weight_decay if expected else 0.0), name
        checked.add(name.rsplit(".", 1)[-1])
    assert {"gate_b1", "gate_b2", "fc1_b", "out_b", "gate_w1", "fc1_w"} <= checked
    assert decay_of[id(centres)] == config.optim.weight_decay
    backbone = [g for g in groups if g["role"] == "backbone"]
    assert backbone and all(g["lr_scale"] == config.optim.backbone_lr_scale for g in backbone)
    # A parameter the rule cannot place is an error, not a guess.
    with pytest.raises(ValueError, match=r"heads\.scale: cannot tell whether weight decay"):
        decays("heads.scale", model.heads, set())


def test_logged_rates_seed_and_tensorboard_writer(tmp_path, store, monkeypatch):
    writers = []

    class FakeWriter:
        def __init__(self, folder):
            self.scalars, self.closed = {}, False
            writers.append(self)

        def add_scalar(self, tag, value, step):
            self.scalars[tag] = value

        def close(self):
            self.closed = True

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    lr = {"lr": 1e-3, "backbone_lr_scale": 0.1, "warmup_steps": 4}
    config = load_config(_config(tmp_path, store, steps=2, optim=lr, tasks=_small_tasks(store)))
    trainer = Trainer(config)
    trainer.fit(max_steps=1)
    row = trainer.history[0]
    assert row["lr"] == pytest.approx(1e-3 / 4)  # step 1 of a 4-step warm-up
    assert row["lr_backbone"] == pytest.approx(1e-4 / 4)
    assert writers and writers[0].scalars["train/lr"] == row["lr"]
    assert all(w.closed for w in writers)  # fit closes what it opened
    # Partial FC's centres follow the config's seed.
    other = load_config(_config(tmp_path / "seed", store, seed=1, tasks=_small_tasks(store)))
    assert not torch.equal(Trainer(other).partial_fc.weight, trainer.partial_fc.weight)


def test_a_broken_latest_pointer_never_restarts_the_run_from_zero(tmp_path, store, caplog):
    config = load_config(
        _config(tmp_path, store, steps=3, checkpoint_every=1, tasks=_small_tasks(store))
    )
    Trainer(config).fit(max_steps=2)
    folder = tmp_path / "run" / "checkpoints"
    # Every file is written atomically: nothing temporary is left behind.
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step_0000001", "step_0000002"]
    assert sorted(p.name for p in (folder / "step_0000002").iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
        "partial_fc_rank0.safetensors",
        "state_rank0.pt",
    ]
    pointer = folder / "latest"
    for broken in (b"", b"step_0000009", b"../run", b"\xff\xfe", None):
        if broken is None:
            pointer.unlink()
        else:
            pointer.write_bytes(broken)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert resume_point(folder) == folder / "step_0000002"
        assert "resuming from the newest complete checkpoint, step_0000002" in caplog.text
    # An incomplete checkpoint (a file cut short) is passed over for the one before.
    model = folder / "step_0000002" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    assert resume_point(folder) == folder / "step_0000001"
    resumed = train(config)
    assert resumed.history[0]["step"] == 2 and resumed.step == 3
    # With no complete checkpoint left, training refuses rather than starting from step 0.
    for manifest in folder.glob("step_*/checkpoint.json"):
        manifest.unlink()
    pointer.write_text("nonsense")
    log_rows = (tmp_path / "run" / "log.csv").read_text()
    with pytest.raises(ResumeError, match=r"cannot resume.*no checkpoint is complete"):
        train(config)
    assert (tmp_path / "run" / "log.csv").read_text() == log_rows
    # A checkpoint written by another number of processes is refused by name.
    path = Trainer(config).save_checkpoint()
    manifest = json.loads((path / "checkpoint.json").read_text())
    (path / "checkpoint.json").write_text(json.dumps({**manifest, "world_size": 2}))
    with pytest.raises(ResumeError, match=r"written by 2 processes, resumed with 1"):
        Trainer(config).load_checkpoint(path)
