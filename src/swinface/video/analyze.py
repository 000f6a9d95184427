"""Video analysis: frames in, tracked faces and one answer per person out.

`analyze_video` reads a file, `watch` a live source; both feed the same
`VideoSession`, which detects and aligns faces on the analysed frames, runs
SwinFace on faces batched across frames, tracks them, and finishes a
`TrackResult` for every track that closes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swinface.pipeline import Face
from swinface.video.annotate import AnnotatedWriter, draw_tracks
from swinface.video.known import KnownFaces
from swinface.video.source import Frame, LiveSource, VideoError, VideoFile
from swinface.video.summary import TrackAccumulator, TrackResult, face_quality, save_crop
from swinface.video.tracker import Tracker, TrackerConfig

log = logging.getLogger(__name__)

# Analysed frames whose faces share one model batch (bounded so memory stays small on 4K video).
FRAMES_PER_BATCH = 16
# Mean absolute difference (0..1) of small grey thumbnails above which two analysed frames
# are taken as different scenes.
SCENE_CUT_THRESHOLD = 0.2


@dataclass
class TrackedFace:
    """A face of one frame, with its track and the track's running (smoothed) answers."""

    face: Face
    track_id: int
    quality: float
    track_age: float  # median age of the track's recent frames
    track_expression: str  # the track's recent expression

    def to_dict(self, include_embedding: bool = False) -> dict:
        return {
            "track_id": self.track_id,
            **self.face.to_dict(include_embedding),
            "quality": round(self.quality, 4),
            "track_age": round(self.track_age, 2),
            "track_expression": self.track_expression,
        }


@dataclass
class FrameResult:
    """One analysed frame: its number and time in the source, and its tracked faces."""

    source: str
    index: int
    time: float
    width: int
    height: int
    faces: list[TrackedFace] = field(default_factory=list)

    def to_dict(self, include_embedding: bool = False) -> dict:
        return {
            "type": "frame",
            "source": self.source,
            "frame": self.index,
            "time": round(self.time, 3),
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict(include_embedding) for f in self.faces],
        }


@dataclass
class VideoSummary:
    """The end of a video or a watch: counts, and the error that stopped it, if any."""

    source: str
    frames_read: int = 0
    frames_analysed: int = 0
    tracks: int = 0
    frames_dropped: int = 0  # live only: frames skipped to keep up
    reconnects: int = 0
    problems: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "type": "video",
            "source": self.source,
            "frames_read": self.frames_read,
            "frames_analysed": self.frames_analysed,
            "tracks": self.tracks,
        }
        if self.frames_dropped or self.reconnects:
            d.update(frames_dropped=self.frames_dropped, reconnects=self.reconnects)
        if self.error is not None:
            d["error"] = self.error
        return d


Event = FrameResult | TrackResult | VideoSummary


@dataclass
class _Pending:
    frame: Frame
    detections: list
    crops: list[np.ndarray]


def _thumbnail(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


class VideoSession:
    """Tracks and per-track answers for one source, fed frames in order."""

    def __init__(
        self,
        analyzer,
        source: str,
        *,
        tracker: TrackerConfig | None = None,
        known: KnownFaces | None = None,
        crops: str | Path | None = None,
        annotate: AnnotatedWriter | None = None,
        scene_cut: float | None = SCENE_CUT_THRESHOLD,
    ) -> None:
        if getattr(analyzer, "aligned", False) or analyzer.detector is None:
            raise VideoError(f"{source}: video analysis needs face detection (not aligned mode)")
        self.analyzer, self.source = analyzer, source
        self.tracker = Tracker(tracker)
        self.known = known
        self.crops = Path(crops) if crops is not None else None
        if self.crops is not None:
            self.crops.mkdir(parents=True, exist_ok=True)
        self.annotate = annotate
        self.scene_cut = scene_cut
        self.tracks: dict[int, TrackAccumulator] = {}
        self.summary = VideoSummary(source)
        self._pending: list[_Pending] = []
        self._pending_faces = 0
        self._thumb: np.ndarray | None = None
        self._last_drawn: list[tuple[int, tuple, str]] = []

    def add(self, frame: Frame) -> list[Event]:
        """Take one frame (analysed or not); returns the events of any batch it completes."""
        from swinface.vision import align_face

        self.summary.frames_read = max(self.summary.frames_read, frame.index + 1)
        if frame.analyse and frame.image is not None:
            detections = self.analyzer.detector.detect(frame.image)
            crops = [align_face(frame.image, d.landmarks) for d in detections]
            self._pending.append(_Pending(frame, detections, crops))
            self._pending_faces += len(crops)
            self.summary.frames_analysed += 1
        elif self.annotate is not None and frame.image is not None:
            self._pending.append(_Pending(frame, [], []))
        analysed = sum(p.frame.analyse for p in self._pending)
        if self._pending_faces >= self.analyzer.runner.batch_size or analysed >= FRAMES_PER_BATCH:
            return self.flush()
        return []

    def flush(self) -> list[Event]:
        """Analyse the waiting faces and track them, frame by frame in order."""
        pending, self._pending, self._pending_faces = self._pending, [], 0
        crops = [c for p in pending for c in p.crops]
        analyses = self.analyzer.runner.analyze(np.stack(crops)).faces if crops else []
        events: list[Event] = []
        k = 0
        for p in pending:
            if not p.frame.analyse:
                self._draw(p.frame.image, self._last_drawn)
                continue
            n = len(p.detections)
            events += self._track(p, analyses[k : k + n])
            k += n
        return events

    def _is_cut(self, image: np.ndarray) -> bool:
        if self.scene_cut is None:
            return False
        thumb = _thumbnail(image)
        previous, self._thumb = self._thumb, thumb
        return previous is not None and float(np.abs(thumb - previous).mean()) > self.scene_cut

    def _track(self, p: _Pending, analyses) -> list[Event]:
        frame = p.frame
        faces = [
            Face(tuple(float(v) for v in d.box), d.landmarks, float(d.score), a)
            for d, a in zip(p.detections, analyses, strict=True)
        ]
        boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        embeddings = np.array([f.analysis.embedding for f in faces], np.float32)
        update = self.tracker.update(frame.time, boxes, embeddings, cut=self._is_cut(frame.image))
        h, w = frame.image.shape[:2]
        result = FrameResult(self.source, frame.index, frame.time, w, h)
        for face, tid in zip(faces, update.ids, strict=True):
            quality = face_quality(face.box, face.landmarks, face.detection_score)
            acc = self.tracks.setdefault(tid, TrackAccumulator(tid))
            acc.add(frame.index, frame.time, face.analysis, face.box, quality, frame.image)
            age, expression = acc.smoothed()
            result.faces.append(TrackedFace(face, tid, quality, age, expression))
        self._last_drawn = [
            (
                f.track_id,
                f.face.box,
                f"{f.face.analysis.gender[0].upper()} {f.track_age:.0f} {f.track_expression}",
            )
            for f in result.faces
        ]
        self._draw(frame.image, self._last_drawn)
        return [result, *self._close(update.closed, update.dropped)]

    def _draw(self, image: np.ndarray | None, boxes) -> None:
        if self.annotate is not None and image is not None:
            self.annotate.write(draw_tracks(image, boxes))

    def _close(self, closed, dropped) -> list[TrackResult]:
        for track in dropped:
            self.tracks.pop(track.id, None)
        results = []
        for track in closed:
            acc = self.tracks.pop(track.id, None)
            if acc is None:
                continue
            result = acc.finish(self.source)
            if self.known is not None:
                result.known_checked = True
                result.identity = self.known.identify(result.embedding)
            if self.crops is not None:
                save_crop(result, self.crops)
            result.best_crop = result.best_crop if self.crops is None else None  # written: free it
            results.append(result)
            self.summary.tracks += 1
        return results

    def finish(self) -> list[Event]:
        """Analyse what is waiting and close every open track."""
        events = self.flush()
        update = self.tracker.close_all()
        return events + self._close(update.closed, update.dropped)


def analyze_video(
    analyzer,
    source: str | Path,
    *,
    every: int = 1,
    fps: float | None = None,
    tracker: TrackerConfig | None = None,
    known: KnownFaces | None = None,
    crops: str | Path | None = None,
    annotate: str | Path | None = None,
    scene_cut: float | None = SCENE_CUT_THRESHOLD,
) -> Iterator[Event]:
    """Analyse a video file: yields a `FrameResult` per analysed frame and a `TrackResult` per
    person as their track closes, in time order, then one `VideoSummary`.

    Reading problems never raise: a file that cannot be opened gives only the
    summary, with its `error`; a damaged file gives everything found before the
    damage, every open track closed, and a summary whose error names the frame.
    """
    name = str(source)
    try:
        video = VideoFile(source, every=every, fps=fps, decode_all=annotate is not None)
    except VideoError as err:
        yield VideoSummary(name, error=str(err))
        return
    try:
        session = VideoSession(
            analyzer, name, tracker=tracker, known=known, crops=crops, scene_cut=scene_cut
        )
    except BaseException:
        video.close()
        raise
    writer = None
    if annotate is not None:
        writer = AnnotatedWriter(annotate, video.fps or 25.0, (video.width, video.height))
        session.annotate = writer
    ok = False
    try:
        for frame in video:
            yield from session.add(frame)
        yield from session.finish()
        ok = True
    finally:
        if writer is not None:
            writer.close(ok=ok)
        video.close()
    session.summary.frames_read = video.frames_read
    session.summary.error = video.error
    yield session.summary


def watch(
    analyzer,
    source: str | int,
    *,
    tracker: TrackerConfig | None = None,
    known: KnownFaces | None = None,
    crops: str | Path | None = None,
    stop: threading.Event | None = None,
    reconnect: int = 5,
    reconnect_delay: float = 1.0,
    realtime: bool | None = None,
    open: Callable[[str | int], Any] | None = None,
) -> Iterator[Event]:
    """Analyse a live source, always the newest frame (older ones are dropped and counted).

    Yields `FrameResult`s and `TrackResult`s as tracks close; when the source
    ends, fails for good, or `stop` is set, every open track is closed and
    yielded, then a `VideoSummary` with the dropped frames and reconnections.
    """
    options = {} if open is None else {"open": open}
    try:
        live = LiveSource(
            source,
            reconnect=reconnect,
            reconnect_delay=reconnect_delay,
            realtime=realtime,
            **options,
        )
    except VideoError as err:
        yield VideoSummary(str(source), error=str(err))
        return
    session = VideoSession(analyzer, live.name, tracker=tracker, known=known, crops=crops)
    stop = stop or threading.Event()
    try:
        for frame in live.frames(until=stop):
            events = session.add(frame)
            events += session.flush()  # one frame at a time: latency over batching
            yield from events
            if stop.is_set():
                break
    finally:
        live.stop()
    yield from session.finish()
    s = session.summary
    s.frames_read = live.stats.frames_read
    s.frames_dropped = live.stats.frames_read - live.stats.frames_delivered
    s.reconnects = live.stats.reconnects
    s.problems = list(live.stats.problems or [])
    s.error = live.error
    yield s
