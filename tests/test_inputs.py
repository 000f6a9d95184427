"""What the CLI's photo arguments expand to, where annotated copies go, progress lines,
strict JSON and annotation labels: the pieces `swinface analyze` is built from."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from conftest import FIXTURES

from swinface.inputs import InputError, annotation_targets, expand_inputs

ASTRONAUT = FIXTURES / "images" / "astronaut.jpg"


def touch(path, data: bytes = b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(inputs) -> list[str]:
    return [p.name for p in inputs.photos]


def test_glob_patterns_filter_like_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("shots/a.jpg", "shots/b.PNG", "shots/labels.csv", "shots/notes.txt"):
        touch(tmp_path / name)
    touch(tmp_path / "shots/deeper/c.webp")
    from_glob = expand_inputs(["shots/**/*"])
    from_folder = expand_inputs(["shots"])
    assert sorted(names(from_glob)) == sorted(names(from_folder))
    assert sorted(names(from_folder)) == ["shots/a.jpg", "shots/b.PNG", "shots/deeper/c.webp"]
    # A file named on its own is taken as given, whatever its suffix.
    assert names(expand_inputs(["shots/labels.csv"])) == ["shots/labels.csv"]
    assert expand_inputs(["shots/*.csv"]).problems == [
        ("shots/*.csv", "no image file matches this pattern")
    ]


def test_missing_inputs_and_symlink_loops_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "photos/a.jpg")
    os.symlink("loop_b.jpg", tmp_path / "photos/loop_a.jpg")
    os.symlink("loop_a.jpg", tmp_path / "photos/loop_b.jpg")
    os.symlink("..", tmp_path / "photos/up")  # a folder link back up the tree
    os.symlink("gone.jpg", tmp_path / "photos/dangling.jpg")
    found = expand_inputs(["photos", "missing.jpg", "photos/loop_a.jpg"])
    assert names(found) == ["photos/a.jpg"]  # once, though `up` leads back to it
    problems = dict(found.problems)
    assert problems["missing.jpg"] == "no such file or folder"
    assert problems["photos/loop_a.jpg"] == "symbolic link loop"
    assert problems["photos/up"].startswith("symbolic link loop")
    assert problems["photos/dangling.jpg"].startswith("broken symbolic link")


def test_the_same_photo_reached_twice_is_read_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "p/a.jpg")
    assert names(expand_inputs(["p", "p/*.jpg", "p/a.jpg"])) == ["p/a.jpg"]


def test_stdin_gives_a_list_of_paths_or_one_image(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "dir/b.png")
    listing = io.BytesIO(b"a.jpg\n\ndir\nmissing.jpg\n")
    found = expand_inputs(["-"], stdin=listing)
    assert names(found) == ["a.jpg", "dir/b.png"]
    assert found.problems == [("missing.jpg", "no such file or folder")]
    image = expand_inputs(["-"], stdin=io.BytesIO(ASTRONAUT.read_bytes()))
    assert names(image) == ["<stdin>"] and image.photos[0].source == ASTRONAUT.read_bytes()


def test_annotation_targets_keep_folders_and_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("in/a/photo.jpg", "in/b/photo.jpg", "in/b/photo.png", "in/b/anim.gif"):
        touch(tmp_path / name)
    found = expand_inputs(["in"])
    targets = annotation_targets(found, "out")
    assert [str(t) for t in targets] == [
        "out/a/photo.jpg",
        "out/b/anim.gif.png",  # OpenCV writes no GIF
        "out/b/photo.jpg",
        "out/b/photo.png",
    ]
    assert len({str(t).casefold() for t in targets}) == len(targets)


def test_annotation_folder_may_not_be_a_file_or_inside_the_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "in/a.jpg")
    touch(tmp_path / "report.txt")
    found = expand_inputs(["in"])
    with pytest.raises(InputError, match="is a file"):
        annotation_targets(found, "report.txt")
    with pytest.raises(InputError, match="inside the input folder"):
        annotation_targets(found, "in/annotated")
    with pytest.raises(InputError, match="inside the input folder"):
        annotation_targets(found, "in")
    # A photo named on its own, annotated into its own folder, would be overwritten.
    with pytest.raises(InputError, match="would overwrite the photo"):
        annotation_targets(expand_inputs(["in/a.jpg"]), "in")


def test_progress_in_a_log_is_plain_lines(monkeypatch):
    from swinface.progress import Progress

    log = io.StringIO()
    with Progress(4, "prepare x", "image", interval=0.0, stream=log, tty=False) as bar:
        for _ in range(4):
            bar.update()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("prepare x: 1/4 images (25%)")
    assert lines[3].startswith("prepare x: 4/4 images (100%)")


def test_progress_on_a_terminal_is_a_bar():
    from swinface.progress import Progress

    screen = io.StringIO()
    with Progress(3, "analyze", "photo", stream=screen, tty=True) as bar:
        bar.update(3)
    assert screen.getvalue().startswith("\ranalyze:")  # tqdm's bar, redrawn in place


def test_strict_json_writes_null_for_nan():
    from swinface.jsonio import dumps

    text = dumps({"landmarks": [[float("nan"), 1.0]], "age": float("inf"), "n": 3})
    assert json.loads(text, parse_constant=pytest.fail) == {
        "landmarks": [[None, 1.0]],
        "age": None,
        "n": 3,
    }


def _face(age: float, box=(10, 10, 60, 70)):
    from swinface.decode import FaceAttributes
    from swinface.pipeline import Face

    analysis = FaceAttributes(
        age=age,
        gender="female",
        gender_probability=0.9,
        expression="happiness",
        expression_probabilities={},
        attributes={},
        embedding=np.zeros(4, np.float32),
    )
    return Face(box, np.full((5, 2), np.nan), 0.99, analysis)


def test_labels_clamp_age_at_zero_and_round_it():
    from swinface.vision.draw import face_label

    assert face_label(_face(-3.4)) == "F 0 happiness"
    assert face_label(_face(33.6)) == "F 34 happiness"
    assert _face(-3.4).analysis.to_dict()["age"] == 0.0


def _label_height(canvas: np.ndarray, box) -> int:
    """Rows above the box that the filled label background covers."""
    green = (canvas[:, :, 1] == 255) & (canvas[:, :, 0] == 0) & (canvas[:, :, 2] == 0)
    x1, y1 = box[0], box[1]
    column = green[:y1, x1 + 1]
    return int(column.sum())


def test_labels_scale_with_the_photo():
    from swinface.vision.draw import draw_faces

    small = np.full((800, 800, 3), 128, np.uint8)
    large = np.full((4000, 4000, 3), 128, np.uint8)
    h_small = _label_height(draw_faces(small, [_face(30, (80, 240, 480, 720))]), (80, 240))
    h_large = _label_height(draw_faces(large, [_face(30, (400, 1200, 2400, 3600))]), (400, 1200))
    assert 15 <= h_small <= 40  # readable, not a banner
    assert 4 < h_large / h_small < 6  # five times taller on a photo five times larger
    tiny = np.full((120, 120, 3), 128, np.uint8)
    assert _label_height(draw_faces(tiny, [_face(30, (10, 40, 60, 100))]), (10, 40)) >= 10


def test_progress_of_a_resumed_run_counts_only_new_work():
    from swinface.progress import Progress

    log = io.StringIO()
    with Progress(10, "targets", "face", initial=6, interval=0.0, stream=log, tty=False) as bar:
        bar.update(2)
    assert log.getvalue().startswith("targets: 8/10 faces (80%)")
