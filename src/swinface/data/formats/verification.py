"""Verification pair formats: InsightFace `.bin`, LFW's `pairs.txt`, and a plain pair CSV."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swinface.data.formats.base import (
    Dataset,
    DatasetError,
    ImageIndex,
    Issues,
    Line,
    parse_int,
    read_csv,
    register,
    require_file,
    row_dict,
    text_lines,
)
from swinface.data.formats.safe_pickle import (
    RestrictedUnpickler,
    UnsafePickleError,
    load_restricted_pickle,
)
from swinface.data.samples import Pair

__all__ = [
    "RestrictedUnpickler",
    "UnsafePickleError",
    "load_restricted_pickle",
    "read_insightface_bin",
    "read_lfw_pairs",
    "read_pairs_csv",
    "write_insightface_bin",
]

# ------------------------------------------------------------------ insightface .bin


class _ImageBytes:
    """Encoded images as bytes, converted once per object: a pickle may list one object often."""

    def __init__(self) -> None:
        self._done: dict[int, bytes | None] = {}

    def __call__(self, item: Any) -> bytes | None:
        if isinstance(item, bytes):
            return item
        key = id(item)
        if key not in self._done:
            if isinstance(item, bytearray):
                self._done[key] = bytes(item)
            elif isinstance(item, np.ndarray) and item.dtype == np.uint8:  # some re-packs
                self._done[key] = item.tobytes()
            else:
                self._done[key] = None
        return self._done[key]


def _issame_list(issame: Any, path: Path) -> list[bool]:
    """One bool per pair from a flat list or a 1-D array (nested lists are refused, not expanded)."""
    if isinstance(issame, np.ndarray):
        if issame.ndim != 1 or issame.dtype.kind not in "biu":
            raise DatasetError(str(path), f"issame: expected a 1-D bool array, got {issame.dtype}")
        return [bool(x) for x in issame]
    if not isinstance(issame, list | tuple):
        raise DatasetError(str(path), f"issame: expected a list of bools, got {type(issame)}")
    if not all(isinstance(x, bool | int | np.bool_ | np.integer) for x in issame):
        raise DatasetError(str(path), "issame: expected a flat list of bools")
    return [bool(x) for x in issame]


def fold_of(index: int, count: int, folds: int = 10) -> int:
    """The standard protocol's fold: `folds` consecutive runs of equal size."""
    return index * folds // count


@register("insightface-bin")
def read_insightface_bin(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """An InsightFace verification `.bin` (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW).

    The file is a pickle of `(bins, issame)`: encoded images, two per pair, and
    one bool per pair. Pairs hold the encoded bytes; 10 folds of equal size.
    """
    path = require_file(Path(path), "verification .bin file")
    data = load_restricted_pickle(path)
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise DatasetError(str(path), "expected a pickled (bins, issame_list) pair")
    bins, issame = data
    if not isinstance(bins, list | tuple):
        raise DatasetError(str(path), f"bins: expected a list of encoded images, got {type(bins)}")
    issame = _issame_list(issame, path)
    if len(bins) != 2 * len(issame):
        raise DatasetError(
            str(path), f"{len(bins)} images for {len(issame)} pairs: expected two images per pair"
        )
    issues = Issues(strict)
    as_bytes = _ImageBytes()
    pairs = []
    for i, same in enumerate(issame):
        source = f"{path}#{i}"
        a, b = as_bytes(bins[2 * i]), as_bytes(bins[2 * i + 1])
        if a is None or b is None:
            issues.report(source, "an image of this pair is not encoded bytes")
            continue
        pairs.append(Pair(a, b, same, source, fold_of(i, len(issame))))
    issues.summarise(str(path))
    return Dataset(
        "insightface-bin", path, pairs=pairs, skipped=issues.skipped, tasks=("verification",)
    )


def write_insightface_bin(
    path: str | Path,
    pairs_of_encoded_images: Iterable[tuple[bytes, bytes]],
    issame: Sequence[bool],
) -> Path:
    """Write a verification `.bin` the way InsightFace does: a pickle of (bins, issame_list)."""
    bins: list[bytes] = []
    for a, b in pairs_of_encoded_images:
        bins += [bytes(a), bytes(b)]
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{len(bins) // 2} pairs of images but {len(issame)} issame values")
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump((bins, [bool(s) for s in issame]), f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


# ------------------------------------------------------------------ LFW pairs.txt

_LFW_IMAGE_FOLDERS = ("lfw", "lfw-deepfunneled", "lfw_funneled", "lfw-funneled")


def _lfw_layout(path: Path) -> tuple[Path, Path]:
    """(pairs.txt, image folder) from the dataset folder or the pairs file itself."""
    pairs_file = path if path.is_file() else require_file(path / "pairs.txt", "LFW pairs.txt")
    root = pairs_file.parent
    for name in _LFW_IMAGE_FOLDERS:
        if (root / name).is_dir():
            return pairs_file, root / name
    return pairs_file, root  # person folders next to pairs.txt


@register("lfw-pairs")
def read_lfw_pairs(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """LFW's own layout: `lfw/<Name>/<Name>_0001.jpg` and `pairs.txt`.

    `pairs.txt` opens with "folds pairs-per-fold" (or just the pair count for a
    single set); each fold has that many matched lines `Name i j` and then that
    many mismatched lines `Name1 i Name2 j`.
    """
    pairs_file, images = _lfw_layout(Path(path))
    issues = Issues(strict)
    index = ImageIndex()
    lines = list(text_lines(pairs_file))
    if not lines:
        raise DatasetError(f"{pairs_file}:1", "empty pairs file")
    head_number, head = lines[0]
    try:
        counts = [int(x) for x in head]
        if len(counts) not in (1, 2) or min(counts) < 1:
            raise ValueError
    except ValueError:
        raise DatasetError(
            f"{pairs_file}:{head_number}",
            f"expected 'folds pairs-per-fold' on the first line, got {' '.join(head)!r}",
        ) from None
    folds, per_fold = counts if len(counts) == 2 else (1, counts[0])

    def image(name: str, number: str) -> Path:
        n = parse_int(number, "image number", lo=1)
        file = images / name / f"{name}_{n:04d}.jpg"
        if not index.exists(file):
            raise Line(f"image {file} does not exist")
        return file

    pairs = []
    for k, (number, fields) in enumerate(lines[1:]):
        source = f"{pairs_file}:{number}"
        try:
            if len(fields) == 3:
                a, b, same = image(fields[0], fields[1]), image(fields[0], fields[2]), True
            elif len(fields) == 4:
                a, b, same = image(fields[0], fields[1]), image(fields[2], fields[3]), False
            else:
                raise Line(f"expected 'name i j' or 'name1 i name2 j', got {len(fields)} field(s)")
        except Line as err:
            issues.report(source, str(err))
            continue
        pairs.append(Pair(a, b, same, source, min(k // (2 * per_fold), folds - 1)))
    if len(lines) - 1 != 2 * folds * per_fold:
        issues.report(
            f"{pairs_file}:{head_number}",
            f"header announces {folds} x {2 * per_fold} pairs, file has {len(lines) - 1}",
        )
    issues.summarise(str(pairs_file))
    return Dataset(
        "lfw-pairs", Path(path), pairs=pairs, skipped=issues.skipped, tasks=("verification",)
    )


# ------------------------------------------------------------------ pairs CSV

_TRUE = {"1", "true", "yes", "same"}
_FALSE = {"0", "false", "no", "different"}


def parse_bool(text: str, what: str) -> bool:
    """1/0, true/false, yes/no (any case); raises `Line` otherwise."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Line(f"{what} {text!r} is not one of 0/1/true/false")


@register("pairs-csv")
def read_pairs_csv(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """A pair list CSV `path_a,path_b,same[,fold]`, paths relative to the CSV's folder."""
    path = Path(path)
    csv_path = path if path.is_file() else require_file(path / "pairs.csv", "pairs CSV")
    header, rows = read_csv(csv_path)
    missing = {"path_a", "path_b", "same"} - set(header)
    if missing:
        raise DatasetError(f"{csv_path}:1", f"missing column(s) {sorted(missing)}")
    issues = Issues(strict)
    index = ImageIndex()
    pairs = []
    for number, cells in rows:
        source = f"{csv_path}:{number}"
        try:
            row = row_dict(header, cells)
            if not row["path_a"] or not row["path_b"]:
                raise Line("empty image path")
            files = [csv_path.parent / row["path_a"], csv_path.parent / row["path_b"]]
            for file in files:
                if not index.exists(file):
                    raise Line(f"image {file} does not exist")
            same = parse_bool(row["same"], "same")
            fold = parse_int(row["fold"], "fold", lo=0) if row.get("fold") else None
        except Line as err:
            issues.report(source, str(err))
            continue
        pairs.append(Pair(files[0], files[1], same, source, fold))
    issues.summarise(str(csv_path))
    return Dataset("pairs-csv", path, pairs=pairs, skipped=issues.skipped, tasks=("verification",))
