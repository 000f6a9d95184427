"""Readers for the layouts face datasets are published in, by format name.

`open_dataset("celeba", path)` returns a `Dataset` of `Sample`s (or `Pair`s
for verification sets). Pixels are not read: samples hold image paths, or the
encoded bytes for formats that pack images into one file (`.bin`, RecordIO).
"""

from __future__ import annotations

from pathlib import Path

# Importing the family modules fills FORMATS.
from swinface.data.formats import age, celeba, expression, identity, manifest, verification
from swinface.data.formats.base import FORMATS, Dataset, DatasetError, Reader
from swinface.data.formats.verification import (
    RestrictedUnpickler,
    UnsafePickleError,
    write_insightface_bin,
)

__all__ = [
    "FORMATS",
    "Dataset",
    "DatasetError",
    "Reader",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "open_dataset",
    "write_insightface_bin",
]
_FAMILIES = (age, celeba, expression, identity, manifest, verification)


def open_dataset(
    format: str, path: str | Path, *, strict: bool = True, split: str | None = None
) -> Dataset:
    """Read the dataset at `path` in `format` (a key of `FORMATS`).

    strict: a malformed label line raises `DatasetError` naming the file and
    line; otherwise it is skipped and listed in `Dataset.skipped`.
    split: keep only the samples of this split (the dataset's own split names).
    """
    reader = FORMATS.get(format)
    if reader is None:
        raise ValueError(
            f"unknown dataset format {format!r}; formats: {', '.join(sorted(FORMATS))}"
        )
    dataset = reader(Path(path), strict=strict, split=split)
    if split is not None:
        splits = dataset.splits
        if split not in splits:
            raise DatasetError(
                str(path),
                f"no split {split!r} in this {format} dataset"
                + (f"; splits: {', '.join(splits)}" if splits else " (it has no splits)"),
            )
        dataset.samples = [s for s in dataset.samples if s.split == split]
    return dataset
