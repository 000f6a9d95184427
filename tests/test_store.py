"""The face store and the training configuration."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from swinface.data.store import FaceStore, StoreError, StoreWriter, open_store
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folder left


def _write(path, value: int, n: int = 2, **kwargs):
    writer = StoreWriter(path, capacity=n, **kwargs)
    for i in range(n):
        writer.add(_face(value), f"{i}.jpg", identity=i)
    return writer.close({})


def test_store_writer_never_deletes_what_it_did_not_create(tmp_path):
    # A folder named like the old fixed temporary folder belongs to someone else.
    other = tmp_path / "s.partial"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    _write(tmp_path / "s", 1)
    assert (other / "keep.txt").read_text() == "mine"
    # A folder that is not a store is never replaced, even when overwriting is allowed.
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"jpeg")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match=r"photos: exists and is not a face store"):
            StoreWriter(folder, capacity=1, overwrite=overwrite)
    assert (folder / "a.jpg").read_bytes() == b"jpeg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "s", "s.partial"]


def test_store_writer_fills_an_empty_folder(tmp_path):
    # `mkdir stores/x && swinface prepare ... stores/x`: nothing there to lose.
    (tmp_path / "empty").mkdir()
    assert len(_write(tmp_path / "empty", 2)) == 2


def test_store_writer_replaces_a_store_only_when_asked_and_only_once_complete(tmp_path):
    path = tmp_path / "s"
    _write(path, 1)
    with pytest.raises(StoreError, match=r"s: a face store already exists.*overwrite"):
        StoreWriter(path, capacity=1)
    writer = StoreWriter(path, capacity=3, overwrite=True)
    writer.add(_face(9), "new.jpg")
    assert open_store(path).faces[0, 0, 0, 0] == 1  # the old store stays until close
    writer.abort()
    assert open_store(path).sources == ["0.jpg", "1.jpg"]
    with StoreWriter(path, capacity=2, overwrite=True) as writer:
        writer.add(_face(5), "x.jpg")
    assert open_store(path).faces[0, 0, 0, 0] == 1  # left without close: nothing replaced
    store = _write(path, 7, n=3, overwrite=True)
    assert len(store) == 3 and open_store(path).faces[2, 0, 0, 0] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_an_opened_store_pickles_as_its_path_and_reopens(tmp_path):
    store = _write(tmp_path / "s", 3, n=8)
    data = pickle.dumps(store)
    assert len(data) < 2000 < store.faces.nbytes  # not a copy of the faces
    again = pickle.loads(data)
    assert isinstance(again.faces, np.memmap)
    np.testing.assert_array_equal(again.faces, store.faces)
    for name, values in store.labels.items():
        np.testing.assert_array_equal(again.labels[name], values)
    assert again.meta == store.meta
    # A store rewritten since it was opened is refused rather than mixed up.
    _write(tmp_path / "s", 4, n=8, overwrite=True)
    with pytest.raises(StoreError, match="changed or vanished"):
        pickle.loads(data)
    # A store built in memory has no files to reopen: it pickles whole.
    memory = FaceStore(tmp_path / "nowhere", np.ones((2, 112, 112, 3), np.uint8), {})
    assert pickle.loads(pickle.dumps(memory)).faces.sum() == 2 * 112 * 112 * 3


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
