"""A compact, transportable bundle of face stores: JPEG or WebP faces, exact labels and targets.

Layout of a bundle folder::

    manifest.json        parts (file, bytes, sha256), stores (name, count, faces codec,
                         sha256 of the decoded label and target arrays)
    bundle.part000 ...   one uncompressed tar stream cut into parts of at most `part_mib` MiB

Inside the tar stream, per store ``NAME/``: ``meta.json``, one ``labels/<label>.npy``
per label and the store's ``targets/`` folder byte for byte, ``faces.bin`` (the
encoded faces one after another) and ``faces_index.npy`` (N + 1 byte offsets).
A face whose three channels are equal (grey sources such as FER2013) is encoded
as single-channel grey. Only regular files with plain relative names are read
back, and every array with ``allow_pickle=False``: nothing in a bundle can run code.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from swinface.atomic import atomic_dir
from swinface.data.store import FACE_SHAPE, StoreWriter, _check_replaceable, open_store
from swinface.data.targets import TARGETS, open_targets
from swinface.errors import SwinFaceError

MANIFEST = "manifest.json"
BUNDLE_VERSION = 1
CODECS = {"jpeg": ".jpg", "webp": ".webp"}


class BundleError(SwinFaceError, ValueError):
    """A bundle that is missing, damaged or inconsistent."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """One sha256 over named arrays: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def store_digests(path: str | Path) -> tuple[str, str | None]:
    """sha256 of a store's label arrays and of its target arrays (None without targets)."""
    store = open_store(path)
    labels = _digest(store.labels)
    if not (Path(path) / TARGETS / "meta.json").is_file():
        return labels, None
    targets = open_targets(store)
    arrays = {f"ensemble/{k}": v for k, v in targets.ensemble.items()}
    for teacher, tasks in targets.teachers.items():
        arrays.update({f"{teacher}/{k}": v for k, v in tasks.items()})
    return labels, _digest(arrays)


# ---------------------------------------------------------------- face codec


def is_grey(face: np.ndarray) -> bool:
    return bool((face[..., 0] == face[..., 1]).all() and (face[..., 1] == face[..., 2]).all())


@functools.cache
def _unstretch(size: int) -> np.ndarray:
    """(size, 112): the least-squares inverse of cv2's linear enlargement from `size` to 112.

    A face that `prepare` enlarged from `size` comes back (nearly) as its source,
    which `decode_face` enlarges again the same way: far closer than an area shrink.
    """
    import cv2

    full = FACE_SHAPE[0]
    columns = [
        cv2.resize(
            np.eye(size, dtype=np.float32)[:, [j]], (1, full), interpolation=cv2.INTER_LINEAR
        )
        for j in range(size)
    ]
    return np.linalg.pinv(np.hstack(columns).astype(np.float64))


def _shrink(image: np.ndarray, size: int) -> np.ndarray:
    inverse = _unstretch(size)
    return np.clip(np.rint(inverse @ image.astype(np.float64) @ inverse.T), 0, 255).astype(np.uint8)


def small_crop_store(store) -> bool:
    """Whether a store's faces were enlarged from small grey crops by `prepare --aligned`
    (FER2013's 48x48), so that `--grey-size` can shrink them back without loss. Decided
    by the store's dataset, never by a face's colour: a grey photo in UTKFace is a full face."""
    meta = store.meta
    return bool(meta.get("aligned_mode")) and str(meta.get("dataset_format", "")).startswith(
        "fer2013"
    )


def encode_face(
    face: np.ndarray, quality: int, codec: str = "jpeg", grey_size: int | None = None
) -> bytes:
    """Encode one RGB uint8 face; grey faces (equal channels) as one channel.

    With `grey_size`, grey faces are first shrunk to that size (FER2013's
    native 48), and `decode_face` enlarges them back as `swinface prepare` did.
    """
    import cv2

    grey = is_grey(face)
    image = face[..., 0] if grey else cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
    if grey and grey_size and grey_size < FACE_SHAPE[0]:
        image = _shrink(image, grey_size)
    flag = cv2.IMWRITE_JPEG_QUALITY if codec == "jpeg" else cv2.IMWRITE_WEBP_QUALITY
    ok, data = cv2.imencode(CODECS[codec], np.ascontiguousarray(image), [flag, int(quality)])
    if not ok:
        raise BundleError(f"could not encode a face as {codec}")
    return data.tobytes()


def decode_face(data: bytes, where: str) -> np.ndarray:
    """Decode one face back to RGB uint8 112x112x3."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BundleError(f"{where}: a face could not be decoded")
    if image.ndim == 2:
        if image.shape[0] == image.shape[1] < FACE_SHAPE[0]:
            # the same enlargement as `resize_face` gives a small grey crop in `prepare`
            image = cv2.resize(image, FACE_SHAPE[:2], interpolation=cv2.INTER_LINEAR)
        image = np.repeat(image[..., None], 3, axis=2)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape != FACE_SHAPE or image.dtype != np.uint8:
        raise BundleError(f"{where}: decoded face is {image.dtype} {image.shape}")
    return image


# ---------------------------------------------------------------- parts


class _PartWriter(io.RawIOBase):
    """A write-only stream cut into files of at most `limit` bytes, hashed as written."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder, self.limit = folder, limit
        self.parts: list[dict] = []
        self._file = None
        self._hash = None

    def writable(self) -> bool:
        return True

    def _roll(self) -> None:
        self._close_part()
        name = f"bundle.part{len(self.parts):03d}"
        self.parts.append({"file": name, "bytes": 0})
        self._file = open(self.folder / name, "wb")  # noqa: SIM115 (closed in _close_part)
        self._hash = hashlib.sha256()

    def _close_part(self) -> None:
        if self._file is not None:
            self._file.close()
            self.parts[-1]["sha256"] = self._hash.hexdigest()
            self._file = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            if self._file is None or self.parts[-1]["bytes"] >= self.limit:
                self._roll()
            room = self.limit - self.parts[-1]["bytes"]
            chunk = view[done : done + room]
            self._file.write(chunk)
            self._hash.update(chunk)
            self.parts[-1]["bytes"] += len(chunk)
            done += len(chunk)
        return done

    def close(self) -> None:
        self._close_part()
        super().close()


class _PartReader(io.RawIOBase):
    """Reads checked parts one after another as one stream."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)
        self._index = 0
        self._file = open(self.files[0], "rb") if self.files else None  # noqa: SIM115

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._file is not None:
            n = self._file.readinto(buffer)
            if n:
                return n
            self._file.close()
            self._index += 1
            if self._index < len(self.files):
                self._file = open(self.files[self._index], "rb")  # noqa: SIM115
            else:
                self._file = None
        return 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle: str | Path) -> dict:
    file = Path(bundle) / MANIFEST
    if not file.is_file():
        raise BundleError(
            f"{file}: not found; {bundle} is not a bundle from `swinface bundle pack`"
        )
    manifest = json.loads(file.read_text())
    if manifest.get("version", 0) > BUNDLE_VERSION:
        raise BundleError(
            f"{file}: bundle version {manifest['version']} is newer than this swinface reads"
        )
    return manifest


def check_parts(bundle: str | Path, manifest: dict | None = None) -> list[Path]:
    """Every part present, of the right size and sha256; returns their paths in order."""
    bundle = Path(bundle)
    manifest = manifest or read_manifest(bundle)
    files = []
    for part in manifest["parts"]:
        file = bundle / part["file"]
        again = "copy it again from where the bundle was packed"
        if not file.is_file():
            raise BundleError(f"{file}: bundle part missing; {again}")
        size = file.stat().st_size
        if size != part["bytes"]:
            raise BundleError(
                f"{file}: bundle part is {size} bytes, the manifest says {part['bytes']}; {again}"
            )
        if _sha256_file(file) != part["sha256"]:
            raise BundleError(f"{file}: bundle part is damaged (sha256 differs); {again}")
        files.append(file)
    return files


# ---------------------------------------------------------------- pack


@dataclass
class PackReport:
    path: Path
    parts: list[dict]
    stores: list[dict]
    seconds: float

    @property
    def total_bytes(self) -> int:
        return sum(p["bytes"] for p in self.parts)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


def pack(
    stores: Sequence[str | Path],
    out: str | Path,
    *,
    part_mib: float = 60.0,
    quality: int = 90,
    codec: str = "jpeg",
    grey_size: int | None = None,
    overwrite: bool = False,
) -> PackReport:
    """Pack face `stores` (with their targets, if any) into the bundle folder `out`."""
    start = time.perf_counter()
    out = Path(out)
    if codec not in CODECS:
        raise BundleError(f"codec {codec!r}: use one of {', '.join(CODECS)}")
    if grey_size is not None and not 8 <= grey_size <= FACE_SHAPE[0]:
        raise BundleError(f"grey size {grey_size}: must be between 8 and {FACE_SHAPE[0]}")
    if not 1 <= quality <= 100:
        raise BundleError(f"quality {quality}: must be between 1 and 100")
    limit = int(part_mib * 2**20)
    if limit < 1024:
        raise BundleError(f"--part-mib {part_mib}: parts must hold at least 1 KiB")
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise BundleError(f"{out}: exists and is not a bundle; refusing to replace it")
        if not overwrite:
            raise BundleError(f"{out}: a bundle already exists; pass --overwrite to replace it")
    names = [Path(s).resolve().name for s in stores]
    if len(set(names)) != len(names):
        raise BundleError(f"stores with the same folder name cannot share a bundle: {names}")
    opened = [open_store(s) for s in stores]  # every store checked before any work
    entries = []
    with atomic_dir(out) as tmp:
        writer = _PartWriter(tmp, limit)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, store in zip(names, opened, strict=True):
                labels_sha, targets_sha = store_digests(store.path)
                _add_bytes(tar, f"{name}/meta.json", (store.path / "meta.json").read_bytes())
                for label, values in store.labels.items():
                    _add_bytes(tar, f"{name}/labels/{label}.npy", _npy_bytes(values))
                folder = store.path / TARGETS
                if targets_sha is not None:
                    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                        rel = file.relative_to(folder).as_posix()
                        _add_bytes(tar, f"{name}/{TARGETS}/{rel}", file.read_bytes())
                offsets = np.zeros(len(store) + 1, np.int64)
                grey = 0
                store_grey_size = grey_size if small_crop_store(store) else None
                with tempfile.TemporaryFile() as blob:
                    for i in range(len(store)):
                        face = np.asarray(store.faces[i])
                        data = encode_face(face, quality, codec, store_grey_size)
                        grey += int(is_grey(face))
                        blob.write(data)
                        offsets[i + 1] = offsets[i] + len(data)
                    blob.seek(0)
                    info = tarfile.TarInfo(f"{name}/faces.bin")
                    info.size, info.mode = int(offsets[-1]), 0o644
                    tar.addfile(info, blob)
                _add_bytes(tar, f"{name}/faces_index.npy", _npy_bytes(offsets))
                entries.append(
                    {
                        "name": name,
                        "count": len(store),
                        "grey_faces": grey,
                        "grey_size": store_grey_size,
                        "face_bytes": int(offsets[-1]),
                        "labels_sha256": labels_sha,
                        "targets_sha256": targets_sha,
                    }
                )
        writer.close()
        manifest = {
            "version": BUNDLE_VERSION,
            "codec": codec,
            "quality": quality,
            "grey_size": grey_size,
            "part_limit_bytes": limit,
            "parts": writer.parts,
            "stores": entries,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return PackReport(out, writer.parts, entries, time.perf_counter() - start)


# ---------------------------------------------------------------- unpack


def _safe_member(member: tarfile.TarInfo, bundle: Path) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if not member.isfile() or path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
        raise BundleError(f"{bundle}: unexpected entry {member.name!r} in the bundle stream")
    return path


def unpack(bundle: str | Path, stores_dir: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Check every part, then write each store of `bundle` (with its targets) under `stores_dir`."""
    bundle, stores_dir = Path(bundle), Path(stores_dir)
    manifest = read_manifest(bundle)
    files = check_parts(bundle, manifest)
    entries = {s["name"]: s for s in manifest["stores"]}
    for name in entries:
        if PurePosixPath(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{bundle / MANIFEST}: bad store name {name!r}")
        try:
            _check_replaceable(stores_dir / name, overwrite)
        except SwinFaceError as err:
            raise BundleError(
                f"{stores_dir / name}: a store already exists; pass --overwrite to replace it"
            ) from err
    stores_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(dir=stores_dir, prefix=".unpack-") as scratch:
        scratch = Path(scratch)
        with _PartReader(files) as reader, tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                rel = _safe_member(member, bundle)
                if rel.parts[0] not in entries:
                    raise BundleError(f"{bundle}: entry {member.name!r} belongs to no listed store")
                target = scratch.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
        for name, entry in entries.items():
            written.append(_write_store(scratch / name, stores_dir / name, entry, overwrite))
    return written


def _write_store(src: Path, path: Path, entry: dict, overwrite: bool) -> Path:
    import shutil

    from swinface.data.store import LABELS

    meta = json.loads((src / "meta.json").read_text())
    offsets = np.load(src / "faces_index.npy", allow_pickle=False)
    count = entry["count"]
    if len(offsets) != count + 1 or meta.get("count") != count:
        raise BundleError(
            f"{path.name}: the bundle holds {len(offsets) - 1} faces, expected {count}"
        )
    writer = StoreWriter(path, capacity=count, overwrite=overwrite)
    try:
        with open(src / "faces.bin", "rb") as blob:
            for i in range(count):
                blob.seek(int(offsets[i]))
                data = blob.read(int(offsets[i + 1] - offsets[i]))
                writer.add(decode_face(data, f"{path.name} face {i}"), meta["sources"][i])
        for label in LABELS:
            file = src / "labels" / f"{label}.npy"
            if file.is_file():
                values = np.load(file, allow_pickle=False)
                if values.shape != writer.labels[label].shape:
                    raise BundleError(f"{path.name}: label {label} has shape {values.shape}")
                writer.labels[label] = values
        if (src / TARGETS).is_dir():
            shutil.copytree(src / TARGETS, writer.tmp / TARGETS)
        writer.close({k: v for k, v in meta.items() if k not in ("count", "sources")})
    except BaseException:
        writer.abort()
        raise
    labels_sha, targets_sha = store_digests(path)
    if labels_sha != entry["labels_sha256"] or targets_sha != entry["targets_sha256"]:
        raise BundleError(f"{path}: unpacked labels or targets differ from the packed store")
    return path
