"""`swinface analyze` on videos and `swinface watch`, in-process and as a process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from video_scenes import Placement, astronaut_face, render, write_video

from swinface.assets import SAMPLE_PHOTO
from swinface.cli import main
from swinface.model import create_model
from swinface.weights import save_native

MODEL = ["--backend", "eager", "--device", "cpu"]


@pytest.fixture(scope="module")
def nano_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nano") / "nano.safetensors"
    save_native(create_model("swinface_nano").eval(), path, name="nano")
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    truth = [[Placement(0, 20 + 12 * i, 40)] for i in range(12)]
    folder = tmp_path_factory.mktemp("videos")
    return write_video(folder / "walk.avi", render(truth, [astronaut_face()]))


def _records(out: str) -> list[dict]:
    def no_constants(name):
        raise AssertionError(f"not strict JSON: {name}")

    return [json.loads(line, parse_constant=no_constants) for line in out.splitlines() if line]


def test_analyze_mixes_photos_and_videos_and_reports_bad_files(
    tmp_path, nano_weights, video, capsys
):
    bad = tmp_path / "notes.mov"
    bad.write_text("not a video")
    status = main(
        ["analyze", str(SAMPLE_PHOTO), str(video), str(bad), "--weights", str(nano_weights), *MODEL]
    )
    captured = capsys.readouterr()
    records = _records(captured.out)
    assert status == 1
    tracks = [r for r in records if r.get("type") == "track"]
    assert len(tracks) == 1 and tracks[0]["source"] == str(video) and tracks[0]["frames"] == 12
    assert "embedding" not in tracks[0]
    assert {
        "source": str(bad),
        "error": f"{bad}: not a readable video (unrecognised format or damaged)",
    } in records
    photo = next(r for r in records if r["source"] == str(SAMPLE_PHOTO))
    assert len(photo["faces"]) == 1  # the photo path is unchanged
    assert f"failed: {bad}: not a readable video" in captured.err


def test_analyze_video_options(tmp_path, nano_weights, video, capsys):
    out = tmp_path / "annotated.mp4"
    args = ["analyze", str(video), "--weights", str(nano_weights), *MODEL]
    args += ["--frames", "--every", "3", "--annotate", str(out), "--crops", str(tmp_path / "crops")]
    args += ["--embeddings"]
    assert main(args) == 0
    records = _records(capsys.readouterr().out)
    frames = [r for r in records if r["type"] == "frame"]
    (track,) = [r for r in records if r["type"] == "track"]
    assert [f["frame"] for f in frames] == [0, 3, 6, 9]
    assert all(f["faces"][0]["track_id"] == track["track_id"] for f in frames)
    assert track["frames"] == 4 and len(track["embedding"]) == 64
    assert Path(track["crop"]).is_file() and out.is_file()


def test_analyze_truncated_video_writes_the_tracks_before_the_damage(
    tmp_path, nano_weights, video, capsys
):
    damaged = tmp_path / "damaged.avi"
    data = video.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    assert main(["analyze", str(damaged), "--weights", str(nano_weights), *MODEL]) == 1
    captured = capsys.readouterr()
    track, error = _records(captured.out)
    assert error["source"] == str(damaged)
    match = re.fullmatch(
        rf"{re.escape(str(damaged))}: decoding stopped at frame (\d+) of 12: .*", error["error"]
    )
    assert match and track["type"] == "track" and 0 < track["frames"] <= int(match[1]) < 12
    assert f"{int(match[1])} frame(s) read" in captured.err


def test_watch_a_file_prints_its_tracks(nano_weights, video, capsys):
    args = ["watch", str(video), "--as-fast-as-possible", "--weights", str(nano_weights), *MODEL]
    assert main(args) == 0
    captured = capsys.readouterr()
    (track,) = _records(captured.out)
    assert track["type"] == "track" and track["frames"] >= 2
    assert "frame(s) read" in captured.err


def test_watch_stops_on_sigint_and_writes_open_tracks(tmp_path, nano_weights):
    truth = [[Placement(0, 40 + (i % 100), 40)] for i in range(1500)]
    long_video = write_video(tmp_path / "long.avi", render(truth, [astronaut_face()]), fps=25)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swinface.cli", "watch", str(long_video), "--frames"]
        + ["--weights", str(nano_weights), *MODEL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for _ in range(2):  # two frame records: the watch is running, the track counts
            assert json.loads(proc.stdout.readline())["type"] == "frame"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    tracks = [r for r in _records(out) if r["type"] == "track"]
    assert len(tracks) == 1 and tracks[0]["frames"] >= 2
    assert "stopping" in err and "dropped to keep up" in err
