"""CelebA in its published layout: attributes, identities and the evaluation partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from swinface.data.formats.base import (
    Dataset,
    DatasetError,
    ImageIndex,
    Issues,
    Line,
    parse_int,
    register,
    require_file,
    require_folder,
    text_lines,
)
from swinface.data.samples import Sample
from swinface.tasks import CELEBA_ATTRIBUTES

CELEBA_SPLITS = ("train", "val", "test")  # list_eval_partition.txt's 0, 1, 2
_MALE = CELEBA_ATTRIBUTES.index("Male")
_VALUES = {"1": 1, "+1": 1, "-1": 0}  # CelebA writes 1 / -1; some re-exports write +1


def _file_labels(path: Path, issues: Issues, what: str, lo: int, hi: int | None) -> dict[str, int]:
    """A `file value` list (identities, partitions): file name -> integer in lo..hi."""
    labels: dict[str, int] = {}
    for number, fields in text_lines(path):
        try:
            if len(fields) != 2:
                raise Line(f"expected 'file {what}', got {len(fields)} field(s)")
            labels[fields[0]] = parse_int(fields[1], what, lo, hi)
        except Line as err:
            issues.report(f"{path}:{number}", str(err))
    return labels


@register("celeba")
def read_celeba(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """CelebA: `list_attr_celeba.txt`, optional `identity_CelebA.txt` and `list_eval_partition.txt`.

    Attributes become 0/1 int8 in CelebA column order; gender comes from `Male`.
    Images are read from `img_align_celeba/`. Files may also sit in `Anno/`,
    `Eval/` and `Img/` as in the published archive.
    """
    root = require_folder(Path(path), "CelebA folder")

    def find(name: str, *folders: str) -> Path | None:
        for folder in ("", *folders):
            if (root / folder / name).is_file():
                return root / folder / name
        return None

    attr_file = require_file(
        find("list_attr_celeba.txt", "Anno") or root / "list_attr_celeba.txt", "CelebA attributes"
    )
    images = root / "img_align_celeba"
    if not images.is_dir() and (root / "Img" / "img_align_celeba").is_dir():
        images = root / "Img" / "img_align_celeba"
    require_folder(images, "CelebA image folder")
    issues = Issues(strict)
    identity_file = find("identity_CelebA.txt", "Anno")
    partition_file = find("list_eval_partition.txt", "Eval")
    identities = _file_labels(identity_file, issues, "identity", 0, None) if identity_file else {}
    partitions = _file_labels(partition_file, issues, "partition", 0, 2) if partition_file else {}

    lines = text_lines(attr_file)
    count_line = next(lines, None)
    header_line = next(lines, None)
    if count_line is None or header_line is None:
        raise DatasetError(f"{attr_file}:1", "expected a count line and a header line")
    if tuple(header_line[1]) != CELEBA_ATTRIBUTES:
        raise DatasetError(
            f"{attr_file}:{header_line[0]}",
            "header is not CelebA's 40 attribute names in CelebA's order",
        )
    index = ImageIndex()
    samples: list[Sample] = []
    rows = 0
    for number, fields in lines:
        rows += 1
        try:
            if len(fields) != 1 + len(CELEBA_ATTRIBUTES):
                raise Line(f"expected a file name and 40 values, got {len(fields)} field(s)")
            bad = next((v for v in fields[1:] if v not in _VALUES), None)
            if bad is not None:
                raise Line(f"attribute value {bad!r} is not 1 or -1")
            file = images / fields[0]
            if not index.exists(file):
                raise Line(f"image {file} does not exist")
        except Line as err:
            issues.report(f"{attr_file}:{number}", str(err))
            continue
        attributes = np.array([_VALUES[v] for v in fields[1:]], dtype=np.int8)
        part = partitions.get(fields[0])
        samples.append(
            Sample(
                file,
                f"{attr_file}:{number}",
                identity=identities.get(fields[0]),
                gender=int(attributes[_MALE]),
                attributes=attributes,
                split=CELEBA_SPLITS[part] if part is not None else None,
            )
        )
    try:
        announced = parse_int(count_line[1][0], "image count") if len(count_line[1]) == 1 else -1
    except Line:
        announced = -1
    if announced != rows:
        issues.report(
            f"{attr_file}:{count_line[0]}",
            f"first line should be the row count ({rows}), got {' '.join(count_line[1])!r}",
        )
    issues.summarise(str(attr_file))
    tasks = ("attributes", "gender") + (("identity",) if identity_file else ())
    return Dataset("celeba", root, samples=samples, skipped=issues.skipped, tasks=tasks)
