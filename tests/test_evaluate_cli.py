"""`swinface evaluate` end to end, on generated data and on slices of the real packs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import NEEDS_DATA, SHARED_DATA
from PIL import Image

from swinface.cli import main
from swinface.model import create_model
from swinface.weights import save_native


@pytest.fixture(scope="module")
def nano_weights(tmp_path_factory) -> Path:
    """A small random model: the report machinery does not care how good the model is."""
    path = tmp_path_factory.mktemp("nano") / "nano.safetensors"
    save_native(create_model("swinface_nano").eval(), path, name="nano")
    return path


def _run(args: list[str], capsys) -> tuple[int, str]:
    status = main(args)
    return status, capsys.readouterr().out


def test_evaluate_expression_on_generated_folders(tmp_path, nano_weights, capsys):
    root = tmp_path / "fer"
    rng = np.random.default_rng(0)
    for emotion in ("happy", "sad", "neutral"):
        (root / emotion).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (48, 48), np.uint8)
            Image.fromarray(pixels).save(root / emotion / f"{i}.jpg")
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "report"
    status, printed = _run(
        [
            "evaluate",
            "expression",
            "fer2013-folders",
            str(root),
            "--aligned",
            "--weights",
            str(nano_weights),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert status == 0
    assert "9 images analysed, 1 failed" in printed or "10 images analysed, 1 failed" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["expression"]["n"] == 9
    assert len(report["failures"]) == 1 and "broken.jpg" in report["failures"][0]["source"]
    assert {p.name for p in out.glob("*.png")} == {"confusion_expression.png"}
    assert "broken.jpg" in (out / "summary.md").read_text()


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NEEDS_DATA)
def test_evaluate_on_slices_of_the_real_packs_writes_every_report_file(
    tmp_path, nano_weights, capsys
):
    weights = ["--weights", str(nano_weights), "--backend", "eager"]
    fer = tmp_path / "fer"
    status, printed = _run(
        [
            "evaluate",
            "expression",
            "fer2013-folders",
            str(SHARED_DATA / "fer2013"),
            "--split",
            "val",
            "--aligned",
            "--limit",
            "40",
            "--out",
            str(fer),
            *weights,
        ],
        capsys,
    )
    assert status == 0 and "expression accuracy" in printed
    utk = tmp_path / "utk"
    status, printed = _run(
        [
            "evaluate",
            "all",
            "utkface",
            str(SHARED_DATA / "utkface"),
            "--limit",
            "40",
            "--out",
            str(utk),
            *weights,
        ],
        capsys,
    )
    assert status == 0 and "age MAE" in printed and "by race" in printed
    celeba = tmp_path / "celeba"
    status, _ = _run(
        [
            "evaluate",
            "attributes",
            "celeba",
            str(SHARED_DATA / "celeba"),
            "--limit",
            "30",
            "--out",
            str(celeba),
            *weights,
        ],
        capsys,
    )
    assert status == 0
    # Verification pairs from CelebA identities, as a plain pair list.
    ids: dict[str, list[str]] = {}
    for line in (SHARED_DATA / "celeba" / "identity_CelebA.txt").read_text().splitlines()[:400]:
        name, person = line.split()
        ids.setdefault(person, []).append(name)
    people = [v for v in ids.values() if len(v) >= 2][:10]
    images = SHARED_DATA / "celeba" / "img_align_celeba"
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path_a", "path_b", "same"])
        for k, person in enumerate(people):
            w.writerow([images / person[0], images / person[1], 1])
            w.writerow([images / person[0], images / people[(k + 1) % len(people)][0], 0])
    ver = tmp_path / "ver"
    status, printed = _run(
        ["evaluate", "verification", "pairs-csv", str(pairs), "--out", str(ver), *weights], capsys
    )
    assert status == 0 and "AUC" in printed
    written = {p.name for d in (fer, utk, celeba, ver) for p in d.iterdir()}
    for name in (
        "report.json",
        "summary.md",
        "confusion_expression.png",
        "age_error.png",
        "age_scatter.png",
        "confusion_gender.png",
        "attributes.png",
        "roc.png",
    ):
        assert name in written, name
    assert any(n.startswith("group_") and n.endswith(".png") for n in written)
    for png in (utk / "age_error.png", ver / "roc.png"):
        with Image.open(png) as im:
            assert im.size[0] >= 400


def test_evaluate_pairs_flip_seed_and_limit_options(tmp_path, nano_weights, capsys):
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (112, 112, 3), np.uint8)).save(tmp_path / f"{i}.png")
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as f:  # every same-person pair first, as lists often are
        w = csv.writer(f)
        w.writerow(["path_a", "path_b", "same"])
        w.writerows([f"{i}.png", f"{(i + 1) % 10}.png", 1] for i in range(10))
        w.writerows([f"{i}.png", f"{(i + 3) % 10}.png", 0] for i in range(10))
    common = ["evaluate", "verification", "pairs-csv", str(pairs), "--aligned"]
    common += ["--weights", str(nano_weights), "--backend", "eager"]

    status, printed = _run([*common, "--out", str(tmp_path / "paper")], capsys)
    assert status == 0 and "face + mirrored face (flip)" in printed
    report = json.loads((tmp_path / "paper" / "report.json").read_text())
    assert report["settings"]["flip"] is True and report["settings"]["seed"] == 0
    assert report["verification"]["kfold"]["fold_sizes"] == [2] * 10
    assert any("drew 10 folds at random" in n for n in report["notes"])

    out = tmp_path / "single"
    args = [*common, "--no-flip", "--limit", "12", "--seed", "3", "--out", str(out)]
    status, printed = _run(args, capsys)
    assert status == 0 and "face alone (no flip)" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["settings"] == {"aligned": True, "limit": 12, "seed": 3, "flip": False}
    assert report["n_pairs"] == 12 and report["verification"]["kfold"]["n_same"] == 6
