"""Frames out of video files, cameras and streams, with their timestamps.

`VideoFile` reads a file from start to end and chooses which frames are
analysed (`every` N-th frame, or `fps` frames per second of video time);
skipped frames are only demuxed and decoded, never converted. `LiveSource`
reads a camera, a stream URL or a file played at its own rate on a thread and
always hands out the newest frame, counting the ones it had to drop; a stream
that breaks is reopened a bounded number of times.

OpenCV (FFmpeg underneath) does the decoding. Problems raise or report a
`VideoError` naming the source and, for damaged files, the frame.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swinface.errors import SwinFaceError
from swinface.video.formats import VIDEO_SUFFIXES, is_video_path

log = logging.getLogger(__name__)

__all__ = [
    "VIDEO_SUFFIXES",
    "Frame",
    "FrameSampler",
    "LiveSource",
    "VideoError",
    "VideoFile",
    "is_video_path",
]


class VideoError(SwinFaceError, ValueError):
    """A video or stream that cannot be opened or read; the message names it and the problem."""


@dataclass
class Frame:
    """One decoded frame: its number in the source, its time in seconds, RGB pixels."""

    index: int
    time: float
    image: np.ndarray | None  # (H, W, 3) uint8 RGB; None for a skipped frame not decoded
    analyse: bool = True


class FrameSampler:
    """Which frames to analyse: every `every`-th frame, or `fps` frames per second of video."""

    def __init__(self, every: int = 1, fps: float | None = None) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, not {every}")
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, not {fps}")
        self.every, self.fps = every, fps
        self._last_slot = -1

    def __call__(self, index: int, t: float) -> bool:
        if self.fps is None:
            return index % self.every == 0
        slot = math.floor(t * self.fps + 1e-6)  # the 1/fps-second slot this frame falls in
        if slot > self._last_slot:
            self._last_slot = slot
            return True
        return False


# How long opening or reading a network stream may block before it counts as dropped.
STREAM_TIMEOUT_MS = 10_000


def _open_capture(source: str | int) -> Any:
    if isinstance(source, int):
        return cv2.VideoCapture(source)
    if "://" in source:  # a stream: bounded waits, so a dead connection is noticed
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, timeouts)
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes), not a video")


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class VideoFile:
    """A video file read once from start to end.

    Iterating yields every frame (`decode_all=True`, e.g. to write an annotated
    copy) or only the analysed ones. After iteration `frames_read` says how many
    frames were decoded and `error` why reading stopped early, if it did: a file
    whose container announces more frames than could be decoded is truncated or
    corrupt, and the error names the first frame that could not be read.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        every: int = 1,
        fps: float | None = None,
        decode_all: bool = False,
    ) -> None:
        self.path = Path(path)
        self.sampler = FrameSampler(every, fps)
        self.decode_all = decode_all
        _check_file(self.path)
        self._cap = _open_capture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoError(f"{self.path}: not a readable video (unrecognised format or damaged)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (math.isfinite(self.fps) and 0 < self.fps < 1000):
            self.fps = 0.0  # unknown: times come from the stream only
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and count > 0 else None
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frames_read = 0
        self.error: str | None = None

    def _time(self, index: int) -> float:
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if msec and msec > 0 and math.isfinite(msec):
            return msec / 1000.0
        return index / self.fps if self.fps else float(index)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        try:
            while self._cap.grab():
                t = self._time(index)
                analyse = self.sampler(index, t)
                image = None
                if analyse or self.decode_all:
                    ok, bgr = self._cap.retrieve()
                    if not ok or bgr is None:
                        break
                    image = _to_rgb(bgr)
                self.frames_read = index + 1
                yield Frame(index, t, image, analyse)
                index += 1
        finally:
            self._cap.release()
        self._check_complete()

    def _check_complete(self) -> None:
        # Containers estimate their length from the duration; a few frames of slack
        # keeps an honest file from being called damaged.
        expected = self.frame_count
        if expected and self.frames_read < expected - max(2, expected // 100):
            self.error = (
                f"{self.path}: decoding stopped at frame {self.frames_read} of {expected}: "
                "the video is truncated or corrupt"
            )

    def close(self) -> None:
        self._cap.release()


def parse_source(source: str | int) -> str | int:
    """A camera index ('0') as an int; anything else (a URL, a path) as given."""
    if isinstance(source, int):
        return source
    return int(source) if source.strip().isdigit() else source


@dataclass
class LiveStats:
    """What a live source went through: frames read, handed out, dropped; reconnections."""

    frames_read: int = 0
    frames_delivered: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    problems: list[str] | None = None


class LiveSource:
    """The newest frame of a camera, a stream or a file played at its own rate.

    A thread reads frames as fast as the source gives them; `frames()` yields
    the newest one whenever the consumer is ready, and every frame overwritten
    before it was taken counts as dropped. When a camera or stream stops
    delivering, it is reopened up to `reconnect` times, `reconnect_delay`
    seconds apart (doubling); a file ends at its end. `open` makes the
    capture object (OpenCV's by default; tests pass their own).
    """

    def __init__(
        self,
        source: str | int,
        *,
        reconnect: int = 5,
        reconnect_delay: float = 1.0,
        realtime: bool | None = None,
        open: Callable[[str | int], Any] = _open_capture,
    ) -> None:
        self.source = parse_source(source)
        self.name = str(self.source) if not isinstance(self.source, int) else f"camera {source}"
        is_file = not isinstance(self.source, int) and Path(str(self.source)).is_file()
        self.is_file = is_file
        self.realtime = is_file if realtime is None else realtime
        self.reconnect, self.reconnect_delay = reconnect, reconnect_delay
        self._open = open
        self.stats = LiveStats(problems=[])
        self.error: str | None = None
        self._latest: Frame | None = None
        self._taken = True
        self._done = False
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.fps = 0.0
        cap = self._open(self.source)
        if not cap.isOpened():
            cap.release()
            raise VideoError(f"{self.name}: cannot open the video source")
        self._cap = cap
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def _problem(self, message: str) -> None:
        log.warning("%s", message)
        self.stats.problems.append(message)

    def _reopen(self) -> bool:
        delay = self.reconnect_delay
        for attempt in range(1, self.reconnect + 1):
            if self._stop.wait(delay):
                return False
            cap = self._open(self.source)
            if cap.isOpened():
                self._cap = cap
                self.stats.reconnects += 1
                self._problem(f"{self.name}: reconnected (attempt {attempt})")
                return True
            cap.release()
            delay *= 2
        self.error = (
            f"{self.name}: the stream dropped and {self.reconnect} reconnection attempt(s) failed"
        )
        self._problem(self.error)
        return False

    def _finished(self, frames: int) -> bool:
        """A finite remote file (one that announces its length) read to its end: not a drop."""
        expected = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        return bool(expected and expected > 0 and frames >= expected - max(2, expected // 100))

    def _read_loop(self) -> None:
        start = time.monotonic()
        index, offset = 0, 0.0  # offset: stream time already elapsed before a reconnection
        last_t = 0.0
        in_connection = 0  # frames read since the source was (re)opened
        try:
            while not self._stop.is_set():
                ok, bgr = self._cap.read()
                if not ok or bgr is None:
                    finished = self.is_file or self._finished(in_connection)
                    self._cap.release()
                    if finished:
                        break
                    self._problem(f"{self.name}: the stream dropped after frame {index}")
                    offset = last_t
                    if not self._reopen():
                        break
                    in_connection = 0
                    continue
                in_connection += 1
                msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                if self.is_file and msec and msec > 0:
                    t = msec / 1000.0
                else:
                    t = time.monotonic() - start
                t = max(t, offset) if not self.is_file else t
                last_t = t
                if self.realtime:  # play the file at its own rate
                    wait = start + t - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                frame = Frame(index, t, _to_rgb(bgr))
                index += 1
                with self._cond:
                    self.stats.frames_read += 1
                    if not self._taken:
                        self.stats.frames_dropped += 1
                    self._latest, self._taken = frame, False
                    self._cond.notify_all()
        finally:
            self._cap.release()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def frames(self, until: threading.Event | None = None) -> Iterator[Frame]:
        """The newest frames, as fast as the caller takes them, until the source ends, `stop()`
        is called or `until` is set (checked while waiting, so a stalled stream stops too)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._read_loop, name="swinface-live", daemon=True
            )
            self._thread.start()

        def stopping() -> bool:
            return self._stop.is_set() or (until is not None and until.is_set())

        while True:
            with self._cond:
                while self._taken and not self._done and not stopping():
                    self._cond.wait(0.1)
                if stopping() or (self._taken and self._done):
                    return
                frame, self._taken = self._latest, True
                self.stats.frames_delivered += 1
            yield frame

    def stop(self) -> None:
        """Stop reading; waits for the reading thread to finish."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
