"""A weights file cut into checksummed parts (for size limits on transfers and repositories),
and put back together only when every part and the whole match their SHA-256."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from swinface.atomic import atomic_path, atomic_write_text
from swinface.errors import SwinFaceError

PART_BYTES = 16 * 1024 * 1024 - 4096  # under 16 MiB with room for a file system's rounding
SUFFIX = ".parts.json"


class PartsError(SwinFaceError, ValueError):
    """A part that is missing, of the wrong size or content."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_file(
    path: str | Path, folder: str | Path, part_bytes: int = PART_BYTES, *, compress: bool = True
) -> Path:
    """Write `path` as `<name>.partNN` files of at most `part_bytes` in `folder`, and the
    manifest `<name>.parts.json` (sizes and SHA-256 of each part and of the whole).

    With `compress`, the parts are slices of the file's gzip stream (int8 weights shrink
    by a tenth to a fifth); the whole's size and SHA-256 are those of the file itself."""
    path, folder = Path(path), Path(folder)
    if part_bytes < 1:
        raise ValueError(f"part_bytes must be at least 1, not {part_bytes}")
    folder.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()
    stream = gzip.compress(data, compresslevel=9, mtime=0) if compress else data
    parts = []
    for number, start in enumerate(range(0, max(len(stream), 1), part_bytes)):
        chunk = stream[start : start + part_bytes]
        name = f"{path.name}.part{number:02d}"
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(chunk)
        parts.append({"file": name, "bytes": len(chunk), "sha256": _sha256(chunk)})
    manifest = folder / f"{path.name}{SUFFIX}"
    atomic_write_text(
        manifest,
        json.dumps(
            {
                "file": path.name,
                "bytes": len(data),
                "sha256": _sha256(data),
                "compression": "gzip" if compress else None,
                "parts": parts,
            },
            indent=1,
        )
        + "\n",
    )
    return manifest


def join_parts(manifest: str | Path, out: str | Path) -> Path:
    """Reassemble the parts `manifest` lists into `out`, checking every part and the whole."""
    manifest, out = Path(manifest), Path(out)
    try:
        spec = json.loads(manifest.read_text())
    except (OSError, ValueError) as err:
        raise PartsError(f"{manifest}: not a readable parts manifest ({err})") from None
    pieces = []
    for part in spec["parts"]:
        file = manifest.parent / part["file"]
        if not file.is_file():
            raise PartsError(f"{file}: missing part of {spec['file']}")
        data = file.read_bytes()
        if len(data) != part["bytes"] or _sha256(data) != part["sha256"]:
            raise PartsError(f"{file}: damaged part of {spec['file']} (size or SHA-256 differs)")
        pieces.append(data)
    whole = b"".join(pieces)
    if spec.get("compression") == "gzip":
        try:
            whole = gzip.decompress(whole)
        except (OSError, EOFError) as err:
            raise PartsError(f"{manifest}: the parts are not a whole gzip stream ({err})") from None
    elif spec.get("compression") is not None:
        raise PartsError(f"{manifest}: unknown compression {spec['compression']!r}")
    if len(whole) != spec["bytes"] or _sha256(whole) != spec["sha256"]:
        raise PartsError(f"{manifest}: the parts do not make {spec['file']} (SHA-256 differs)")
    with atomic_path(out) as tmp:
        tmp.write_bytes(whole)
    return out
