"""Video analysis end to end on videos generated from real face photos."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import NEEDS_DATA, SHARED_DATA
from video_scenes import (
    PixelEmbeddingRunner,
    Placement,
    astronaut_face,
    photo_face,
    render,
    write_video,
)

from swinface.model import create_model
from swinface.pipeline import FaceAnalyzer
from swinface.video import (
    FrameResult,
    KnownFaces,
    TrackerConfig,
    TrackResult,
    VideoSummary,
    analyze_video,
    watch,
)
from swinface.video.source import FrameSampler, LiveSource, VideoFile

UTKFACE = SHARED_DATA / "utkface"


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    """The tiny model with fixed random weights: the real pipeline, fast."""
    torch.manual_seed(0)
    model = create_model("swinface_nano").eval()
    return FaceAnalyzer(model=model, device="cpu", backend="eager", batch_size=32)


@pytest.fixture(scope="module")
def tracking_analyzer() -> FaceAnalyzer:
    """The same pipeline with embeddings that tell people apart, as trained ones do."""
    torch.manual_seed(0)
    model = create_model("swinface_nano").eval()
    a = FaceAnalyzer(model=model, device="cpu", backend="eager", batch_size=32)
    a.runner = PixelEmbeddingRunner(a.runner)
    return a


@pytest.fixture(scope="module")
def people() -> list[np.ndarray]:
    """Three different people: the bundled astronaut and two UTKFace faces."""
    if not UTKFACE.is_dir():
        pytest.skip(NEEDS_DATA)
    files = sorted(UTKFACE.glob("*.jpg"))
    return [astronaut_face(), photo_face(files[100]), photo_face(files[5000])]


def _split(events):
    frames = [e for e in events if isinstance(e, FrameResult)]
    tracks = [e for e in events if isinstance(e, TrackResult)]
    summaries = [e for e in events if isinstance(e, VideoSummary)]
    assert len(summaries) == 1 and events[-1] is summaries[0]
    return frames, tracks, summaries[0]


def _owner(frames, truth) -> dict[int, set[int]]:
    """For each track id, the people (indices into each frame's placements) its boxes sit on."""
    owners: dict[int, set[int]] = {}
    for fr in frames:
        for f in fr.faces:
            cx = (f.face.box[0] + f.face.box[2]) / 2
            cy = (f.face.box[1] + f.face.box[3]) / 2
            person = min(truth[fr.index], key=lambda p: abs(p.x + 36 - cx) + abs(p.y + 36 - cy))
            owners.setdefault(f.track_id, set()).add(person.face)
    return owners


def test_a_moving_face_is_one_track_with_its_frames_and_times(tmp_path, analyzer):
    truth = [[Placement(0, 10 + 14 * i, 30 + 3 * i)] for i in range(14)]
    video = write_video(tmp_path / "moving.mp4", render(truth, [astronaut_face()]))
    frames, tracks, summary = _split(list(analyze_video(analyzer, video)))
    assert summary.ok and summary.frames_read == 14 and summary.frames_analysed == 14
    assert len(frames) == 14 and all(len(f.faces) == 1 for f in frames)
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(14)])
    (track,) = tracks
    assert (track.frames, track.first_frame, track.last_frame) == (14, 0, 13)
    assert (track.first_time, track.last_time) == pytest.approx((0.0, 1.3))
    assert np.linalg.norm(track.embedding) == pytest.approx(1.0, abs=1e-5)
    assert sum(track.expression_share.values()) == pytest.approx(1.0)
    assert track.expression_timeline[0][0] == 0.0
    assert track.expression_timeline[-1][1] == pytest.approx(1.3)
    assert len(track.attributes) == 40 and track.best_crop is not None
    # Every other frame, then 5 frames per second: the same 10 frames.
    for options in ({"every": 2}, {"fps": 5}):
        frames, tracks, _ = _split(list(analyzer.analyze_video(video, **options)))
        assert [f.index for f in frames] == list(range(0, 14, 2))
        assert [(t.frames, t.first_frame, t.last_frame) for t in tracks] == [(7, 0, 12)]


def test_two_faces_crossing_keep_their_ids(tmp_path, tracking_analyzer, people):
    # Face 0 moves right in front; face 1 moves left behind it and is hidden a few frames.
    truth = [[Placement(1, 240 - 9 * i, 45), Placement(0, 10 + 9 * i, 40)] for i in range(27)]
    video = write_video(tmp_path / "crossing.avi", render(truth, people))
    frames, tracks, summary = _split(list(analyze_video(tracking_analyzer, video)))
    owners = _owner(frames, truth)
    assert len(tracks) == 2 and summary.tracks == 2
    # Each reported track stays on one person (a half-hidden face may briefly start a
    # one-frame track of its own, which is dropped as too short, not reported).
    assert sorted((owners[t.track_id] for t in tracks), key=min) == [{0}, {1}]
    front = next(t for t in tracks if owners[t.track_id] == {0})
    back = next(t for t in tracks if owners[t.track_id] == {1})
    assert front.frames == 27 and (front.first_time, front.last_time) == pytest.approx((0, 2.6))
    seen = [fr.index for fr in frames for f in fr.faces if f.track_id == back.track_id]
    hidden = set(range(27)) - set(seen)
    assert back.frames == len(seen) and 2 <= len(hidden) <= 6
    assert min(hidden) > 5 and max(hidden) < 20  # hidden only while crossing
    assert (back.first_frame, back.last_frame) == (0, 26)  # and followed after it


def test_a_face_leaving_and_coming_back(tmp_path, tracking_analyzer, people):
    # Person 0 is there for 0.8 s, gone for 0.8 s, back elsewhere; person 1 stays.
    truth = [
        [Placement(1, 220, 50)]
        + ([Placement(0, 20, 40)] if i < 8 else [Placement(0, 120, 60)] if i >= 16 else [])
        for i in range(24)
    ]
    video = write_video(tmp_path / "return.avi", render(truth, people))
    frames, tracks, _ = _split(list(analyze_video(tracking_analyzer, video)))
    owners = _owner(frames, truth)
    assert len(tracks) == 2
    back = next(t for t in tracks if owners[t.track_id] == {0})
    assert back.frames == 16 and (back.first_time, back.last_time) == pytest.approx((0, 2.3))
    # With a shorter allowed gap the leaving closes the track: the return is a new one.
    config = TrackerConfig(max_gap=0.5)
    events = list(analyze_video(tracking_analyzer, video, tracker=config))
    frames, tracks, _ = _split(events)
    spans = sorted((round(t.first_time, 3), round(t.last_time, 3), t.frames) for t in tracks)
    assert spans == [(0.0, 0.7, 8), (0.0, 2.3, 24), (1.6, 2.3, 8)]
    # The first track closed as soon as the gap passed, before the video ended.
    first_close = next(i for i, e in enumerate(events) if isinstance(e, TrackResult))
    closed_at = max(e.time for e in events[:first_close] if isinstance(e, FrameResult))
    assert 0.7 + 0.5 < closed_at < 1.6


def test_a_cut_between_scenes(tmp_path, tracking_analyzer, people):
    # Scene 0: person 0 on the left. Scene 1: person 2 where person 0 was, person 0 on the right.
    truth = [
        [Placement(0, 40, 40)] if i < 10 else [Placement(2, 40, 40), Placement(0, 220, 60)]
        for i in range(20)
    ]
    scenes = [0] * 10 + [1] * 10
    video = write_video(tmp_path / "cut.avi", render(truth, people, scenes=scenes))
    frames, tracks, _ = _split(list(analyze_video(tracking_analyzer, video)))
    owners = _owner(frames, truth)
    assert len(tracks) == 2 and sorted(owners.values(), key=min) == [{0}, {2}]
    by_person = {min(owners[t.track_id]): t for t in tracks}
    assert by_person[0].frames == 20 and by_person[0].first_time == 0.0
    assert by_person[2].frames == 10 and by_person[2].first_time == pytest.approx(1.0)


def test_smoothing_the_track_age_spreads_less_than_the_frames(tmp_path, analyzer):
    truth = [[Placement(0, 60 + 3 * (i % 7), 40 + 2 * (i % 5))] for i in range(30)]
    images = render(truth, [astronaut_face(88)], jitter=12.0, seed=1)
    video = write_video(tmp_path / "one.avi", images)
    frames, tracks, _ = _split(list(analyze_video(analyzer, video)))
    raw = np.array([f.faces[0].face.analysis.age for f in frames])
    smoothed = np.array([f.faces[0].track_age for f in frames])
    (track,) = tracks
    assert raw.std() > 0
    assert smoothed[5:].std() < raw.std()  # the per-frame answer flickers less
    assert track.age == pytest.approx(float(np.median(raw)), abs=1e-6)
    assert track.age_std == pytest.approx(raw.std(), rel=1e-5)
    # The track's answer is far steadier than one frame's: its standard error is smaller.
    assert 1.2533 * track.age_std / np.sqrt(track.frames) < raw.std()
    lo, hi = track.age_iqr
    assert lo <= track.age <= hi


def _truncated(tmp_path) -> tuple[Path, int]:
    truth = [[Placement(0, 20 + 6 * i, 40)] for i in range(30)]
    video = write_video(tmp_path / "full.avi", render(truth, [astronaut_face()]))
    data = video.read_bytes()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(data[: len(data) // 2])
    return damaged, 30


def test_a_truncated_video_gives_what_came_before_the_damage(tmp_path, analyzer):
    damaged, total = _truncated(tmp_path)
    frames, tracks, summary = _split(list(analyze_video(analyzer, damaged)))
    assert 0 < summary.frames_read < total and len(frames) == summary.frames_read
    assert len(tracks) == 1 and tracks[0].frames == summary.frames_read
    assert str(damaged) in summary.error
    assert f"frame {summary.frames_read} of {total}" in summary.error


def test_files_that_are_not_videos_are_reported(tmp_path, analyzer):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    (empty := tmp_path / "empty.mkv").write_bytes(b"")
    for path, message in (
        (text, "not a readable video"),
        (empty, "empty file"),
        (tmp_path / "missing.mp4", "no such file"),
    ):
        (summary,) = list(analyze_video(analyzer, path))
        assert isinstance(summary, VideoSummary) and summary.error.startswith(f"{path}: ")
        assert message in summary.error


def test_sampling_by_rate_follows_the_timestamps():
    sampler = FrameSampler(fps=4)
    picked = [i for i in range(25) if sampler(i, i / 10)]  # a 10 fps video
    assert picked == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23]
    with pytest.raises(ValueError, match="every"):
        FrameSampler(every=0)


def test_annotated_video_and_crops_and_known_faces(tmp_path, tracking_analyzer, people):
    truth = [[Placement(0, 20 + 5 * i, 40), Placement(1, 200, 50)] for i in range(12)]
    video = write_video(tmp_path / "two.avi", render(truth, people))
    known = tmp_path / "known"
    for name, face in (("astronaut", people[0]), ("someone_else", people[2])):
        (known / name).mkdir(parents=True)
        cv2.imwrite(str(known / name / "a.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    gallery = KnownFaces.from_folder(tracking_analyzer, known, threshold=0.8)
    events = list(
        analyze_video(
            tracking_analyzer,
            video,
            known=gallery,
            crops=tmp_path / "crops",
            annotate=tmp_path / "out" / "annotated.mp4",
            every=3,
        )
    )
    frames, tracks, _ = _split(events)
    owners = _owner(frames, truth)
    names = {min(owners[t.track_id]): t.identity and t.identity.name for t in tracks}
    assert names == {0: "astronaut", 1: None}
    for t in tracks:
        crop = cv2.imread(t.crop_path)
        assert crop is not None and crop.shape[0] > 20 and t.to_dict()["crop"] == t.crop_path
    out = VideoFile(tmp_path / "out" / "annotated.mp4")
    assert (out.width, out.height) == (320, 160)
    assert sum(1 for _ in out) == 12  # every frame written, analysed or not
    assert not list((tmp_path / "out").glob(".*partial*"))


class _FlakyCamera:
    """A capture that delivers `n` frames then breaks; `opens` counts reconnections."""

    def __init__(self, images, fail_open: bool = False) -> None:
        self.images, self.fail_open = list(images), fail_open

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return not self.fail_open

    def read(self):
        if not self.images:
            return False, None
        return True, cv2.cvtColor(self.images.pop(0), cv2.COLOR_RGB2BGR)

    def get(self, prop) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_a_stream_that_drops_is_reported_and_reconnected(tracking_analyzer, people):
    truth = [[Placement(0, 40 + 4 * i, 40)] for i in range(12)]
    images = render(truth, people)
    connections = [
        _FlakyCamera(images[:6]),
        _FlakyCamera([], fail_open=True),
        _FlakyCamera(images[6:]),
    ]
    opened = []

    def open_stream(source):
        opened.append(source)
        return connections[len(opened) - 1] if len(opened) <= 3 else _FlakyCamera([], True)

    events = list(
        watch(
            tracking_analyzer,
            "rtsp://camera.example/live",
            open=open_stream,
            reconnect=2,
            reconnect_delay=0.01,
        )
    )
    frames, tracks, summary = _split(events)
    assert summary.reconnects == 1 and summary.frames_read == 12
    assert any("dropped after frame 6" in p for p in summary.problems)
    assert any("reconnected" in p for p in summary.problems)
    # After the last frames the stream drops again and both retries fail: said, not raised.
    assert "2 reconnection attempt(s) failed" in summary.error
    assert len(frames) + summary.frames_dropped == 12
    assert sum(t.frames for t in tracks) == len(frames)


def test_watch_drops_frames_to_keep_up_and_stop_closes_open_tracks(tmp_path, analyzer):
    truth = [[Placement(0, 40 + 2 * (i % 50), 40)] for i in range(2000)]  # 20 s at 100 fps
    video = write_video(tmp_path / "live.avi", render(truth, [astronaut_face()]), fps=100)
    stop = threading.Event()
    events = []
    for event in watch(analyzer, str(video), stop=stop):
        events.append(event)
        if sum(isinstance(e, FrameResult) for e in events) == 3:
            stop.set()  # as Ctrl-C does in `swinface watch`
    frames, tracks, summary = _split(events)
    assert summary.ok and summary.frames_dropped > 0  # analysis is slower than 100 fps
    assert summary.frames_read < 2000  # stopped before the end
    assert len(tracks) == 1 and tracks[0].frames == len(frames)  # the open track was written
    assert LiveSource  # the reading side is also used directly by callers
