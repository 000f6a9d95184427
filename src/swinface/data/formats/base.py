"""What every dataset reader shares: the `Dataset` it returns, errors, and the format registry."""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from swinface.data.samples import LabelError, Pair, Sample
from swinface.errors import SwinFaceError

log = logging.getLogger("swinface.data")

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)


class DatasetError(SwinFaceError, ValueError):
    """A dataset file that cannot be read as its format: names the file, the line and why."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass
class Dataset:
    """What a reader found: labelled samples or verification pairs, and what it left out."""

    name: str  # the format name
    path: Path
    samples: list[Sample] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)  # verification formats
    skipped: list[LabelError] = field(default_factory=list)  # malformed lines (lenient mode)
    tasks: tuple[str, ...] = ()  # labels it carries: identity, age, gender, expression, ...
    excluded: Counter[str] = field(default_factory=Counter)  # left out by design, by reason

    def __len__(self) -> int:
        return len(self.samples) + len(self.pairs)

    @property
    def splits(self) -> list[str]:
        """The dataset's own split names, in order of first appearance."""
        return list(dict.fromkeys(s.split for s in self.samples if s.split is not None))


class Reader(Protocol):
    def __call__(self, path: Path, *, strict: bool = True, split: str | None = None) -> Dataset: ...


FORMATS: dict[str, Reader] = {}


def register(name: str) -> Callable[[Reader], Reader]:
    """Add a reader to `FORMATS` under `name`."""

    def add(reader: Reader) -> Reader:
        FORMATS[name] = reader
        return reader

    return add


class Issues:
    """Malformed lines: raised at once in strict mode, collected in lenient mode."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.skipped: list[LabelError] = []

    def report(self, source: str, problem: str) -> None:
        if self.strict:
            raise DatasetError(source, problem)
        self.skipped.append(LabelError(source, problem))

    def summarise(self, name: str) -> None:
        if self.skipped:
            log.warning(
                "%s: skipped %d malformed line(s), first: %s",
                name,
                len(self.skipped),
                self.skipped[0],
            )


class Line(Exception):
    """Raised inside a reader's per-line parse to report that line and move on."""


class ImageIndex:
    """Does an image exist? Lists each folder once instead of one stat per image."""

    def __init__(self) -> None:
        self._folders: dict[Path, frozenset[str]] = {}

    def exists(self, path: Path) -> bool:
        folder = path.parent
        names = self._folders.get(folder)
        if names is None:
            try:
                names = frozenset(os.listdir(folder))
            except OSError:
                names = frozenset()
            self._folders[folder] = names
        return path.name in names


def images_in(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    with os.scandir(folder) as entries:
        found = [
            Path(e.path)
            for e in entries
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
        ]
    return sorted(found)


def subfolders(folder: Path) -> list[Path]:
    """The folders directly in `folder`, sorted by name, hidden ones left out."""
    with os.scandir(folder) as entries:
        found = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    return sorted(found)


def text_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of a text label file, blank lines left out."""
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if fields:
                yield number, fields


def read_csv(path: Path, delimiter: str = ",") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV file with a header: (header names, [(line number, cells)]), blank rows left out."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise DatasetError(f"{path}:1", "empty file, expected a header line")
        rows = [
            (reader.line_num, [c.strip() for c in row])
            for row in reader
            if any(c.strip() for c in row)
        ]
    return header, rows


def row_dict(header: list[str], cells: list[str]) -> dict[str, str]:
    """One CSV row by column name; a short row raises `Line`."""
    if len(cells) < len(header):
        raise Line(f"expected {len(header)} columns ({','.join(header)}), got {len(cells)}")
    return dict(zip(header, cells, strict=False))


def parse_int(text: str, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer label, in [lo, hi] when given; raises `Line` with a message otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise Line(f"{what} {text!r} is not an integer") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise Line(f"{what} {value} is outside {lo}..{hi}")
    return value


def parse_float(text: str, what: str) -> float:
    """A finite non-negative number (ages, their spread); raises `Line` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise Line(f"{what} {text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise Line(f"{what} {value} is not a finite non-negative number")
    return value


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file, else a `DatasetError` saying which file is missing."""
    if not path.is_file():
        raise DatasetError(str(path), f"{what} not found")
    return path


def require_folder(path: Path, what: str) -> Path:
    """`path` if it is a folder, else a `DatasetError` saying which folder is missing."""
    if not path.is_dir():
        raise DatasetError(str(path), f"{what} not found")
    return path
