"""Atomic writes: a file or folder appears whole or not at all.

Every writer in swinface (ONNX export, native weights, face stores, training
checkpoints, downloads) goes through here, so that a crash, an exception or two
processes writing the same path at once never leave a half-written file where
a reader will trust it.

- Each write goes to a unique temporary name beside the target (same folder,
  so the final `os.replace` is atomic), never to a shared `.partial` that two
  writers could interleave in.
- On failure the temporary file or folder is removed; the target is untouched.
- `file_lock` serialises writers that meet on one path (torchrun ranks,
  several services); the OS drops the lock when its process dies.
- Files get the usual permissions (0666 less the umask), not `mkstemp`'s 0600.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "atomic_write_bytes", "atomic_write_text", "file_lock"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock for `path` (on `<path>.lock`) while the block runs.

    Where `fcntl` is missing (Windows) this does nothing; the atomic rename still
    protects the final file.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path to write; it replaces `path` when the block succeeds.

    The caller writes the temporary path by any means (a library's `save`, an
    exporter). If the block raises, the temporary file is removed and `path`
    keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: the writer produced no file")
        os.chmod(tmp, 0o666 & ~_umask())
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; it replaces the folder `path` when the block succeeds.

    An existing folder at `path` is moved aside and removed only after the new
    one is in place, so a crash leaves either the old folder or the new one.
    Callers decide beforehand whether replacing `path` is allowed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    tmp.mkdir()
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
