"""A generic manifest: one CSV row or JSON line per image, with whichever labels it has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from swinface.data.formats.base import (
    Dataset,
    DatasetError,
    ImageIndex,
    Issues,
    Line,
    parse_float,
    parse_int,
    read_csv,
    register,
    require_file,
    row_dict,
)
from swinface.data.formats.expression import expression_index
from swinface.data.samples import Sample
from swinface.tasks import CELEBA_ATTRIBUTES, EXPRESSION_LABELS, GENDER_LABELS

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
LABEL_COLUMNS = ("identity", "age", "age_std", "gender", "expression")
_GENDERS = {"female": 0, "f": 0, "0": 0, "male": 1, "m": 1, "1": 1}
_ATTRIBUTE_VALUES = {"1": 1, "+1": 1, "true": 1, "0": 0, "-1": 0, "false": 0}


def _text(value: Any) -> str:
    """A cell as text: JSON numbers and bools compare like their CSV spelling; null is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


Record = dict[str, str] | str  # a record as text, or why its line could not be read


def _records(path: Path) -> tuple[list[str], list[tuple[int, Record]]]:
    """(column names, [(line number, record)]) of a CSV or JSONL manifest."""
    if path.suffix.lower() not in JSONL_SUFFIXES:
        header, rows = read_csv(path)
        records: list[tuple[int, Record]] = []
        for number, cells in rows:
            try:
                records.append((number, row_dict(header, cells)))
            except Line as err:  # a short row: reported in line order with the others
                records.append((number, str(err)))
        return header, records
    columns: dict[str, None] = {}
    records = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                records.append((number, f"not a JSON object: {err}"))
                continue
            columns.update(dict.fromkeys(obj))
            records.append((number, {k: _text(v) for k, v in obj.items()}))
    return list(columns), records


def _sample(record: Record, root: Path, index: ImageIndex, source: str) -> Sample:
    """One manifest record as a sample; raises `Line` on a bad value."""
    if isinstance(record, str):
        raise Line(record)
    name = record.get("path", "")
    if not name:
        raise Line("no image path")
    file = root / name
    if not index.exists(file):
        raise Line(f"image {file} does not exist")
    sample = Sample(file, source)
    if record.get("identity"):
        sample.identity = parse_int(record["identity"], "identity", 0)
    if record.get("age"):
        sample.age = parse_float(record["age"], "age")
    if record.get("age_std"):
        sample.age_std = parse_float(record["age_std"], "age_std")
    if record.get("gender"):
        gender = _GENDERS.get(record["gender"].lower())
        if gender is None:
            raise Line(
                f"gender {record['gender']!r} is not one of {', '.join(GENDER_LABELS)}, 0, 1"
            )
        sample.gender = gender
    if record.get("expression"):
        sample.expression = expression_index(record["expression"])
        if sample.expression is None:
            raise Line(
                f"unknown expression {record['expression']!r}; "
                f"expected one of {', '.join(EXPRESSION_LABELS)}"
            )
    given = [a for a in CELEBA_ATTRIBUTES if record.get(a)]
    if given:
        if len(given) != len(CELEBA_ATTRIBUTES):
            missing = [a for a in CELEBA_ATTRIBUTES if not record.get(a)]
            raise Line(f"attribute(s) without a value: {', '.join(missing[:5])}")
        values = [_ATTRIBUTE_VALUES.get(record[a].lower()) for a in CELEBA_ATTRIBUTES]
        bad = next((a for a, v in zip(CELEBA_ATTRIBUTES, values, strict=True) if v is None), None)
        if bad is not None:
            raise Line(f"attribute {bad} = {record[bad]!r} is not 0/1 or -1/1")
        sample.attributes = np.array(values, dtype=np.int8)
    sample.groups = {
        k[len("group_") :]: v for k, v in record.items() if k.startswith("group_") and v
    }
    sample.split = record.get("split") or None
    return sample


@register("manifest")
def read_manifest(path: Path, *, strict: bool = True, split: str | None = None) -> Dataset:
    """A CSV or JSONL manifest: `path` (relative to the manifest's folder) and any labels.

    Columns: identity, age, age_std, gender (female/male or 0/1), expression (a
    class name), the 40 CelebA attribute names (0/1 or -1/1, all or none),
    `group_<name>` columns into `groups`, and split. Empty cells are missing labels.
    """
    path = require_file(Path(path), "manifest")
    columns, records = _records(path)
    if "path" not in columns:
        raise DatasetError(f"{path}:1", f"manifest has no 'path' column (columns: {columns})")
    attribute_columns = [a for a in CELEBA_ATTRIBUTES if a in columns]
    if attribute_columns and len(attribute_columns) != len(CELEBA_ATTRIBUTES):
        missing = sorted(set(CELEBA_ATTRIBUTES) - set(attribute_columns))
        raise DatasetError(f"{path}:1", f"attribute columns incomplete, missing {missing}")
    issues = Issues(strict)
    index = ImageIndex()
    samples: list[Sample] = []
    for number, record in records:
        source = f"{path}:{number}"
        try:
            samples.append(_sample(record, path.parent, index, source))
        except Line as err:
            issues.report(source, str(err))
    issues.summarise(str(path))
    tasks = tuple(c for c in LABEL_COLUMNS if c in columns) + (
        ("attributes",) if attribute_columns else ()
    )
    return Dataset("manifest", path, samples=samples, skipped=issues.skipped, tasks=tasks)
