"""What the command line's photo arguments name: files, folders, glob patterns or `-` (stdin).

Everything here is checked before any model is loaded, so a wrong path is
reported at once. Folders and glob patterns are filtered the same way (image
suffixes only, `IMAGE_SUFFIXES`); a file named on its own is taken as given.
Symbolic link loops are reported as such, and a folder reached twice through
links is walked once.
"""

from __future__ import annotations

import errno
import glob
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from swinface.data.formats.base import IMAGE_SUFFIXES
from swinface.errors import SwinFaceError
from swinface.video.formats import VIDEO_SUFFIXES

__all__ = ["Inputs", "Photo", "annotation_targets", "expand_inputs"]

STDIN = "-"
# Encoded images start with one of these; anything else on stdin is read as a list of paths.
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG",
    b"GIF8",
    b"BM",
    b"RIFF",  # WebP
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"P5",
    b"P6",
)
# Suffixes OpenCV writes in colour; other photos are annotated as `<name>.png`.
_WRITABLE = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})


class InputError(SwinFaceError, ValueError):
    """Photo arguments or an output folder that cannot be used."""


@dataclass(frozen=True)
class Photo:
    """One photo to analyse: what to call it, and its path (or its bytes, from stdin)."""

    name: str
    source: str | bytes

    @property
    def path(self) -> str | None:
        return self.source if isinstance(self.source, str) else None


@dataclass
class Inputs:
    """Photos found in the arguments, and the arguments (or files) that could not be used."""

    photos: list[Photo] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (argument or file, why)
    folders: list[Path] = field(default_factory=list)  # folders searched (to keep outputs out)


def _stat_problem(path: str) -> str | None:
    """Why `path` cannot be opened, or None."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if os.path.islink(path):
            return f"broken symbolic link (to {os.readlink(path)})"
        if err.errno == errno.EACCES:
            return "permission denied"
        if err.errno == errno.ENOENT:
            return "no such file or folder"
        return err.strerror or str(err)
    return None


def _is_image_name(name: str) -> bool:
    """Photos and videos: what `analyze` takes from folders and patterns."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES


def _glob(pattern: str) -> list[str]:
    """Files matching `pattern`, sorted; `**` spans folders but follows no links (no loops).

    `glob.glob` follows links to folders under `**`, so a link to a parent
    folder sends it round until the path is too long; pathlib's `**` does not.
    Hidden files and folders match only when the pattern names them, as in a shell.
    """
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    base = Path(*parts[:first]) if first else Path()
    rest = Path(*parts[first:])
    hidden_ok = any(part.startswith(".") for part in rest.parts)
    found = []
    try:
        for match in base.glob(str(rest)):
            inner = match.parts[len(base.parts) :]
            if not hidden_ok and any(part.startswith(".") for part in inner):
                continue
            if match.is_file():
                found.append(str(match))
    except OSError:
        return found
    return sorted(found)


def _add(path: str, found: Inputs, seen: set[str]) -> None:
    """Add a photo once: the same file reached twice (a pattern and its folder) is read once."""
    real = os.path.realpath(path)
    if real not in seen:
        seen.add(real)
        found.photos.append(Photo(path, path))


def _walk(folder: str, found: Inputs, seen: set[str]) -> None:
    """Images under `folder`, sorted, following links; a link back up the tree is a loop."""
    found.folders.append(Path(folder))

    def onerror(err: OSError) -> None:
        found.problems.append((err.filename or folder, err.strerror or str(err)))

    for top, dirs, files in os.walk(folder, onerror=onerror, followlinks=True):
        here = os.path.realpath(top)
        dirs.sort()
        keep = []
        for d in dirs:
            path = os.path.join(top, d)
            real = os.path.realpath(path)
            if here == real or here.startswith(real + os.sep):
                found.problems.append((path, f"symbolic link loop (leads back to {real})"))
            else:
                keep.append(d)
        dirs[:] = keep
        for name in sorted(files):
            if not _is_image_name(name):
                continue
            path = os.path.join(top, name)
            problem = _stat_problem(path)
            if problem:
                found.problems.append((path, problem))
            else:
                _add(path, found, seen)


def _read_stdin(stream: IO[bytes], found: Inputs, seen: set[str]) -> None:
    data = stream.read()
    if data.startswith(_IMAGE_MAGIC):
        found.photos.append(Photo("<stdin>", data))
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        found.photos.append(Photo("<stdin>", data))  # binary: let the decoder say what it is
        return
    lines = [line.strip() for line in text.splitlines()]
    _expand([line for line in lines if line and line != STDIN], found, seen, None)


def _expand(items: Iterable[str], found: Inputs, seen: set[str], stdin: IO[bytes] | None) -> None:
    for item in items:
        if item == STDIN:
            if stdin is None:
                found.problems.append((item, "stdin can be named only once"))
                continue
            _read_stdin(stdin, found, seen)
            stdin = None
            continue
        problem = _stat_problem(item)
        if problem == "no such file or folder" and glob.has_magic(item):
            matches = [m for m in _glob(item) if _is_image_name(m)]  # the folders' filter
            if not matches:
                found.problems.append((item, "no image file matches this pattern"))
            for match in matches:
                _add(match, found, seen)
        elif problem:
            found.problems.append((item, problem))
        elif os.path.isdir(item):
            _walk(item, found, seen)
        else:
            _add(item, found, seen)  # named on its own: taken as given, whatever its suffix


def expand_inputs(items: Sequence[str], stdin: IO[bytes] | None = None) -> Inputs:
    """The photos `items` name, in order, and the problems found, before anything is decoded.

    `-` reads stdin (`stdin`, default `sys.stdin.buffer`): an encoded image is
    one photo; text is a list of paths, one a line, each expanded like an argument.
    """
    found = Inputs()
    if STDIN in items and stdin is None:
        stdin = sys.stdin.buffer
    _expand(items, found, set(), stdin)
    found.problems = list(dict.fromkeys(found.problems))  # a loop met twice is said once
    return found


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def annotation_targets(inputs: Inputs, out: str | Path) -> list[Path]:
    """Where the annotated copy of each photo goes under `out`, one distinct path per photo.

    Photos keep their folders relative to the folder all of them share, and
    their file names (`.png` is added where OpenCV cannot write the format).
    Raises InputError when `out` is a file, lies inside a folder being read
    (the next run would read the annotated copies as photos), or a target is
    one of the photos themselves.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--annotate {out}: is a file; give a folder (created when missing)")
    out_real = Path(os.path.realpath(out))
    for folder in inputs.folders:
        if _inside(out_real, Path(os.path.realpath(folder))):
            raise InputError(
                f"--annotate {out}: inside the input folder {folder}; the annotated copies "
                "would be read as photos next time. Choose a folder outside it"
            )
    paths = [Path(os.path.abspath(p.path)) for p in inputs.photos if p.path is not None]
    root = Path(os.path.commonpath([p.parent for p in paths])) if paths else None
    sources = {os.path.realpath(p) for p in paths}
    taken: set[str] = set()
    targets = []
    for photo in inputs.photos:
        if photo.path is None:
            rel = Path("stdin.png")
        else:
            assert root is not None
            rel = Path(os.path.abspath(photo.path)).relative_to(root)
            if rel.suffix.lower() not in _WRITABLE:
                rel = rel.with_name(rel.name + ".png")
        target = out / rel
        n = 1
        while str(target).casefold() in taken:  # the same photo twice, or case-only differences
            n += 1
            target = out / rel.with_name(f"{rel.stem}-{n}{rel.suffix}")
        taken.add(str(target).casefold())
        if os.path.realpath(target) in sources:
            raise InputError(
                f"--annotate {out}: would overwrite the photo {target}; choose another folder"
            )
        targets.append(target)
    return targets
