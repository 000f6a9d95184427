"""Facial expression formats: RAF-DB, FER2013 (CSV and folders) and AffectNet.

Each dataset numbers its classes its own way; every label is mapped to
`EXPRESSION_LABELS` by name, never by position.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from swinface.data.formats.base import (
    Dataset,
    DatasetError,
    ImageIndex,
    Issues,
    Line,
    images_in,
    parse_int,
    read_csv,
    register,
    require_file,
    require_folder,
    row_dict,
    subfolders,
    text_lines,
)
from swinface.data.samples import Sample
from swinface.tasks import EXPRESSION_LABELS

# Each dataset's class names in its own label order.
RAF_LABELS = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")  # 1..7
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # 0..6
AFFECTNET_LABELS = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",  # no SwinFace class
    "none",
    "uncertain",
    "non-face",
)
_AFFECTNET_FIRST_EXCLUDED = AFFECTNET_LABELS.index("contempt")

# Other datasets' spellings of our class names.
_SYNONYMS = {
    "angry": "anger",
    "happy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
    "fearful": "fear",
    "disgusted": "disgust",
}


def expression_index(name: str) -> int | None:
    """Our expression index for a class name in any dataset's spelling (any case), or None."""
    key = name.strip().lower()
    key = _SYNONYMS.get(key, key)
    return EXPRESSION_LABELS.index(key) if key in EXPRESSION_LABELS else None


def _known(names: tuple[str, ...]) -> list[int]:
    indices = [expression_index(n) for n in names]
    assert all(i is not None for i in indices), names
    return indices  # type: ignore[return-value]


_RAF_TO_OURS = _known(RAF_LABELS)
_FER_TO_OURS = _known(FER_LABELS)
_AFFECTNET_TO_OURS = _known(AFFECTNET_LABELS[:_AFFECTNET_FIRST_EXCLUDED])

# ------------------------------------------------------------------ RAF-DB

RAF_LABEL_FILE = "list_patition_label.txt"  # sic, as published


def _raf_layout(path: Path) -> tuple[Path, Path]:
    """(label file, dataset root) from the root, `EmoLabel/` or the label file."""
    if path.is_file():
        root = path.parent.parent if path.parent.name == "EmoLabel" else path.parent
        return path, root
    for candidate in (path / "EmoLabel" / RAF_LABEL_FILE, path / RAF_LABEL_FILE):
        if candidate.is_file():
            return candidate, path
    raise DatasetError(str(path / "EmoLabel" / RAF_LABEL_FILE), "RAF-DB label file not found")


@register("rafdb")
def read_rafdb(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """RAF-DB basic: `EmoLabel/list_patition_label.txt` (`train_00001.jpg 5`, labels 1..7).

    Images come from `Image/aligned/<stem>_aligned.jpg`, or `Image/original/`
    when there are no aligned ones; the split is the file name's prefix.
    """
    label_file, root = _raf_layout(Path(path))
    aligned = (root / "Image" / "aligned").is_dir()
    folder = root / "Image" / ("aligned" if aligned else "original")
    require_folder(folder, "RAF-DB image folder")
    issues = Issues(strict)
    index = ImageIndex()
    samples: list[Sample] = []
    for number, fields in text_lines(label_file):
        source = f"{label_file}:{number}"
        try:
            if len(fields) != 2:
                raise Line(f"expected 'file label', got {len(fields)} field(s)")
            label = parse_int(fields[1], "expression label", 1, len(RAF_LABELS))
            name = Path(fields[0])
            file = folder / (f"{name.stem}_aligned{name.suffix}" if aligned else name.name)
            if not index.exists(file):
                raise Line(f"image {file} does not exist")
        except Line as err:
            issues.report(source, str(err))
            continue
        prefix = name.name.split("_", 1)[0]
        samples.append(
            Sample(
                file,
                source,
                expression=_RAF_TO_OURS[label - 1],
                split=prefix if prefix in ("train", "test") else None,
            )
        )
    issues.summarise(str(label_file))
    return Dataset("rafdb", root, samples=samples, skipped=issues.skipped, tasks=("expression",))


# ------------------------------------------------------------------ FER2013 CSV

FER_SIZE = 48
FER_USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}


@register("fer2013-csv")
def read_fer2013_csv(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """FER2013's `fer2013.csv`: emotion (0..6), 2304 grey pixel values, Usage.

    Pixels become decoded 48x48 RGB uint8 arrays. Usage maps to a split:
    Training -> train, PublicTest -> val, PrivateTest -> test.
    """
    path = Path(path)
    csv_path = path if path.is_file() else require_file(path / "fer2013.csv", "fer2013.csv")
    header, rows = read_csv(csv_path)
    columns = {h.lower(): h for h in header}
    if "emotion" not in columns or "pixels" not in columns:
        raise DatasetError(
            f"{csv_path}:1", f"expected columns emotion,pixels[,Usage], got {header}"
        )
    issues = Issues(strict)
    samples: list[Sample] = []
    with warnings.catch_warnings():
        # numpy only warns when a pixel string does not parse to its end; make that an error
        warnings.simplefilter("error", DeprecationWarning)
        for number, cells in rows:
            source = f"{csv_path}:{number}"
            try:
                row = row_dict(header, cells)
                label = parse_int(row[columns["emotion"]], "emotion", 0, len(FER_LABELS) - 1)
                grey = _fer_pixels(row[columns["pixels"]])
                usage = row.get(columns.get("usage", ""), "")
                if usage and usage.lower() not in FER_USAGE:
                    raise Line(f"unknown Usage {usage!r}; expected Training/PublicTest/PrivateTest")
            except Line as err:
                issues.report(source, str(err))
                continue
            samples.append(
                Sample(
                    np.repeat(grey[:, :, None], 3, axis=2),
                    source,
                    expression=_FER_TO_OURS[label],
                    split=FER_USAGE[usage.lower()] if usage else None,
                )
            )
    issues.summarise(str(csv_path))
    return Dataset(
        "fer2013-csv", csv_path, samples=samples, skipped=issues.skipped, tasks=("expression",)
    )


def _fer_pixels(text: str) -> np.ndarray:
    try:
        values = np.fromstring(text, dtype=np.int32, sep=" ")
    except (ValueError, DeprecationWarning):
        raise Line("pixels are not space-separated integers") from None
    if values.size != FER_SIZE * FER_SIZE:
        raise Line(f"expected {FER_SIZE * FER_SIZE} pixel values, got {values.size}")
    if values.min() < 0 or values.max() > 255:
        raise Line("pixel values must be 0..255")
    return values.astype(np.uint8).reshape(FER_SIZE, FER_SIZE)


# ------------------------------------------------------------------ FER2013 folders


def _class_folders(folders: list[Path], split: str | None, issues: Issues) -> list[Sample]:
    samples: list[Sample] = []
    for folder in folders:
        label = expression_index(folder.name)
        if label is None:
            issues.report(
                str(folder),
                f"unknown expression folder {folder.name!r}; expected one of {', '.join(FER_LABELS)}",
            )
            continue
        samples += [Sample(f, str(f), expression=label, split=split) for f in images_in(folder)]
    return samples


@register("fer2013-folders")
def read_fer2013_folders(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """A folder per expression, `root/<split>/<emotion>/*.jpg` or `root/<emotion>/*.jpg`.

    Folder names are FER2013's (angry, disgust, fear, happy, neutral, sad,
    surprise) or ours, in any case. With `split`, only that split's folder is read.
    """
    root = require_folder(Path(path), "expression folder root")
    issues = Issues(strict)
    tops = subfolders(root)
    flat = any(expression_index(f.name) is not None or images_in(f) for f in tops)
    if flat:
        samples = _class_folders(tops, None, issues)
    else:
        if split is not None:
            if split not in {f.name for f in tops}:
                raise DatasetError(
                    str(root), f"no split {split!r}; splits: {', '.join(f.name for f in tops)}"
                )
            tops = [root / split]
        samples = []
        for top in tops:
            samples += _class_folders(subfolders(top), top.name, issues)
    if not samples and not issues.skipped:
        raise DatasetError(str(root), "no expression images found")
    issues.summarise(str(root))
    return Dataset(
        "fer2013-folders", root, samples=samples, skipped=issues.skipped, tasks=("expression",)
    )


# ------------------------------------------------------------------ AffectNet

_AFFECTNET_SPLITS = {"training": "train", "validation": "val"}
_AFFECTNET_IMAGE_FOLDERS = (
    "Manually_Annotated_Images",
    "Manually_Annotated/Manually_Annotated_Images",
)


@register("affectnet")
def read_affectnet(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """AffectNet's `training.csv` / `validation.csv` (`subDirectory_filePath, ..., expression`).

    Expressions 0..6 map to ours by name; Contempt (7, no SwinFace class) and
    None / Uncertain / Non-face (8..10) are left out and counted in `excluded`.
    Given the folder, both CSVs are read, as splits train and val.
    """
    path = Path(path)
    if path.is_file():
        csvs = [path]
    else:
        csvs = [
            path / f"{name}.csv" for name in _AFFECTNET_SPLITS if (path / f"{name}.csv").is_file()
        ]
        if not csvs:
            raise DatasetError(str(path), "no training.csv or validation.csv found")
    issues = Issues(strict)
    index = ImageIndex()
    dataset = Dataset("affectnet", path, tasks=("expression",))
    for csv_path in csvs:
        images = next(
            (
                csv_path.parent / f
                for f in _AFFECTNET_IMAGE_FOLDERS
                if (csv_path.parent / f).is_dir()
            ),
            csv_path.parent,
        )
        header, rows = read_csv(csv_path)
        if "subDirectory_filePath" not in header or "expression" not in header:
            raise DatasetError(
                f"{csv_path}:1", "expected AffectNet columns subDirectory_filePath,...,expression"
            )
        part = _AFFECTNET_SPLITS.get(csv_path.stem.lower())
        for number, cells in rows:
            source = f"{csv_path}:{number}"
            try:
                row = row_dict(header, cells)
                label = parse_int(row["expression"], "expression", 0, len(AFFECTNET_LABELS) - 1)
                if label >= _AFFECTNET_FIRST_EXCLUDED:
                    dataset.excluded[AFFECTNET_LABELS[label]] += 1
                    continue
                file = images / row["subDirectory_filePath"]
                if not row["subDirectory_filePath"] or not index.exists(file):
                    raise Line(f"image {file} does not exist")
            except Line as err:
                issues.report(source, str(err))
                continue
            dataset.samples.append(
                Sample(file, source, expression=_AFFECTNET_TO_OURS[label], split=part)
            )
    issues.summarise(str(path))
    dataset.skipped = issues.skipped
    return dataset
