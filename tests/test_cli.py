"""The command line, called in-process: analyze, verify, convert, prepare, and missing weights."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, NEEDS_DATA, SHARED_DATA

from swinface.cli import main

ASTRONAUT = FIXTURES / "images" / "astronaut.jpg"


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(ASTRONAUT, folder / "astronaut.jpg")
    shutil.copy(ASTRONAUT, folder / "nested" / "again.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all")
    (folder / "truncated.jpg").write_bytes(ASTRONAUT.read_bytes()[:3000])
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    return folder


def test_analyze_folder_prints_one_record_per_file_and_fails_softly(
    photo_folder, native_weights, tmp_path, capsys
):
    annotated = tmp_path / "annotated"
    status = main(
        [
            "analyze",
            str(photo_folder),
            "--weights",
            str(native_weights),
            "--device",
            "cpu",
            "--annotate",
            str(annotated),
        ]
    )
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 1  # some inputs could not be read
    by_name = {r["source"].rsplit("/", 1)[-1]: r for r in records}
    assert set(by_name) == {"astronaut.jpg", "again.jpg", "empty.jpg", "notes.png", "truncated.jpg"}
    assert len(by_name["astronaut.jpg"]["faces"]) == 1
    assert "embedding" not in by_name["astronaut.jpg"]["faces"][0]
    assert "empty" in by_name["empty.jpg"]["error"]
    assert "not an image" in by_name["notes.png"]["error"].lower()
    assert "analysed 2 of 5 photo(s), 2 face(s)" in err
    assert err.count("failed:") == 3
    assert sorted(p.name for p in annotated.iterdir()) == ["again.jpg", "astronaut.jpg"]


def test_analyze_exits_zero_when_every_input_was_read(native_weights, capsys):
    status = main(["analyze", str(ASTRONAUT), "--weights", str(native_weights), "--embeddings"])
    record = json.loads(capsys.readouterr().out)
    assert status == 0 and len(record["faces"][0]["embedding"]) == 512


def test_verify_uses_the_threshold_stored_with_the_weights(native_weights, tmp_path, capsys):
    mirrored = tmp_path / "mirrored.png"
    from PIL import Image

    Image.open(ASTRONAUT).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    assert main(["verify", str(ASTRONAUT), str(ASTRONAUT), "--weights", str(native_weights)]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert same["threshold"] == 0.3 and same["same"] is True
    assert (
        main(
            [
                "verify",
                str(ASTRONAUT),
                str(mirrored),
                "--weights",
                str(native_weights),
                "--threshold",
                "0.9999",
            ]
        )
        == 0
    )
    other = json.loads(capsys.readouterr().out)
    assert other["threshold"] == 0.9999 and other["similarity"] < 1.0


def test_verify_reports_a_photo_without_a_face(native_weights, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.full((100, 100, 3), 90, np.uint8)).save(blank)
    assert main(["verify", str(ASTRONAUT), str(blank), "--weights", str(native_weights)]) == 2
    assert "blank.png: no face found" in capsys.readouterr().err


def test_without_weights_the_cli_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    import gdown

    def offline(*args, **kwargs):
        raise ConnectionError("network unreachable")

    monkeypatch.setenv("SWINFACE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(gdown, "download_folder", offline)
    monkeypatch.setattr(gdown, "download", offline)
    assert main(["analyze", str(ASTRONAUT)]) == 2
    err = capsys.readouterr().err
    assert "swinface weights download swinface-published" in err
    assert "swinface weights import PATH --name swinface-published" in err
    assert "--weights PATH" in err


def test_convert_published_to_native(published_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(published_checkpoint), str(out)]) == 0
    assert out.is_file()
    from swinface.weights.formats import detect_format

    assert detect_format(out) == "safetensors"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=NEEDS_DATA)
@pytest.mark.parametrize(("fmt", "folder"), [("utkface", "utkface"), ("celeba", "celeba")])
def test_prepare_aligns_a_slice_of_a_real_pack(fmt, folder, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["prepare", fmt, str(SHARED_DATA / folder), str(out), "--limit", "40"]) == 0
    summary = capsys.readouterr().out
    from swinface.data.store import open_store

    store = open_store(out)
    assert f"aligned {len(store)} of 40 image(s)" in summary
    assert len(store) >= 30  # loosely aligned crops: the detector finds nearly all
    skipped = store.meta["skipped"]
    assert len(store) + len(skipped) == 40
    if skipped:
        assert "no face found in" in summary
    if fmt == "utkface":
        assert store.has("age").all() and store.has("gender").all()
    else:
        assert store.has("attributes").all() and store.has("identity").all()


def test_bench_prints_figures_for_each_backend_beside_the_baseline(capsys):
    args = [
        "bench",
        "--model",
        "swinface_nano",
        "--device",
        "cpu",
        "--batches",
        "1",
        "2",
        "--seconds",
        "0.05",
        "--train-batch",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ")
    for what in ("eager (baseline)", "onnxruntime", "end-to-end", "training"):
        assert what in out, what
    model_rows = [line for line in out.splitlines() if line.startswith("model ")]
    assert len(model_rows) == 4  # baseline (eager float32, timed once) and onnxruntime, x 2 batches
    assert all(line.rstrip().endswith("x") for line in model_rows)


def test_export_onnx_command_writes_a_graph_that_runs(native_weights, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "swinface.onnx"
    assert main(["export-onnx", str(native_weights), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    faces = np.zeros((3, 112, 112, 3), np.uint8)
    outputs = session.run(None, {"faces": faces})
    assert len(outputs) == 43 and outputs[-1].shape == (3, 512)
