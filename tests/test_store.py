"""The face store and the training configuration."""

from __future__ import annotations

import numpy as np
import pytest

from swinface.data.store import StoreError, StoreWriter, open_store
from swinface.train.config import ConfigError, load_config


def _face(value: int) -> np.ndarray:
    return np.full((112, 112, 3), value, np.uint8)


def test_store_round_trip(tmp_path):
    writer = StoreWriter(tmp_path / "s", capacity=5)
    writer.add(_face(1), "a.jpg", age=31.5, gender=1)
    writer.add(_face(2), "b.jpg", expression=3)
    attrs = np.array([1, 0] * 20, np.int8)
    writer.add(_face(3), "c.jpg", attributes=attrs, identity=7)
    writer.skip("d.jpg", "no face found")
    store = writer.close({"dataset_format": "test"})
    assert len(store) == 3 and store.faces.shape == (3, 112, 112, 3)
    again = open_store(tmp_path / "s")
    assert again.faces[2, 0, 0, 0] == 3
    np.testing.assert_array_equal(again.has("age"), [True, False, False])
    np.testing.assert_array_equal(again.has("attributes"), [False, False, True])
    np.testing.assert_array_equal(again.labels["attributes"][2], attrs)
    assert again.labels["identity"].tolist() == [-1, -1, 7]
    assert again.meta["skipped"] == [{"source": "d.jpg", "reason": "no face found"}]
    assert again.sources == ["a.jpg", "b.jpg", "c.jpg"]
    assert not (tmp_path / "s.partial").exists()


def test_store_refuses_bad_faces_and_missing_folders(tmp_path):
    writer = StoreWriter(tmp_path / "s", capacity=1)
    with pytest.raises(StoreError, match=r"x.jpg: expected a uint8 face of shape \(112, 112, 3\)"):
        writer.add(np.zeros((100, 100, 3), np.uint8), "x.jpg")
    with pytest.raises(StoreError, match="not a face store"):
        open_store(tmp_path / "nothing")


def test_config_loads_and_resolves_paths(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "output_dir: out\nsteps: 10\n"
        "tasks:\n  expression:\n    batch_size: 4\n    sources: [{store: stores/fer, weight: 2}]\n"
        "optim: {lr: 0.001, warmup_steps: 2}\n"
    )
    config = load_config(cfg)
    assert config.tasks["expression"].batch_size == 4
    assert config.tasks["expression"].sources[0].store == str(tmp_path / "stores" / "fer")
    assert config.output_dir == str(tmp_path / "out")
    assert config.optim.lr == 0.001 and config.optim.backbone_lr_scale == 0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tasks: {}\n", "at least one task"),
        ("tasks: {emotion: {sources: [{store: x}]}}\n", "unknown task"),
        ("tasks: {expression: {sources: [{store: x}]}}\nstepz: 3\n", "unknown key.*stepz"),
        ("tasks: {expression: {sources: [{store: x}]}}\nsteps: many\n", "steps: expected int"),
        (
            "tasks: {expression: {batch_size: 0, sources: [{store: x}]}}\n",
            "batch_size: must be at least 1",
        ),
        ("tasks: [\n", "not valid YAML"),
    ],
)
def test_config_errors_name_the_problem(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


@pytest.mark.parametrize("name", ["published", "public"])
def test_shipped_configs_load_and_name_every_task(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    config = load_config(path)
    assert set(config.tasks) == {"identity", "age_gender", "attributes", "expression"}
    assert config.identity_loss.margin == "cosface" and config.identity_loss.scale == 64.0
    assert config.optim.clip_grad_norm == 5.0
    assert all(Path(s.store).is_absolute() for t in config.tasks.values() for s in t.sources)
