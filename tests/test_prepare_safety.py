"""`swinface prepare` never destroys what it did not create: inputs, folders that are not
stores, or an existing store without --overwrite. Checked before any image is read."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from swinface.cli import main
from swinface.data.store import StoreError, open_store


def make_utkface(folder, n: int) -> list:
    """`n` tiny face crops named the UTKFace way (age_gender_race_date.jpg)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    files = []
    for i in range(n):
        path = folder / f"{20 + i}_{i % 2}_{i % 5}_2017011617452{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(path)
        files.append(path)
    return files


def prepare(data, out, *extra) -> int:
    return main(["prepare", "utkface", str(data), str(out), "--aligned", *extra])


def snapshot(folder) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_existing_store_is_kept_without_overwrite_and_replaced_with_it(tmp_path, capsys):
    big, small, out = tmp_path / "big", tmp_path / "small", tmp_path / "store"
    make_utkface(big, 12)
    make_utkface(small, 3)
    assert prepare(big, out) == 0
    assert len(open_store(out)) == 12
    before = snapshot(out)
    capsys.readouterr()

    assert prepare(small, out) == 2  # 12 faces must not silently become 3
    err = capsys.readouterr().err
    assert "existing face store" in err and "--overwrite" in err
    assert err.count("\n") == 1  # one line
    assert snapshot(out) == before

    assert prepare(small, out, "--overwrite") == 0
    assert len(open_store(out)) == 3


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_output_that_is_contains_or_lies_inside_the_input_is_refused(tmp_path, where, capsys):
    data = tmp_path / "data" / "utk"
    make_utkface(data, 4)
    out = {"same": data, "parent": data.parent, "inside": data / "store"}[where]
    before = snapshot(tmp_path)
    for extra in ((), ("--overwrite",)):
        assert prepare(data, out, *extra) == 2
        assert "dataset" in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # the source images are all still there
    assert not (data / "store").exists()


def test_a_folder_that_is_not_a_store_is_never_replaced(tmp_path, capsys):
    data = tmp_path / "data"
    make_utkface(data, 3)
    out = tmp_path / "my documents"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    for extra in ((), ("--overwrite",)):
        assert prepare(data, out, *extra) == 2
        assert "not a face store" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_an_empty_folder_or_a_new_path_is_fine(tmp_path):
    data = tmp_path / "data"
    make_utkface(data, 3)
    (tmp_path / "empty").mkdir()
    assert prepare(data, tmp_path / "empty") == 0
    assert prepare(data, tmp_path / "new" / "store") == 0
    assert len(open_store(tmp_path / "new" / "store")) == 3


def test_library_check_refuses_an_output_holding_a_samples_image(tmp_path):
    from swinface.data.prepare import check_store_target

    images = tmp_path / "shared"
    files = make_utkface(images, 2)
    with pytest.raises(StoreError, match="holds the image"):
        check_store_target(images, [tmp_path / "labels.csv"], images=files)
    check_store_target(tmp_path / "elsewhere", [tmp_path / "labels.csv"], images=files)


def test_a_store_beside_a_label_file_is_allowed(tmp_path):
    from swinface.data.prepare import check_store_target

    labels = tmp_path / "labels.csv"
    labels.write_text("path,age\n")
    check_store_target(tmp_path / "store", [labels])
    with pytest.raises(StoreError, match="holds the input"):
        check_store_target(tmp_path, [labels])


def test_missing_dataset_and_unknown_format_fail_at_once(tmp_path, capsys):
    assert prepare(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["prepare", "no-such-format", str(tmp_path), str(tmp_path / "out")])
    assert info.value.code == 2
    assert "utkface" in capsys.readouterr().err  # the choices are listed


def test_limit_draws_across_the_dataset_not_its_first_files():
    from swinface.data.prepare import sample_slice

    ordered = [f"class{c}/{i}" for c in range(7) for i in range(100)]  # a folder per class
    picked = sample_slice(ordered, 70, seed=0)
    assert len(picked) == 70 and picked == sorted(picked, key=ordered.index)
    assert len({p.split("/")[0] for p in picked}) == 7
    assert sample_slice(ordered, 70, seed=0) == picked  # the same draw each time
    assert sample_slice(ordered, 70, seed=1) != picked
    assert sample_slice(ordered, None) == ordered and sample_slice(ordered, 10_000) == ordered
