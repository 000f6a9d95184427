"""Which files are videos, by name: light to import (no OpenCV), for the CLI's input routing."""

from __future__ import annotations

from pathlib import Path

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
)
"""File name endings taken as video (any file FFmpeg opens can be passed to the library)."""


def is_video_path(path: str | Path) -> bool:
    """True for names ending in a video suffix (case-insensitive)."""
    return Path(str(path)).suffix.lower() in VIDEO_SUFFIXES
