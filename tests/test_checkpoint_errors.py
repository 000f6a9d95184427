"""Broken checkpoints fail with clear errors, and never run code."""

from __future__ import annotations

import os

import pytest
import torch

from swinface.weights import CheckpointError, load_model_from_file
from swinface.weights.synthetic import deterministic_checkpoint


@pytest.fixture(scope="module")
def checkpoint():
    return deterministic_checkpoint(include_computed=False)


def _save(tmp_path, obj, name="ckpt.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_truncated_file(tmp_path, published_checkpoint):
    data = published_checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: .*(truncated|corrupt)"):
        load_model_from_file(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt: file is empty"):
        load_model_from_file(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="nothing.pt"):
        load_model_from_file(tmp_path / "nothing.pt")


def test_missing_key_is_named(tmp_path, checkpoint):
    broken = {s: dict(d) for s, d in checkpoint.items()}
    del broken["state_dict_tss"]["nets.3.feature.0.weight"]
    with pytest.raises(
        CheckpointError,
        match=r"1 missing key\(s\): state_dict_tss/nets\.3\.feature\.0\.weight \[512, 512\]",
    ):
        load_model_from_file(_save(tmp_path, broken))


def test_changed_shape_is_named(tmp_path, checkpoint):
    broken = {s: dict(d) for s, d in checkpoint.items()}
    broken["state_dict_om"]["output_fcs.3.weight"] = torch.zeros(8, 512)
    with pytest.raises(
        CheckpointError, match=r"output_fcs\.3\.weight: \[8, 512\], expected \[7, 512\]"
    ):
        load_model_from_file(_save(tmp_path, broken))


def test_unexpected_key_and_missing_section(tmp_path, checkpoint):
    broken = {s: dict(d) for s, d in checkpoint.items()}
    broken["state_dict_fam"]["nets.11.norm.weight"] = torch.zeros(512)
    with pytest.raises(
        CheckpointError, match=r"unexpected key\(s\): state_dict_fam/nets\.11\.norm\.weight"
    ):
        load_model_from_file(_save(tmp_path, broken))
    del broken["state_dict_om"]
    with pytest.raises(CheckpointError, match="missing section"):
        load_model_from_file(_save(tmp_path, broken, "nosection.pt"))


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path, checkpoint):
    marker = tmp_path / "pwned"
    evil = {**checkpoint, "extra": _Exploit(str(marker))}
    path = tmp_path / "evil.pt"
    torch.save(evil, path)
    with pytest.raises(CheckpointError, match="evil.pt: refused to load"):
        load_model_from_file(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, this is text")
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_model_from_file(path)


def test_broken_native_file(tmp_path, native_weights):
    data = native_weights.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:1000])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_model_from_file(path)


def test_native_file_for_another_task_table(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file(
        {"x": torch.zeros(1)},
        str(path),
        metadata={"format": "swinface", "format_version": "1", "tasks": "[]"},
    )
    with pytest.raises(CheckpointError, match="different task table"):
        load_model_from_file(path)
