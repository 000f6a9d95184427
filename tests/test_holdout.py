"""Held-out parts of stores: chosen by person, fixed, never trained on, and validated on."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from swinface.data.holdout import holdout_mask, subset
from swinface.data.store import StoreWriter, open_store
from swinface.train.batches import MultiTaskBatches
from swinface.train.config import ConfigError, load_config
from swinface.train.validation import evaluate_stores


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("holdout") / "store"
    rng = np.random.default_rng(0)
    writer = StoreWriter(path, capacity=200)
    for i in range(200):
        face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        writer.add(face, f"{i}.jpg", identity=i // 4, gender=i % 2)
    writer.close({})
    return open_store(path)


def test_a_held_out_person_is_held_out_whole_and_the_choice_is_fixed(store):
    mask = holdout_mask(store, 0.2)
    assert 0.08 < mask.mean() < 0.35
    ids = store.labels["identity"]
    for person in np.unique(ids):
        assert len(set(mask[ids == person])) == 1
    np.testing.assert_array_equal(mask, holdout_mask(store, 0.2))
    assert (mask & ~holdout_mask(store, 0.4)).sum() == 0  # a larger share contains a smaller
    assert not np.array_equal(mask, holdout_mask(store, 0.2, seed=1))
    small = subset(store, mask)
    assert len(small) == mask.sum() and set(small.labels["identity"]) == set(ids[mask])


def _config(tmp_path, store, holdout):
    data = {
        "output_dir": str(tmp_path / "run"),
        "model": "swinface_nano",
        "steps": 50,
        "num_workers": 0,
        "tasks": {
            "identity": {
                "batch_size": 16,
                "sources": [{"store": str(store.path), "holdout": holdout}],
            }
        },
        "eval_stores": {"val": {"store": str(store.path), "holdout": holdout}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_training_never_draws_a_held_out_face(tmp_path, store):
    config = _config(tmp_path, store, 0.25)
    batches = MultiTaskBatches(config)
    held = np.flatnonzero(holdout_mask(store, 0.25))
    drawn = {i for step in range(50) for _, i in batches.indices(step)["identity"]}
    assert drawn and not drawn & set(held.tolist())


def test_validation_scores_only_the_held_out_part(tmp_path, store, monkeypatch):
    import swinface.train.validation as validation
    from swinface.model import create_model

    seen = []
    real = validation.store_figures
    monkeypatch.setattr(
        validation, "store_figures", lambda out, s: seen.append(len(s)) or real(out, s)
    )
    config = _config(tmp_path, store, 0.25)
    figures = evaluate_stores(create_model("swinface_nano"), config.eval_stores)
    assert seen == [int(holdout_mask(store, 0.25).sum())]
    assert "val/gender_accuracy" in figures


def test_a_holdout_outside_zero_to_one_is_refused(tmp_path, store):
    with pytest.raises(ConfigError, match=r"holdout: a fraction in \[0, 1\)"):
        _config(tmp_path, store, 1.0)
