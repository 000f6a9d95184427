"""The default weights shipped with the package in checksummed parts: found, unpacked once
into the cache, used when no weights are named, described by `swinface weights info`, and
refused with the damaged part named. Made here from the tiny `swinface_nano` model."""

from __future__ import annotations

import fnmatch
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from swinface.assets import SAMPLE_PHOTO
from swinface.cli import main
from swinface.weights import download as dl
from swinface.weights import registry
from swinface.weights.compact import compact
from swinface.weights.formats import read_native, save_native
from swinface.weights.loading import load_model
from swinface.weights.registry import WeightsError

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu", "--backend", "eager"]
TRAIN_CONFIG = {
    "model": "swinface_nano",
    "steps": 30,
    "tasks": {"expression": {"sources": [{"store": "somewhere/fer2013-train"}]}},
    "distill": {"embedding": {"teachers": ["sface"]}, "age": {"teacher": "dlib-age-gender"}},
}


def _nano_parts(folder: Path, seed: int, part_bytes: int = 300_000) -> Path:
    """A float nano model carrying model card metadata, compacted to int8 and cut in parts."""
    from swinface.model import create_model

    torch.manual_seed(seed)
    source = folder / "float.safetensors"
    save_native(
        create_model("swinface_nano"),
        source,
        name="nano",
        metadata={
            "train_config": json.dumps(TRAIN_CONFIG),
            "step": "30",
            "verify_threshold": "0.4",
        },
    )
    compact(source, folder, name="swinface-default", part_bytes=part_bytes)
    return folder / "parts"


@pytest.fixture(scope="module")
def made_parts(tmp_path_factory) -> Path:
    return _nano_parts(tmp_path_factory.mktemp("default"), seed=0)


@pytest.fixture
def shipped(made_parts, tmp_path, monkeypatch) -> Path:
    """A private copy of the parts as the default weights, and an empty private cache."""
    parts = tmp_path / "shipped"
    shutil.copytree(made_parts, parts)
    monkeypatch.setenv(registry.SHIPPED_ENV, str(parts))
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path / "home"))
    return parts


@pytest.fixture
def offline(monkeypatch):
    """Fail the test if anything reaches for the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("the default weights must not be downloaded")

    monkeypatch.setattr(dl, "_fetch_http", refuse)
    monkeypatch.setattr(dl, "_fetch_gdrive", refuse)


def _manifest(parts: Path) -> dict:
    return json.loads(next(parts.glob("*.parts.json")).read_text())


def test_load_model_without_argument_loads_the_dequantised_default(shipped, offline):
    model = load_model(device="cpu")
    assert model.weights_info.name == "swinface-default"
    assert model.config.embed_dim == 16  # the nano model, not the published Swin-T
    cached = Path(model.weights_info.path)
    assert dl.file_sha256(cached) == _manifest(shipped)["sha256"]
    expected, _ = read_native(cached)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key].to(value.dtype)), key
    # Unpacked once: a second load reads the cached file, it does not write it again.
    before = cached.stat().st_mtime_ns, cached.stat().st_ino
    assert load_model(device="cpu").weights_info.path == str(cached)
    assert (cached.stat().st_mtime_ns, cached.stat().st_ino) == before


def test_analyze_the_sample_photo_without_weights_uses_the_default(shipped, offline, capsys):
    assert main(["analyze", str(SAMPLE_PHOTO), *FAST]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out.splitlines()[0])
    assert len(record["faces"]) == 1 and record["faces"][0]["expression"]
    assert "swinface-default" in err and "unpacking them once" in err


def test_verify_without_weights_takes_the_threshold_stored_in_the_default(shipped, offline, capsys):
    assert main(["verify", str(SAMPLE_PHOTO), str(SAMPLE_PHOTO), *FAST]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["threshold"] == pytest.approx(0.4)
    assert "no verification threshold" not in err


def test_a_damaged_part_is_named_and_nothing_enters_the_cache(shipped, offline, capsys):
    part = sorted(shipped.glob("*.part[0-9]*"))[2]
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"{part.name}: damaged part") as info:
        load_model(device="cpu")
    assert "--weights swinface-published" in str(info.value)
    assert main(["analyze", str(SAMPLE_PHOTO), *FAST]) == 2
    assert f"{part.name}: damaged part" in capsys.readouterr().err
    cache = registry.cache_dir()
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]
    part.unlink()
    with pytest.raises(WeightsError, match=rf"{part.name}: missing part"):
        load_model(device="cpu")


def test_new_parts_replace_an_outdated_unpacked_copy(shipped, offline, tmp_path):
    first = load_model(device="cpu")
    newer = _nano_parts(tmp_path / "newer", seed=1)
    for old in shipped.iterdir():
        old.unlink()
    for new in newer.iterdir():
        shutil.copy(new, shipped / new.name)
    second = load_model(device="cpu")
    assert dl.file_sha256(second.weights_info.path) == _manifest(shipped)["sha256"]
    weights = dict(first.named_parameters()), dict(second.named_parameters())
    key = next(k for k in weights[0] if k.endswith(".weight"))
    assert not torch.equal(weights[0][key], weights[1][key])


def test_without_shipped_parts_the_published_checkpoint_stays_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv(registry.SHIPPED_ENV, raising=False)
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path / "none")
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path / "home"))
    assert registry.default_weights() == "swinface-published"
    with pytest.raises(WeightsError, match="not in this installation"):
        registry.get_spec("swinface-default")
    with pytest.raises(WeightsError, match="not in this installation"):
        load_model("swinface-default", download=False)
    with pytest.raises(WeightsError, match="'swinface-published' are not in the cache"):
        load_model(download=False)
    monkeypatch.setenv(registry.SHIPPED_ENV, str(tmp_path))
    with pytest.raises(WeightsError, match="no weights parts manifest"):
        registry.default_weights()
    bad = tmp_path / "w.safetensors.parts.json"
    bad.write_text(json.dumps({"file": "../w.safetensors", "bytes": 1, "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="manifest .* is unreadable"):
        registry.get_spec("swinface-default")


def test_weights_list_shows_the_default_and_the_published(shipped, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "default (no --weights): swinface-default" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1].isalnum()}
    assert lines["swinface-default"].split()[1] == "shipped"
    assert _manifest(shipped)["sha256"][:12] in lines["swinface-default"]
    assert "not cached" in lines["swinface-published"]


def _info(capsys, *argv: str) -> dict[str, str]:
    assert main(["weights", "info", *argv]) == 0
    rows = [line.split(":", 1) for line in capsys.readouterr().out.splitlines()]
    return {key: value.strip() for key, value in rows}


def test_weights_info_prints_what_the_file_says_and_nothing_else(shipped, offline, capsys):
    assert _info(capsys, "default") == _info(capsys, "swinface-default")
    info = _info(capsys, "swinface-default")
    assert info["name"] == "swinface-default" and info["format"] == "int8"
    assert info["sha256"] == _manifest(shipped)["sha256"]
    assert info["size"].startswith(f"{_manifest(shipped)['bytes']} bytes")
    assert info["architecture"].startswith("swinface_nano (embed_dim=16")
    assert info["step"] == "30" and info["verify threshold"] == "0.4"
    assert info["train config"] == "model=swinface_nano steps=30"
    assert info["tasks (stores)"] == "expression (fer2013-train)"
    assert info["teachers (train config)"] == "sface, dlib-age-gender (age)"
    assert info["quantized from"].startswith("file=float.safetensors, sha256=")
    # A file without model card metadata: the facts it lacks are not printed.
    bare = shipped.parent / "bare.safetensors"
    from swinface.model import create_model

    save_native(create_model("swinface_nano"), bare, name="bare", half=True)
    info = _info(capsys, str(bare))
    assert info["format"] == "float16"
    assert not {"step", "train config", "teachers", "verify threshold"} & set(info)


def test_weights_info_of_weights_not_cached_says_what_the_registry_knows(shipped, capsys):
    info = _info(capsys, "swinface-published")
    assert info["sha256"] == "not pinned" and "non-commercial" in info["licence"]
    assert "swinface weights download swinface-published" in info["not in the cache"]


def test_compact_meta_option_stores_a_fact_the_info_prints(made_parts, tmp_path, capsys):
    source = made_parts.parent / "float.safetensors"
    out = tmp_path / "out"
    argv = ["weights", "compact", str(source), str(out), "--meta", "teachers=sface,fer"]
    assert main(argv) == 0
    capsys.readouterr()
    info = _info(capsys, str(out / "float-int8.safetensors"))
    assert info["teachers"] == "sface,fer" and info["step"] == "30"
    assert main(["weights", "compact", str(source), str(out), "--meta", "no-equals"]) == 2


def test_training_from_swinface_default_starts_from_the_dequantised_weights(
    shipped, offline, tmp_path
):
    from swinface.data.store import StoreWriter
    from swinface.train.config import load_config
    from swinface.train.trainer import Trainer

    store = tmp_path / "store"
    rng = np.random.default_rng(0)
    writer = StoreWriter(store, capacity=4)
    for i in range(4):
        face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        writer.add(face, f"{i}.jpg", expression=i % 7)
    writer.close({})
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "run"),
                "init_weights": "swinface-default",
                "num_workers": 0,
                "tasks": {"expression": {"batch_size": 2, "sources": [{"store": str(store)}]}},
            }
        )
    )
    trainer = Trainer(load_config(config))
    expected, _ = read_native(dl.verify_cached("swinface-default"))
    state = trainer.model.state_dict()
    assert set(state) == set(expected)
    for key, value in state.items():
        assert torch.equal(value.cpu(), expected[key].to(value.dtype)), key


def test_the_shipped_parts_are_package_data_within_the_size_limits(made_parts):
    """pyproject's package data takes every file `split_file` writes into assets/default/,
    and what is there keeps to the limits: parts under 16 MiB, at most 80 MB in all."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["swinface"]
    for made in made_parts.iterdir():
        inside = f"assets/default/{made.name}"
        assert any(fnmatch.fnmatch(inside, p) for p in patterns), inside
    folder = registry.SHIPPED_DIR
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    assert all(p.stat().st_size < 16 * 2**20 for p in files)
    assert sum(p.stat().st_size for p in files) <= 80_000_000
    for manifest in folder.glob("*.parts.json") if folder.is_dir() else []:
        for part in json.loads(manifest.read_text())["parts"]:
            assert (folder / part["file"]).stat().st_size == part["bytes"], part["file"]


def test_the_model_card_names_every_declared_teacher_and_its_package():
    from swinface.teachers import registry as teachers

    card = (ROOT / "MODEL_CARD.md").read_text(encoding="utf-8")
    for section in ("## Intended use", "## Training data", "## Teachers", "## Figures"):
        assert section in card
    for teacher in teachers.list_teachers():
        assert f"`{teacher.package}=={teacher.version}`" in card, teacher.name
