"""Recognition training formats: InsightFace RecordIO packs and a folder per identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from swinface.data.formats.base import (
    Dataset,
    DatasetError,
    Issues,
    images_in,
    register,
    require_folder,
    subfolders,
)
from swinface.data.recordio import RecordImage, RecordIOError, RecordReader, unpack
from swinface.data.samples import Sample

_IMAGE_MAGICS = (b"\xff\xd8", b"\x89PNG", b"BM", b"RIFF")


def _rec_files(path: Path) -> tuple[Path, Path | None]:
    """(.rec, .idx or None) from a `.rec`/`.idx` path or a folder holding one pack."""
    if path.is_dir():
        recs = sorted(path.glob("*.rec"))
        if (path / "train.rec").is_file():
            recs = [path / "train.rec"]
        if len(recs) != 1:
            raise DatasetError(
                str(path), f"expected one .rec file in the folder, found {len(recs)}"
            )
        path = recs[0]
    rec = path.with_suffix(".rec")
    if not rec.is_file():
        raise DatasetError(str(rec), "RecordIO .rec file not found")
    idx = rec.with_suffix(".idx")
    return rec, idx if idx.is_file() else None


def _identity(label: float | np.ndarray) -> int:
    """InsightFace's rule: the label, or its first value when the label is a vector."""
    value = float(label if isinstance(label, float) else label[0])
    if not value.is_integer() or value < 0:
        raise RecordIOError(f"identity label {value} is not a non-negative integer")
    return int(value)


def _is_header(record: bytes) -> tuple[int, int] | None:
    """InsightFace's header record: a vector label (first image key..) and no image after it.

    MS1MV2 and its kin put it at key 0 with label = (number of images + 1,
    end of the identity records); the image keys run from 1 to label[0] - 1.
    A key-0 record that carries an image is an ordinary sample.
    """
    header, payload = unpack(record)
    if header.flag < 2 or payload.startswith(_IMAGE_MAGICS):
        return None
    labels = np.asarray(header.label)
    return int(labels[0]), int(labels[1])


def _image_records(reader: RecordReader) -> Iterator[tuple[int, bytes | RecordIOError]]:
    """(key, record) for every image record, or the error that record raised.

    With an index, keys come from the header record's range when there is one,
    else from the index; without one, records are read in file order, where a
    broken record ends the file (there is no way to find the next one).
    """
    if reader.index is None:
        for key, record in enumerate(reader):
            if key == 0 and _is_header(record) is not None:
                continue
            yield key, record
        return
    keys = reader.keys
    if 0 in reader.index:
        span = _is_header(reader.read_key(0))
        if span is not None:
            keys = list(range(1, span[0]))
    for key in keys:
        try:
            yield key, reader.read_key(key)
        except RecordIOError as err:
            yield key, err


@register("recordio")
def read_recordio(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """An MXNet RecordIO pack (`train.rec` + `train.idx`, MS1MV2 layout), read without MXNet.

    With an index, samples point into the `.rec` file and images are read when
    decoded, so a pack of millions fits; without one, each record's encoded
    bytes are kept. Identity is the record label.
    """
    rec, idx = _rec_files(Path(path))
    issues = Issues(strict)
    samples: list[Sample] = []
    with RecordReader(rec, idx) as reader:
        for key, record in _image_records(reader):
            source = f"{rec}#{key}"
            try:
                if isinstance(record, RecordIOError):
                    raise record
                header, image = unpack(record)
                identity = _identity(header.label)
                if not image:
                    raise RecordIOError("record holds no image")
            except RecordIOError as err:
                issues.report(source, str(err))
                continue
            if reader.index is not None:  # keep only where the image is, not its bytes
                image = RecordImage(reader.rec_path, reader.index[key])
            samples.append(Sample(image, source, identity=identity))
    issues.summarise(str(rec))
    return Dataset("recordio", rec, samples=samples, skipped=issues.skipped, tasks=("identity",))


@register("identity-folders")
def read_identity_folders(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """A folder per identity (`root/<identity>/*.jpg`).

    Identity is the folder's index among the folders with images, in sorted
    order; the folder name is kept in `groups["name"]`.
    """
    root = require_folder(Path(path), "identity folder root")
    samples: list[Sample] = []
    identity = 0
    for folder in subfolders(root):
        files = images_in(folder)
        if not files:
            continue
        samples += [
            Sample(f, str(f), identity=identity, groups={"name": folder.name}) for f in files
        ]
        identity += 1
    if not samples:
        raise DatasetError(str(root), "no identity folder with images found")
    return Dataset("identity-folders", root, samples=samples, tasks=("identity",))
