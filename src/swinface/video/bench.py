"""`swinface bench-video`: video frames per second end to end, and which settings keep up live.

Each case writes a short video (the bundled sample face, 1 or 5 times,
drifting across a textured background) at 720p or 1080p, then times
`analyze_video` over it: decoding, detection, alignment, SwinFace, tracking
and per-track answers, the whole of what `swinface analyze` does. A setting
keeps up with a live source when it consumes video frames at least as fast as
the source's frame rate.

Wall-clock frames/s depend on what else runs on the machine; frames per CPU
second (this process's CPU time, all threads) do not, and are a floor for an
idle machine: one idle core does at least that, two do more.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

RESOLUTIONS = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


@dataclass
class VideoBenchRow:
    """One case: what was analysed, and how fast."""

    resolution: str
    faces: int
    setting: str  # "every 1", "fps 5"
    frames: int  # video frames read
    analysed: int  # frames analysed
    seconds: float
    faces_found: int  # faces over all analysed frames (5 faces x frames when all are found)
    cpu_seconds: float = 0.0  # CPU time of this process, all threads

    @property
    def frames_per_cpu_second(self) -> float:
        """Frames per CPU second: what one idle core would do, whatever else shares the machine."""
        return self.frames / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds

    def keeps_up(self, live_fps: float) -> bool:
        return self.frames_per_second >= live_fps


def make_video(path: Path, size: tuple[int, int], faces: int, frames: int, fps: float) -> Path:
    """A video of `faces` copies of the sample face, each drifting slowly."""
    from swinface.assets import SAMPLE_PHOTO
    from swinface.vision import load_image

    w, h = size
    tile = max(64, h // 5)  # a face about a fifth of the frame high: a typical interview or room
    face = cv2.resize(load_image(SAMPLE_PHOTO)[30:270, 105:345], (tile, tile))
    rng = np.random.default_rng(0)
    back = cv2.resize(rng.integers(40, 220, (9, 16, 3)).astype(np.uint8), (w, h))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    slots = [(int((k + 0.5) * w / faces - tile / 2), h // 3) for k in range(faces)]
    for i in range(frames):
        canvas = back.copy()
        for k, (x, y) in enumerate(slots):
            dx = int(20 * np.sin(i / 10 + k))
            dy = int(10 * np.cos(i / 13 + k))
            x0, y0 = min(max(x + dx, 0), w - tile), min(max(y + dy, 0), h - tile)
            canvas[y0 : y0 + tile, x0 : x0 + tile] = face
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _parse_setting(setting: str) -> dict:
    kind, _, value = setting.partition("=")
    if kind == "every":
        return {"every": int(value)}
    if kind == "fps":
        return {"fps": float(value)}
    raise ValueError(f"setting {setting!r}: expected every=N or fps=F")


def bench_case(analyzer, video: Path, setting: str) -> tuple[int, int, float, int, float]:
    """(frames read, frames analysed, seconds, faces found, CPU seconds) for one pass."""
    from swinface.video.analyze import FrameResult, VideoSummary, analyze_video

    start, cpu = time.perf_counter(), time.process_time()
    found = 0
    summary = None
    for event in analyze_video(analyzer, video, **_parse_setting(setting)):
        if isinstance(event, FrameResult):
            found += len(event.faces)
        elif isinstance(event, VideoSummary):
            summary = event
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return summary.frames_read, summary.frames_analysed, seconds, found, cpu


def bench_video(
    analyzer,
    *,
    resolutions: Sequence[str] = ("720p", "1080p"),
    faces: Sequence[int] = (1, 5),
    settings: Sequence[str] = ("every=1", "fps=5", "fps=2", "fps=1"),
    seconds: float = 2.0,
    fps: float = 25.0,
    workdir: str | Path | None = None,
    progress: bool = False,
) -> list[VideoBenchRow]:
    """Time every combination; videos are `seconds` long at `fps`, in a temporary folder.

    `progress` prints each row as it is measured.
    """
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        warm = make_video(Path(tmp) / "warm.mp4", (320, 240), 1, 4, fps)
        bench_case(analyzer, warm, "every=1")  # first-call costs (sessions, graphs) out of the way
        for res in resolutions:
            for n in faces:
                video = make_video(
                    Path(tmp) / f"{res}-{n}.mp4", RESOLUTIONS[res], n, round(seconds * fps), fps
                )
                for setting in settings:
                    frames, analysed, secs, found, cpu = bench_case(analyzer, video, setting)
                    row = VideoBenchRow(
                        res, n, setting.replace("=", " "), frames, analysed, secs, found, cpu
                    )
                    rows.append(row)
                    if progress:
                        print(format_row(row, fps), flush=True)
    return rows


HEADER = (
    f"{'video':<6} {'faces':>5} {'setting':<9} {'frames':>6} {'analysed':>8} "
    f"{'found':>5} {'seconds':>7} {'frames/s':>8} {'CPU s':>6} {'frames/CPU-s':>12}  live"
)


def format_row(r: VideoBenchRow, live_fps: float) -> str:
    live = f"keeps up with {live_fps:g} fps" if r.keeps_up(live_fps) else "falls behind"
    return (
        f"{r.resolution:<6} {r.faces:>5} {r.setting:<9} {r.frames:>6} {r.analysed:>8} "
        f"{r.faces_found:>5} {r.seconds:>7.1f} {r.frames_per_second:>8.1f} "
        f"{r.cpu_seconds:>6.1f} {r.frames_per_cpu_second:>12.1f}  {live}"
    )
