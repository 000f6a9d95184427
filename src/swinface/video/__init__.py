"""Faces in video files and live streams: tracked, and answered once per person.

    from swinface.pipeline import FaceAnalyzer
    from swinface.video import TrackResult

    analyzer = FaceAnalyzer()
    for event in analyzer.analyze_video("interview.mp4", fps=5):
        if isinstance(event, TrackResult):
            print(event.track_id, event.age, event.expression_share)

The tracker (`swinface.video.tracker`) is a separate state machine that knows
nothing of decoding or models; `source` reads frames, `summary` combines a
track's frames into one answer, `annotate` writes the annotated video.
Importing this package is light: the modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "FrameResult": "swinface.video.analyze",
    "TrackedFace": "swinface.video.analyze",
    "VideoSession": "swinface.video.analyze",
    "VideoSummary": "swinface.video.analyze",
    "analyze_video": "swinface.video.analyze",
    "watch": "swinface.video.analyze",
    "KnownFaces": "swinface.video.known",
    "VIDEO_SUFFIXES": "swinface.video.source",
    "Frame": "swinface.video.source",
    "LiveSource": "swinface.video.source",
    "VideoError": "swinface.video.source",
    "VideoFile": "swinface.video.source",
    "is_video_path": "swinface.video.source",
    "Identity": "swinface.video.summary",
    "TrackResult": "swinface.video.summary",
    "Tracker": "swinface.video.tracker",
    "TrackerConfig": "swinface.video.tracker",
}

if TYPE_CHECKING:
    from swinface.video.analyze import (
        FrameResult,
        TrackedFace,
        VideoSession,
        VideoSummary,
        analyze_video,
        watch,
    )
    from swinface.video.known import KnownFaces
    from swinface.video.source import (
        VIDEO_SUFFIXES,
        Frame,
        LiveSource,
        VideoError,
        VideoFile,
        is_video_path,
    )
    from swinface.video.summary import Identity, TrackResult
    from swinface.video.tracker import Tracker, TrackerConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'swinface.video' has no attribute {name!r}")


__all__ = [
    "Frame",
    "FrameResult",
    "Identity",
    "KnownFaces",
    "LiveSource",
    "TrackResult",
    "TrackedFace",
    "Tracker",
    "TrackerConfig",
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoFile",
    "VideoSession",
    "VideoSummary",
    "analyze_video",
    "is_video_path",
    "watch",
]
