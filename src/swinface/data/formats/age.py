"""Age formats: UTKFace (labels in file names) and ChaLearn LAP 2015 apparent age."""

from __future__ import annotations

import os
from pathlib import Path

from swinface.data.formats.base import (
    IMAGE_SUFFIXES,
    Dataset,
    DatasetError,
    ImageIndex,
    Issues,
    Line,
    parse_float,
    parse_int,
    read_csv,
    register,
    require_folder,
    row_dict,
)
from swinface.data.samples import Sample
from swinface.tasks import GENDER_LABELS

UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
UTK_GENDERS = ("male", "female")  # UTKFace's 0 and 1
UTK_MAX_AGE = 116


def parse_utkface_name(name: str) -> tuple[int, int, str | None]:
    """(age, our gender index, race name) from `<age>_<gender>_<race>_<date>.jpg[.chip.jpg]`.

    The full release holds three files named `<age>_<gender>_<date>.jpg.chip.jpg`,
    without a race: their race is None (unknown).
    """
    fields = name.split("_")
    if len(fields) == 3 and _is_date_stamp(fields[2]):
        fields.insert(2, "")
    if len(fields) != 4:
        raise Line(f"expected '<age>_<gender>_<race>_<date>.jpg', got {len(fields)} field(s)")
    age = parse_int(fields[0], "age", 0, UTK_MAX_AGE)
    gender = parse_int(fields[1], "gender", 0, 1)
    race = UTK_RACES[parse_int(fields[2], "race", 0, len(UTK_RACES) - 1)] if fields[2] else None
    return age, GENDER_LABELS.index(UTK_GENDERS[gender]), race


def _is_date_stamp(field: str) -> bool:
    """UTKFace's last field: a yyyymmddHHMMSSfff time stamp, then the suffixes."""
    stamp = field.split(".", 1)[0]
    return len(stamp) >= 8 and stamp.isdigit()


@register("utkface")
def read_utkface(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """UTKFace: labels in each file name; images anywhere under the folder (part1/, ...).

    Gender 0 male / 1 female becomes our index (female 0, male 1); race and
    gender names go to `groups` (no race for the few files whose names lack it).
    """
    root = require_folder(Path(path), "UTKFace folder")
    issues = Issues(strict)
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(folder) / n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    samples: list[Sample] = []
    for file in sorted(files):
        try:
            age, gender, race = parse_utkface_name(file.name)
        except Line as err:
            issues.report(str(file), str(err))
            continue
        # An unknown race is left out of the groups, so it is not a race of its own.
        groups = {"gender": GENDER_LABELS[gender]} | ({"race": race} if race else {})
        samples.append(Sample(file, str(file), age=float(age), gender=gender, groups=groups))
    if not samples and not issues.skipped:
        raise DatasetError(str(root), "no UTKFace images found")
    issues.summarise(str(root))
    return Dataset(
        "utkface", root, samples=samples, skipped=issues.skipped, tasks=("age", "gender")
    )


# ------------------------------------------------------------------ ChaLearn LAP 2015

# Header spellings seen in the published files and their re-exports.
_CLAP_IMAGE = ("image", "image_name", "imagename", "file", "filename", "name", "path")
_CLAP_MEAN = ("mean", "apparent_age", "apparent_age_avg", "age", "real_age", "mean_age")
_CLAP_STD = ("std", "stdv", "stddev", "std_dev", "apparent_age_std", "age_std")
_CLAP_SPLITS = {
    "train": "train",
    "training": "train",
    "valid": "val",
    "validation": "val",
    "val": "val",
    "test": "test",
    "reference": "test",
}


def _delimiter(csv_path: Path) -> str:
    with open(csv_path, encoding="utf-8-sig") as f:
        first = f.readline()
    return ";" if first.count(";") > first.count(",") else ","


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {h.lower(): h for h in header}
    return next((lowered[n] for n in names if n in lowered), None)


def _read_clap_csv(csv_path: Path, issues: Issues, index: ImageIndex) -> list[Sample]:
    header, rows = read_csv(csv_path, _delimiter(csv_path))
    image_col, mean_col = _column(header, _CLAP_IMAGE), _column(header, _CLAP_MEAN)
    std_col = _column(header, _CLAP_STD)
    if image_col is None or mean_col is None:
        if len(header) >= 2 and _is_number(header[1]):  # no header line: image, mean[, std]
            rows.insert(0, (1, header))
            n = len(header)
            header = ["image", "mean", "std"][:n] + [f"column{i}" for i in range(3, n)]
            image_col, mean_col = "image", "mean"
            std_col = "std" if n > 2 else None
        else:
            raise DatasetError(f"{csv_path}:1", f"expected columns image,mean[,std], got {header}")
    # Images sit next to the CSV, or in a folder named after it (Train.csv -> Train/).
    folders = [csv_path.parent / csv_path.stem, csv_path.parent / "images", csv_path.parent]
    split = _CLAP_SPLITS.get(csv_path.stem.lower())
    samples: list[Sample] = []
    for number, cells in rows:
        source = f"{csv_path}:{number}"
        try:
            row = row_dict(header, cells)
            mean = parse_float(row[mean_col], "age")
            std = parse_float(row[std_col], "age std") if std_col and row.get(std_col) else None
            name = row[image_col]
            file = next((f / name for f in folders if name and index.exists(f / name)), None)
            if file is None:
                raise Line(f"image {name!r} not found next to {csv_path.name}")
        except Line as err:
            issues.report(source, str(err))
            continue
        samples.append(Sample(file, source, age=mean, age_std=std, split=split))
    return samples


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@register("clap2015")
def read_clap2015(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """ChaLearn LAP 2015 apparent age: a CSV `image,mean,std` (`,` or `;`, any header case).

    Given a folder, every CSV in it is read, its split taken from its name
    (Train, Validation, Reference/Test).
    """
    path = Path(path)
    csvs = [path] if path.is_file() else sorted(path.glob("*.csv"))
    if not csvs:
        raise DatasetError(str(path), "no CSV label file found")
    issues = Issues(strict)
    index = ImageIndex()
    samples: list[Sample] = []
    for csv_path in csvs:
        samples += _read_clap_csv(csv_path, issues, index)
    issues.summarise(str(path))
    return Dataset("clap2015", path, samples=samples, skipped=issues.skipped, tasks=("age",))
