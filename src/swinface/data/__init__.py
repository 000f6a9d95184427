"""Datasets: readers for published face dataset layouts, the records they yield, face stores.

Kept light: importing it reads no images and loads no deep learning framework.
"""

from swinface.data.formats import (
    FORMATS,
    Dataset,
    DatasetError,
    RestrictedUnpickler,
    UnsafePickleError,
    open_dataset,
    write_insightface_bin,
)
from swinface.data.recordio import RecordIOError, RecordReader, write_recordio
from swinface.data.samples import LabelError, Pair, Sample

__all__ = [
    "FORMATS",
    "Dataset",
    "DatasetError",
    "LabelError",
    "Pair",
    "RecordIOError",
    "RecordReader",
    "RestrictedUnpickler",
    "Sample",
    "UnsafePickleError",
    "open_dataset",
    "write_insightface_bin",
    "write_recordio",
]
