"""MXNet RecordIO (`.rec` + `.idx`), read and written without MXNet.

The layout is dmlc-core's: every record is a 4-byte magic, a 4-byte `lrecord`
(`cflag << 29 | length`), `length` bytes of data and zero padding to a
multiple of 4. A payload that contains the magic at a 4-byte boundary is split
there into parts (cflag 1 = first, 2 = middle, 3 = last; 0 = whole record) and
the magic is re-inserted between the parts on reading. The `.idx` file lists
`key<TAB>offset` per line.

Image records (MXNet's `recordio.pack`) start with an `IRHeader`, struct
`IfQQ` = flag, label, id, id2; when `flag > 0` the label is the `flag` float32
values that follow the header, and the encoded image comes last.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from swinface.errors import SwinFaceError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
IR_FORMAT = "<IfQQ"  # MXNet packs it natively; on every platform it runs on that is this, 24 bytes
IR_SIZE = struct.calcsize(IR_FORMAT)


class RecordIOError(SwinFaceError, ValueError):
    """A `.rec` / `.idx` file that does not follow the RecordIO layout."""


@dataclass(frozen=True)
class IRHeader:
    """MXNet's image record header: `label` is a float, or the float32 array when `flag > 0`."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack(header: IRHeader, payload: bytes) -> bytes:
    """An image record, as MXNet's `recordio.pack`: a scalar or vector label, then the bytes."""
    label = header.label
    if isinstance(label, int | float | np.number):
        head = struct.pack(IR_FORMAT, 0, float(label), header.id, header.id2)
        return head + payload
    values = np.asarray(label, dtype="<f4").ravel()
    head = struct.pack(IR_FORMAT, values.size, 0.0, header.id, header.id2)
    return head + values.tobytes() + payload


def unpack(record: bytes) -> tuple[IRHeader, bytes]:
    """Split an image record into its header and its payload (the encoded image)."""
    if len(record) < IR_SIZE:
        raise RecordIOError(
            f"record of {len(record)} bytes is shorter than its {IR_SIZE}-byte header"
        )
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, record)
    if flag == 0:
        return IRHeader(0, float(label), id_, id2), record[IR_SIZE:]
    end = IR_SIZE + 4 * flag
    if len(record) < end:
        raise RecordIOError(f"record header announces {flag} labels but the record is too short")
    labels = np.frombuffer(record, dtype="<f4", count=flag, offset=IR_SIZE).copy()
    return IRHeader(flag, labels, id_, id2), record[end:]


def _write_record(out: BinaryIO, data: bytes) -> None:
    """Write one record, splitting it where the payload holds the magic (dmlc's writer)."""
    start = 0
    for i in range(0, len(data) - len(data) % 4, 4):
        if data[i : i + 4] == _MAGIC_BYTES:
            cflag = 1 if start == 0 else 2
            out.write(_MAGIC_BYTES + struct.pack("<I", cflag << 29 | (i - start)))
            out.write(data[start:i])  # a multiple of 4 long: no padding needed
            start = i + 4
    tail = len(data) - start
    out.write(_MAGIC_BYTES + struct.pack("<I", (3 if start else 0) << 29 | tail))
    out.write(data[start:])
    out.write(b"\0" * (-tail % 4))


def _read_record(f: BinaryIO, where: str) -> bytes:
    """Read the record at the file's position, joining multi-part records."""
    parts: list[bytes] = []
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise RecordIOError(f"{where}: truncated record header")
        magic, lrecord = struct.unpack("<II", head)
        if magic != MAGIC:
            raise RecordIOError(f"{where}: bad magic 0x{magic:08x} (expected 0x{MAGIC:08x})")
        cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
        data = f.read(length + (-length % 4))
        if len(data) < length:
            raise RecordIOError(f"{where}: truncated record ({len(data)} of {length} bytes)")
        parts.append(data[:length])
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts)
        if cflag not in (1, 2):
            raise RecordIOError(f"{where}: bad record flag {cflag}")


def read_index(idx_path: str | Path) -> dict[int, int]:
    """The `.idx` file: record key -> byte offset in the `.rec` file."""
    index: dict[int, int] = {}
    with open(idx_path, encoding="ascii") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                raise RecordIOError(
                    f"{idx_path}:{number}: expected 'key<TAB>offset', got {line.strip()!r}"
                ) from None
            index[key] = offset
    return index


class RecordReader:
    """Random and sequential access to a `.rec` file, through its `.idx` when there is one."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.index = read_index(idx_path) if idx_path is not None else None
        self._file: BinaryIO = open(self.rec_path, "rb")  # noqa: SIM115 - closed by close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def keys(self) -> list[int]:
        """The record keys in index order (raises without an index)."""
        if self.index is None:
            raise RecordIOError(f"{self.rec_path}: no .idx file, records have no keys")
        return list(self.index)

    def read_at(self, offset: int) -> bytes:
        """The record that starts at byte `offset`."""
        self._file.seek(offset)
        return _read_record(self._file, f"{self.rec_path}@{offset}")

    def read_key(self, key: int) -> bytes:
        """The record the index lists under `key`."""
        if self.index is None or key not in self.index:
            raise RecordIOError(f"{self.rec_path}: no record with key {key}")
        return self.read_at(self.index[key])

    def __iter__(self) -> Iterator[bytes]:
        """Every record in file order, ignoring the index."""
        self._file.seek(0)
        while True:
            offset = self._file.tell()
            if not self._file.read(1):
                return
            yield self.read_at(offset)


@dataclass(frozen=True)
class RecordImage:
    """An image inside a `.rec` file, read only when it is decoded (packs hold millions)."""

    rec_path: Path
    offset: int

    def encoded_bytes(self) -> bytes:
        with open(self.rec_path, "rb") as f:
            f.seek(self.offset)
            _, image = unpack(_read_record(f, str(self)))
        return image

    def __str__(self) -> str:
        return f"{self.rec_path}@{self.offset}"


def write_recordio(
    rec_path: str | Path,
    idx_path: str | Path | None,
    items: Iterable[tuple[int, bytes]] | Sequence[bytes],
) -> dict[int, int]:
    """Write records (`(key, record)` pairs, or bare records keyed 0, 1, ...) and their index.

    Records are raw bytes: build image records with `pack`. Returns key -> offset.
    """
    index: dict[int, int] = {}
    with open(rec_path, "wb") as out:
        for position, item in enumerate(items):
            key, record = item if isinstance(item, tuple) else (position, item)
            index[int(key)] = out.tell()
            _write_record(out, bytes(record))
    if idx_path is not None:
        with open(idx_path, "w", encoding="ascii") as f:
            f.writelines(f"{key}\t{offset}\n" for key, offset in index.items())
    return index
