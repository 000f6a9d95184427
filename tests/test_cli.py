"""The command line, called in-process: analyze, verify, convert, prepare, and missing weights."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURES, NEEDS_DATA, SHARED_DATA

from swinface.cli import main

ASTRONAUT = FIXTURES / "images" / "astronaut.jpg"
ROOT = FIXTURES.parents[1]


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
    written = sorted(str(p.relative_to(annotated)) for p in annotated.rglob("*") if p.is_file())
    assert written == ["astronaut.jpg", "nested/again.jpg"]  # the photos' own folders


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
        == 1  # different people: the exit status is the decision
    )
    other = json.loads(capsys.readouterr().out)
    assert other["threshold"] == 0.9999 and other["similarity"] < 1.0 and other["same"] is False


def test_verify_says_which_face_it_used(nano_weights, capsys):
    assert main(["verify", str(ASTRONAUT), str(ASTRONAUT), *fast(nano_weights[0])]) == 0
    record = json.loads(capsys.readouterr().out)
    for key in ("face_a", "face_b"):
        x1, y1, x2, y2 = record[key]["box"]
        assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512
        assert record[key]["faces_found"] == 1


def test_verify_reports_a_photo_without_a_face(native_weights, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.full((100, 100, 3), 90, np.uint8)).save(blank)
    assert main(["verify", str(ASTRONAUT), str(blank), "--weights", str(native_weights)]) == 2
    assert "blank.png: no face found" in capsys.readouterr().err


def test_without_weights_the_cli_says_so_first_then_the_other_ways_once(
    tmp_path, monkeypatch, capsys
):
    import gdown

    def offline(*args, **kwargs):
        raise ConnectionError("network unreachable")

    from swinface.weights import registry

    home = tmp_path / "home"
    monkeypatch.setenv("SWINFACE_HOME", str(home))
    # An installation without shipped default weights: the published ones are the default.
    monkeypatch.delenv(registry.SHIPPED_ENV, raising=False)
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path / "no-default")
    monkeypatch.setattr(gdown, "download_folder", offline)
    monkeypatch.setattr(gdown, "download", offline)
    assert main(["analyze", str(ASTRONAUT)]) == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert "no --weights given" in first and "not in the cache yet" in first
    assert "swinface weights download" not in err  # the download that just failed
    assert err.count("swinface weights import PATH --name swinface-published") == 1
    assert err.count("--weights PATH") == 1
    assert err.count("network unreachable") == 1
    leftovers = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    assert leftovers == []  # no 0-byte lock file, nothing half-fetched


def test_convert_published_to_native(published_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(published_checkpoint), str(out)]) == 0
    assert out.is_file()
    from swinface.weights.formats import detect_format

    assert detect_format(out) == "safetensors"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


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


def test_bench_prints_figures_for_each_backend_beside_the_baseline(capsys, monkeypatch):
    import swinface.backends as backends

    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: False)  # auto: ONNX Runtime
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
        "--backends",
        "eager",
        "onnxruntime",
        "--precisions",
        "float32",
        "--rounds",
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
    assert "auto runs onnxruntime float32" in out  # no int8 graph was made for these weights
    stages = next(line for line in out.splitlines() if line.startswith("stages, ms per photo: "))
    assert all(f"{s} " in stages for s in ("decode", "detect", "align", "analyse"))
    assert "(bound by " in stages
    from swinface.pipeline import default_workers

    if default_workers() > 1:  # beside the same pipeline preparing one photo at a time
        line = next(line for line in out.splitlines() if line.startswith("end to end: "))
        found = re.search(
            r"([\d.]+) photos/s with \d+ .* ([\d.]+) one at a time \(([\d.]+)x\)", line
        )
        parallel, serial, ratio = map(float, found.groups())
        assert ratio == pytest.approx(parallel / serial, rel=0.05)  # figures rounded


def _random_faces(folder, n: int, size: tuple[int, int]):
    """A folder of `n` face-sized images of random pixels (PNG, lossless)."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def test_bench_reference_prints_int8_and_plain_beside_the_accuracy_bar(
    capsys, tmp_path, monkeypatch
):
    import swinface.backends as backends

    monkeypatch.setattr(backends, "cpu_runs_bf16", lambda: False)  # auto: ONNX Runtime
    faces = _random_faces(tmp_path / "faces", 20, (100, 90))
    args = ["bench", "--model", "swinface_nano", "--device", "cpu", "--batches", "1"]
    args += ["--seconds", "0.05", "--rounds", "1", "--train-batch", "0", "--reference"]
    args += ["--backends", "plain", "onnxruntime", "--faces", str(faces)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "int8: an int8 graph calibrated on 10 faces here" in out
    rows = {tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("model ")}
    assert rows == {("eager", "(baseline)"), ("plain", "float32"), ("onnxruntime", "float32")} | {
        ("onnxruntime", "int8")
    }
    assert "vs plain" in out
    assert f"agreement with eager float32 on 10 held-out faces from {faces}" in out
    agreement = [line for line in out.splitlines() if line.startswith(("plain ", "onnxruntime "))]
    assert len(agreement) == 3 and agreement[0].split()[2:4] == ["1.0000", "1.0000"]
    assert "bar: cosine mean >= 0.995" in out
    # The benchmark's own int8 graph never becomes what auto runs.
    assert "auto runs onnxruntime float32" in out


def test_quantize_command_writes_a_checked_int8_graph(capsys, tmp_path, monkeypatch):
    import onnxruntime as ort

    from swinface.backends import cpu_runs_bf16

    monkeypatch.setenv("SWINFACE_HOME", str(tmp_path / "home"))  # its checks stay here
    faces = _random_faces(tmp_path / "faces", 16, (112, 112))
    out_path = tmp_path / "int8.onnx"
    args = ["quantize", "--model", "swinface_nano", "--faces", str(faces), "--out", str(out_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"int8 graph: {out_path}" in out and "int8 agreement with float32: cosine mean" in out
    assert "(8 faces)" in out and "accuracy bar" in out
    meta = ort.InferenceSession(str(out_path)).get_modelmeta().custom_metadata_map
    assert meta["format"] == "swinface-onnx-int8" and meta["calibration_faces"] == "8"
    if cpu_runs_bf16():  # what auto runs here, checked on the same 8 held-out faces
        line = next(x for x in out.splitlines() if x.startswith("OpenVINO bf16 agreement"))
        assert "cosine mean" in line and "(8 faces)" in line
        assert list((tmp_path / "home" / "onnx").glob("swinface-*-bf16.json"))
    # A graph written elsewhere (--out) is not one auto finds.
    assert "auto on this CPU runs these weights with " in out
    assert "with ONNX Runtime on this int8 graph" not in out
    assert main(["quantize", "--faces", str(tmp_path / "nowhere")]) != 0


def test_export_onnx_command_writes_a_graph_that_runs(native_weights, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "swinface.onnx"
    assert main(["export-onnx", str(native_weights), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    faces = np.zeros((3, 112, 112, 3), np.uint8)
    outputs = session.run(None, {"faces": faces})
    assert len(outputs) == 43 and outputs[-1].shape == (3, 512)


# ---------------------------------------------------------------- newcomer's first hour


@pytest.fixture(scope="module")
def nano_weights(tmp_path_factory):
    """Small random weights (swinface_nano) carrying a verification threshold."""
    import torch

    from swinface.model import create_model
    from swinface.weights import save_native

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("nano")
    path = folder / "nano.safetensors"
    save_native(
        create_model("swinface_nano"), path, name="nano", metadata={"verify_threshold": "0.5"}
    )
    bare = folder / "bare.safetensors"
    save_native(create_model("swinface_nano"), bare, name="bare")
    return path, bare


def fast(weights) -> list[str]:
    return ["--weights", str(weights), "--device", "cpu", "--backend", "eager"]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model gets loaded: the checks must answer first."""
    import swinface.weights.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(loading, "load_model", refuse)


def test_annotate_never_overwrites_within_a_run(nano_weights, tmp_path, capsys):
    from PIL import Image

    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    shutil.copy(ASTRONAUT, photos / "a" / "photo.jpg")
    Image.open(ASTRONAUT).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        photos / "b" / "photo.jpg"
    )
    Image.open(ASTRONAUT).convert("L").save(photos / "b" / "photo.png")
    out = tmp_path / "annotated"
    assert main(["analyze", str(photos), *fast(nano_weights[0]), "--annotate", str(out)]) == 0
    written = {str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file()}
    assert sorted(written) == ["a/photo.jpg", "b/photo.jpg", "b/photo.png"]
    contents = {p.read_bytes() for p in written.values()}
    assert len(contents) == 3  # three photos, three different pictures
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in written.values()} == {0o666 & ~umask}


def test_annotate_pointing_at_a_file_fails_at_once(tmp_path, no_model, capsys):
    existing = tmp_path / "taken.jpg"
    existing.write_bytes(b"precious")
    assert main(["analyze", str(ASTRONAUT), "--annotate", str(existing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--annotate" in err and "is a file" in err
    assert existing.read_bytes() == b"precious"


def test_annotate_inside_the_input_folder_is_refused(photo_folder, no_model, capsys):
    assert main(["analyze", str(photo_folder), "--annotate", str(photo_folder / "out")]) == 2
    assert "inside the input folder" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["tpu", "cuda:x"])
def test_unknown_device_fails_before_anything_loads(device, no_model, capsys):
    assert main(["analyze", str(ASTRONAUT), "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"swinface analyze: error: --device {device}: unknown device")
    assert "Traceback" not in err


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_bad_workers_fail_before_anything_loads(workers, no_model, capsys):
    assert main(["analyze", str(ASTRONAUT), "--workers", workers]) == 2
    err = capsys.readouterr().err
    assert err == f"swinface analyze: error: --workers {workers}: must be positive\n"


def test_cuda_without_cuda_fails_before_loading(native_weights, no_model, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["analyze", str(ASTRONAUT), "--weights", str(native_weights), "--device", "cuda"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA device is available" in err and err.count("\n") == 1


def test_missing_photo_is_reported_without_loading_the_model(no_model, capsys):
    assert main(["analyze", "missing.jpg", "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["source"] == "missing.jpg" and "no such file" in record["error"]
    assert "missing.jpg: no such file" in err


def test_missing_weights_file_is_reported_before_loading(no_model, capsys):
    assert main(["analyze", str(ASTRONAUT), "--weights", "nowhere/model.safetensors"]) == 2
    assert "--weights nowhere/model.safetensors: no such file" in capsys.readouterr().err


def test_export_onnx_names_the_minimum_opset(native_weights, tmp_path, no_model, capsys):
    out = tmp_path / "old.onnx"
    assert main(["export-onnx", str(native_weights), str(out), "--opset", "9"]) == 2
    err = capsys.readouterr().err
    assert "--opset 9" in err and "opset 14 or newer" in err and err.count("\n") == 1
    assert not out.exists()


def test_broken_pipe_ends_quietly_in_process(nano_weights, monkeypatch, capsys):
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["analyze", str(ASTRONAUT), *fast(nano_weights[0])]) == 141
    assert "Traceback" not in capsys.readouterr().err


def test_broken_pipe_into_head_prints_no_traceback(nano_weights, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        shutil.copy(ASTRONAUT, folder / f"{i:02d}.jpg")
    command = (
        f"{sys.executable} -m swinface.cli analyze {folder} --weights {nano_weights[0]} "
        # A record at a time, each past the pipe's buffer with the others: writes meet a closed pipe.
        "--device cpu --backend eager --batch-size 1 --embeddings | head -c 300"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, env=env, timeout=300
    )
    assert len(done.stdout) == 300
    assert b"Traceback" not in done.stderr and b"BrokenPipeError" not in done.stderr
    assert done.returncode == 141


def test_aligned_records_are_strict_json(nano_weights, capsys):
    assert main(["analyze", str(ASTRONAUT), "--aligned", *fast(nano_weights[0])]) == 0
    line = capsys.readouterr().out

    def reject(constant):
        raise ValueError(f"not JSON: {constant}")

    record = json.loads(line, parse_constant=reject)
    assert record["schema_version"] == 1
    assert record["faces"][0]["landmarks"] is None
    assert record["faces"][0]["box"] == [0.0, 0.0, 512.0, 512.0]


def test_records_match_the_documented_schema(nano_weights, capsys):
    schema = json.loads((ROOT / "docs" / "analysis-record.schema.json").read_text())
    assert main(["analyze", str(ASTRONAUT), "missing.jpg", "--embeddings", *fast(nano_weights[0])])
    ok, failed = (json.loads(line) for line in reversed(capsys.readouterr().out.splitlines()))
    for record in (ok, failed):
        assert set(schema["required"]) <= set(record) <= set(schema["properties"])
    face_schema = schema["properties"]["faces"]["items"]
    face = ok["faces"][0]
    assert set(face_schema["required"]) <= set(face) <= set(face_schema["properties"])
    assert ok["schema_version"] == schema["properties"]["schema_version"]["const"]


def test_pixel_limit_error_names_the_cli_option(nano_weights, capsys):
    assert main(["analyze", str(ASTRONAUT), "--max-pixels", "1000", *fast(nano_weights[0])]) == 1
    record = json.loads(capsys.readouterr().out)
    assert "--max-pixels" in record["error"]
    assert main(["analyze", str(ASTRONAUT), "--max-pixels", "0", *fast(nano_weights[0])]) == 0


def test_stdin_list_of_paths(nano_weights, monkeypatch, capsys):
    listing = io.TextIOWrapper(io.BytesIO(f"{ASTRONAUT}\n".encode()))
    monkeypatch.setattr(sys, "stdin", listing)
    assert main(["analyze", "-", *fast(nano_weights[0])]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == str(ASTRONAUT)


def test_stdin_image_bytes(nano_weights, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(ASTRONAUT.read_bytes())))
    assert main(["analyze", "-", *fast(nano_weights[0])]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["source"] == "<stdin>" and record["width"] == 512


def test_verify_without_a_threshold_prints_the_similarity_undecided(nano_weights, capsys):
    bare = nano_weights[1]
    assert main(["verify", str(ASTRONAUT), str(ASTRONAUT), *fast(bare)]) == 3
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["same"] is None and record["threshold"] is None
    assert record["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert err.index("no verification threshold") < err.index("loading the model")
    # With a threshold the exit status is the decision.
    assert main(["verify", str(ASTRONAUT), str(ASTRONAUT), *fast(bare), "--threshold", "0.5"]) == 0


def test_weights_folder_takes_the_latest_checkpoint(nano_weights, tmp_path, capsys):
    run = tmp_path / "run"
    step = run / "checkpoints" / "step_0000010"
    step.mkdir(parents=True)
    shutil.copy(nano_weights[0], step / "model.safetensors")
    (run / "checkpoints" / "latest").write_text("step_0000010")
    assert main(["analyze", str(ASTRONAUT), *fast(run)]) == 0
    assert str(step / "model.safetensors") in capsys.readouterr().err


def test_weights_import_without_a_name_is_usable_by_its_stem(nano_weights, tmp_path, capsys):
    mine = tmp_path / "my-model.safetensors"
    shutil.copy(nano_weights[0], mine)
    assert main(["weights", "import", str(mine)]) == 0
    err = capsys.readouterr().err
    assert "imported as 'my-model': use --weights my-model" in err
    assert "nothing was verified" in err
    assert main(["weights", "list"]) == 0
    assert "my-model" in capsys.readouterr().out
    assert main(["analyze", str(ASTRONAUT), *fast("my-model")]) == 0


def test_compiled_on_cpu_is_announced(capsys):
    from swinface.cli import _announce_backend

    _announce_backend(None, "compiled", "cpu")
    assert "about 2 minutes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["analyze", "--help"],
            ["(default: 64)", "{auto,eager,compiled,onnxruntime,openvino}", "exit status"],
        ),
        (["verify", "--help"], ["0    success (verify: the same person)", "box"]),
        (["export-onnx", "--help"], ["(default: 17)", "14 to 20"]),
        (["bench", "--help"], ["(default: 2.0)", "swinface_nano: a small model for tests"]),
        (
            ["prepare", "--help"],
            ["formats:", "utkface", "celeba", "fer2013-folders", "--overwrite"],
        ),
    ],
)
def test_help_shows_defaults_and_choices(argv, expected, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in expected:
        assert " ".join(text.split()) in out, text


def test_model_names_in_the_cli_are_the_registered_ones():
    from swinface.cli import MODEL_NAMES
    from swinface.model.config import MODEL_CONFIGS

    assert set(MODEL_NAMES) == set(MODEL_CONFIGS)


def test_the_cli_answers_mistakes_without_importing_torch(tmp_path):
    code = (
        "import sys\n"
        "from swinface.cli import main\n"
        "status = main(['analyze', 'missing.jpg', '--device', 'cpu'])\n"
        "assert status == 1, status\n"
        "assert main(['analyze', 'x.jpg', '--device', 'tpu']) == 2\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
