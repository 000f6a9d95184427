"""Atomic writes: whole or nothing, no leftovers, safe with concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
import stat

import pytest

from swinface.atomic import atomic_dir, atomic_path, atomic_write_bytes, file_lock


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".partial", ".old")))


def test_write_replaces_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_old_content_and_removes_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_writer_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x"):
        pass
    assert not (tmp_path / "x").exists()


def test_temporary_names_are_unique(tmp_path):
    with atomic_path(tmp_path / "x") as a, atomic_path(tmp_path / "x") as b:
        assert a != b
        a.write_bytes(b"a")
        b.write_bytes(b"b")
    assert (tmp_path / "x").read_bytes() in (b"a", b"b")


def test_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _write_many(path: str, byte: int) -> None:
    for _ in range(20):
        atomic_write_bytes(path, bytes([byte]) * 200_000, durable=False)


def test_concurrent_writers_never_interleave(tmp_path):
    target = tmp_path / "shared.bin"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(target), b)) for b in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = target.read_bytes()
    assert len(data) == 200_000 and len(set(data)) == 1
    assert _leftovers(tmp_path) == []


def test_atomic_dir_replaces_folder_only_on_success(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "a").write_text("old")
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "a").write_text("half")
        raise ValueError
    assert (target / "a").read_text() == "old"
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert _leftovers(tmp_path) == []


def test_file_lock_is_reentrant_across_paths(tmp_path):
    with file_lock(tmp_path / "a"), file_lock(tmp_path / "b"):
        assert (tmp_path / "a.lock").exists()
