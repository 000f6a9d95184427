"""Fetch named weights into the cache, verify them, and resolve what the user asked for.

Every fetch lands in `<file>.partial` first and is moved into place with
`os.replace` only once its size and SHA-256 check out, so the cache never
holds a half-written file under its final name. When a spec does not pin a
hash, the hash seen at download time is written beside the file
(`<file>.sha256`) and later uses check against it, so a file changed on disk
is caught either way. Nothing here unpickles: files are only hashed and copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.resources
import logging
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from swinface.weights import registry
from swinface.weights.registry import Source, WeightsError, WeightsSpec

__all__ = ["WeightsError", "download", "file_sha256", "how_to_get", "import_weights"]
__all__ += ["latest_checkpoint", "list_imported", "resolve_weights", "verify_cached"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT = 60.0  # seconds of silence before a connection counts as failed
# An interrupted HTTP transfer is resumed this many times within one call, as
# long as each attempt makes progress; the `.partial` survives for later calls.
RESUME_ATTEMPTS = 3
USER_AGENT = "swinface-weights/1 (python urllib)"


class _SourceFailed(Exception):
    """This source could not deliver the file; the next one may."""


class _Interrupted(_SourceFailed):
    """The transfer stopped part way; the `.partial` file can be resumed."""


# ---------------------------------------------------------------- hashing and files


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, as lowercase hex."""
    hasher = hashlib.sha256()
    _hash_into(hasher, Path(path))
    return hasher.hexdigest()


def _hash_into(hasher: hashlib._Hash, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)


def _partial(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


def _sidecar(final: Path) -> Path:
    return final.with_name(final.name + ".sha256")


def _write_sidecar(final: Path, digest: str) -> None:
    # The `sha256sum` layout, so `sha256sum -c` can check the cache by hand.
    _sidecar(final).write_text(f"{digest}  {final.name}\n", encoding="utf-8")


def _read_sidecar(final: Path) -> str | None:
    try:
        text = _sidecar(final).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0].lower() if text else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _progress_bar(progress: bool, total: int | None, initial: int, desc: str) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not (progress and sys.stderr.isatty()),
        file=sys.stderr,
        leave=False,
    )


@contextlib.contextmanager
def _locked(final: Path) -> Iterator[None]:
    """Hold an exclusive lock for `final`, so processes started together (e.g. by
    torchrun) do not write the same `.partial` at once. The OS drops the lock if
    the process dies, so no stale lock can block later runs; the lock file is
    removed on the way out, so none is left in the cache."""
    try:
        import fcntl
    except ImportError:  # Windows: go without; the atomic rename still protects the final file
        yield
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = final.with_name(final.name + ".lock")
    while True:
        handle = open(lock, "a")  # noqa: SIM115 - closed below, after the unlink
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process fetching %s", final.name)
                fcntl.flock(handle, fcntl.LOCK_EX)
            # The holder before us may have removed the file we locked: lock the current one.
            try:
                current = os.stat(lock)
            except FileNotFoundError:
                continue
            if current.st_ino != os.fstat(handle.fileno()).st_ino:
                continue
            try:
                yield
            finally:
                lock.unlink(missing_ok=True)  # while still held: waiters see a new file
            return
        finally:
            handle.close()


def _spec(name_or_spec: str | WeightsSpec) -> WeightsSpec:
    return registry.get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec


# ---------------------------------------------------------------- messages


def how_to_get(spec: WeightsSpec, *, download_failed: bool = False) -> str:
    """The ways to get the weights `spec`, as lines to show the user.

    After a failed download (`download_failed`), the download is not offered again.
    """
    if is_shipped(spec):
        return _how_to_restore(spec, unpack_failed=download_failed)
    urls = [u for u in (s.human_url for s in spec.sources) if u]
    lines = [f"Other ways to get the weights {spec.name!r}:" if download_failed else ""]
    if not download_failed:
        lines[0] = f"To get the weights {spec.name!r}:"
        lines.append(f"  - download them: swinface weights download {spec.name}")
    if urls:
        lines.append(
            f"  - fetch {spec.filename} by hand from {' or '.join(urls)}, "
            f"then run: swinface weights import PATH --name {spec.name}"
        )
    lines.append("  - use a weights file you have: --weights PATH (Python: load_model(PATH))")
    return "\n".join(lines)


def is_shipped(spec: WeightsSpec) -> bool:
    """Weights that come in parts with the package: unpacked into the cache, never downloaded."""
    return bool(spec.sources) and all(s.kind == "parts" for s in spec.sources)


def _how_to_restore(spec: WeightsSpec, *, unpack_failed: bool) -> str:
    lines = [f"Other ways to get the weights {spec.name!r}:" if unpack_failed else ""]
    if unpack_failed:
        lines.append(
            "  - reinstall swinface to restore the parts shipped with it "
            "(pip install --force-reinstall --no-deps swinface, or git checkout in a clone)"
        )
    else:
        lines[0] = f"To get the weights {spec.name!r}:"
        lines.append(f"  - unpack them from the package: swinface weights download {spec.name}")
    if spec.name != registry.PUBLISHED_WEIGHTS:
        lines.append(
            f"  - use the published weights instead: --weights {registry.PUBLISHED_WEIGHTS}"
        )
    lines.append("  - use a weights file you have: --weights PATH (Python: load_model(PATH))")
    return "\n".join(lines)


# ---------------------------------------------------------------- cache check


def _cache_problem(spec: WeightsSpec, path: Path) -> str | None:
    """None when the cached file is intact, else what is wrong with it."""
    size = _size(path)
    if spec.size is not None and size != spec.size:
        return f"it has {size} bytes, expected {spec.size}"
    expected = spec.sha256 or _read_sidecar(path)
    if expected is None:
        return "no checksum was recorded for it"
    actual = file_sha256(path)
    if actual != expected:
        return f"its sha256 is {actual}, expected {expected}"
    return None


def verify_cached(name_or_spec: str | WeightsSpec) -> Path | None:
    """The cached file of `name_or_spec` if it is present and intact, else None."""
    spec = _spec(name_or_spec)
    path = registry.cached_path(spec)
    if path.is_file() and _cache_problem(spec, path) is None:
        return path
    return None


# ---------------------------------------------------------------- fetchers


def _fetch_http(spec: WeightsSpec, url: str, partial: Path, progress: bool) -> str:
    """Download `url` into `partial`, resuming it; returns the sha256 of the whole file."""
    error: _Interrupted | None = None
    attempts = max(1, RESUME_ATTEMPTS)
    for attempt in range(attempts):
        before = _size(partial)
        try:
            return _http_attempt(spec, url, partial, progress)
        except _Interrupted as err:
            error = err
            if _size(partial) <= before:
                break  # no progress: retrying at once would only fail again
            if attempt + 1 < attempts:
                log.info("download of %s interrupted (%s); resuming", spec.name, err)
    raise _SourceFailed(f"{error}; the partial file {partial} is kept and resumed next time")


def _http_attempt(spec: WeightsSpec, url: str, partial: Path, progress: bool) -> str:
    offset = _size(partial)
    if spec.size is not None and offset > spec.size:
        partial.unlink()  # longer than the real file: not a prefix of it
        offset = 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT
        )
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Nothing left past our offset (or the server will not say): start over.
            log.info("server refused to resume %s; starting from the beginning", spec.name)
            partial.unlink(missing_ok=True)
            return _http_attempt(spec, url, partial, progress)
        raise _SourceFailed(f"HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise _SourceFailed(f"cannot connect: {err.reason}") from err
    except (OSError, http.client.HTTPException) as err:
        raise _SourceFailed(f"cannot connect: {err}") from err

    with response:
        hasher = hashlib.sha256()
        total: int | None = None
        if offset and response.status == 206:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not m or int(m[1]) != offset:
                partial.unlink(missing_ok=True)
                raise _SourceFailed("the server resumed at the wrong place; the next try restarts")
            total = int(m[2]) if m[2] != "*" else None
            _hash_into(hasher, partial)  # the bytes we already have count toward the hash
            mode = "ab"
        else:
            if offset:
                log.info("server ignored the range request; restarting %s from zero", spec.name)
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        if total is None and remaining is not None:
            total = offset + remaining
        if spec.size is not None and total is not None and total != spec.size:
            raise _SourceFailed(f"the server offers {total} bytes, expected {spec.size}")

        received = 0
        with (
            open(partial, mode) as out,
            _progress_bar(progress, total, offset, spec.name) as bar,
        ):
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise _Interrupted(
                    f"connection lost after {offset + received} bytes: {err}"
                ) from err
        # http.client ends a short body quietly, so count the bytes ourselves.
        if remaining is not None and received < remaining:
            raise _Interrupted(f"connection closed after {offset + received} of {total} bytes")
    return hasher.hexdigest()


def _copy_hashing(source: Path, partial: Path, progress: bool, desc: str) -> str:
    """Copy `source` into `partial`, hashing on the way; returns the sha256."""
    hasher = hashlib.sha256()
    with (
        open(source, "rb") as src,
        open(partial, "wb") as out,
        _progress_bar(progress, _size(source), 0, desc) as bar,
    ):
        while chunk := src.read(CHUNK):
            out.write(chunk)
            hasher.update(chunk)
            bar.update(len(chunk))
    return hasher.hexdigest()


def _fetch_local(spec: WeightsSpec, source: Source, partial: Path, progress: bool) -> str:
    """Copy a `file://` or `package://` source into `partial`."""
    if source.kind == "file":
        path = Path(source.location)
        if not path.is_file():
            raise _SourceFailed(f"no such file: {path}")
        return _copy_hashing(path, partial, progress, spec.name)
    package, _, inner = source.location.partition("/")
    try:
        resource = importlib.resources.files(package).joinpath(inner)
        if not resource.is_file():
            raise _SourceFailed(f"{inner} is not in the installed package {package}")
        with importlib.resources.as_file(resource) as path:
            return _copy_hashing(path, partial, progress, spec.name)
    except ModuleNotFoundError as err:
        raise _SourceFailed(f"package {package} is not installed") from err


def _fetch_gdrive(spec: WeightsSpec, source: Source, partial: Path, progress: bool) -> str:
    """Fetch a Google Drive file (or the named file of a Drive folder) into `partial`."""
    try:
        import gdown  # only Drive sources need it
    except ImportError as err:
        raise _SourceFailed("Google Drive sources need the gdown package") from err
    quiet = not (progress and sys.stderr.isatty())
    # A private temporary folder inside the cache: same file system, so the
    # final move is a rename, and nothing half-fetched is left under a real name.
    tmp = Path(tempfile.mkdtemp(prefix=".gdown-", dir=partial.parent))
    try:
        file_id = source.location
        if source.kind == "gdrive-folder":
            listing = gdown.download_folder(
                id=source.location, output=str(tmp), quiet=quiet, skip_download=True
            )
            if not listing:
                raise _SourceFailed(f"cannot list the Google Drive folder {source.location}")
            found = [e for e in listing if Path(e.path).name == source.filename]
            if not found:
                names = ", ".join(Path(e.path).name for e in listing)
                raise _SourceFailed(f"no {source.filename} in the Drive folder; it holds {names}")
            file_id = found[0].id
        target = tmp / source.filename
        gdown.download(id=file_id, output=str(target), quiet=quiet)
        if not target.is_file():
            raise _SourceFailed("Google Drive sent no file (download quota exceeded?)")
        os.replace(target, partial)
    except _SourceFailed:
        raise
    except Exception as err:  # gdown raises its own, requests' and parsing errors alike
        raise _SourceFailed(f"{type(err).__name__}: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return file_sha256(partial)


def _fetch_parts(spec: WeightsSpec, source: Source, partial: Path) -> str:
    """Reassemble the parts a manifest lists into `partial`, every part and the whole checked.

    A missing or damaged part is not a source that failed (no other source holds these
    parts): it raises WeightsError at once, naming the part.
    """
    from swinface.weights.parts import PartsError, join_parts

    try:
        join_parts(source.location, partial)
    except PartsError as err:
        raise WeightsError(
            f"the weights {spec.name!r} cannot be unpacked: {err}.\n"
            + how_to_get(spec, download_failed=True)
        ) from None
    return file_sha256(partial)


def _fetch(spec: WeightsSpec, source: Source, partial: Path, progress: bool) -> str:
    if source.kind == "parts":
        return _fetch_parts(spec, source, partial)
    if source.kind == "http":
        return _fetch_http(spec, source.location, partial, progress)
    if source.kind in ("gdrive-folder", "gdrive-file"):
        return _fetch_gdrive(spec, source, partial, progress)
    return _fetch_local(spec, source, partial, progress)


def _check_fetched(spec: WeightsSpec, where: str, partial: Path, digest: str) -> None:
    """Raise WeightsError (deleting `partial`) when the fetched file is not the one expected."""
    problem = None
    if spec.size is not None and _size(partial) != spec.size:
        problem = f"size mismatch: expected {spec.size} bytes, got {_size(partial)}"
    elif spec.sha256 is not None and digest != spec.sha256:
        problem = f"checksum mismatch: expected sha256 {spec.sha256}, got {digest}"
    if problem:
        partial.unlink(missing_ok=True)
        raise WeightsError(
            f"weights {spec.name!r} from {where}: {problem}; the file was deleted.\n"
            + how_to_get(spec, download_failed=True)
        )


# ---------------------------------------------------------------- public API


def download(
    name_or_spec: str | WeightsSpec, *, force: bool = False, progress: bool = True
) -> Path:
    """Fetch named weights into the cache (if not there and intact) and return their path.

    Sources are tried in order; a source that fails (404, no connection, ...)
    passes to the next. A file whose checksum does not match raises WeightsError.
    """
    spec = _spec(name_or_spec)
    final = registry.cached_path(spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(final)
    with _locked(final):
        if final.is_file() and not force:
            problem = _cache_problem(spec, final)
            if problem is None:
                return final
            again = "unpacking" if is_shipped(spec) else "downloading"
            log.warning("cached %s is damaged or outdated (%s); %s it again", final, problem, again)
        failures: list[tuple[str, str]] = []
        for source in spec.sources:
            log.info("fetching %s from %s", spec.name, source.text)
            try:
                digest = _fetch(spec, source, partial, progress)
            except _SourceFailed as err:
                # Said once, in the error below, with every source's reason.
                log.info("could not fetch %s from %s: %s", spec.name, source.text, err)
                failures.append((source.text, str(err)))
                continue
            _check_fetched(spec, source.text, partial, digest)
            os.replace(partial, final)
            _write_sidecar(final, digest)
            if spec.sha256 is None:
                log.info("%s: sha256 %s (recorded in %s)", spec.name, digest, _sidecar(final))
            return final
    _remove_if_empty(final.parent)
    tried = "\n".join(f"  - {text}: {err}" for text, err in failures)
    raise WeightsError(
        f"could not download the weights {spec.name!r}; every source failed:\n{tried}\n"
        + how_to_get(spec, download_failed=True)
    )


def _remove_if_empty(folder: Path) -> None:
    """Leave no empty folder behind in the cache after a failed fetch."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def imported_dir() -> Path:
    """Where weights imported without a registered name live: `<cache>/imported/<name>/`."""
    return registry.cache_dir() / "imported"


def imported_name(path: str | Path) -> str:
    """The name a file imported without `--name` is known by: its stem, made a valid name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-._") or "weights"
    return stem if stem[0].isalnum() else f"w{stem}"


def list_imported() -> dict[str, Path]:
    """Weights imported without a registered name: name -> cached file."""
    found = {}
    folder = imported_dir()
    if folder.is_dir():
        for sub in sorted(folder.iterdir()):
            files = [f for f in sub.glob("*") if f.is_file() and _sidecar(f).is_file()]
            if sub.is_dir() and len(files) == 1:
                found[sub.name] = files[0]
    return found


@dataclass(frozen=True)
class Imported:
    """Where an imported file went, under which name, and what was checked."""

    path: Path
    name: str
    spec: WeightsSpec | None  # the registered weights it became, if any
    sha256: str
    verified: bool  # checked against a hash pinned by the registry


def import_weights(path: str | Path, name: str | None = None, *, force: bool = False) -> Imported:
    """Copy a weights file fetched by hand into the cache, under a name usable as `--weights`.

    With `name` (or when the file has a registered spec's file name), it
    becomes those registered weights, checked against the registry's hash
    where one is pinned. Otherwise it is known by its stem (`imported_name`).
    The hash seen now is recorded beside the copy and checked on every later
    use; importing a different file under a name that already has one is
    refused unless `force` (trust on first use). The user's file is only read.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise WeightsError(f"cannot import {source}: no such file")
    if name is None:
        by_filename = [s for s in registry.list_specs() if s.filename == source.name]
        name = by_filename[0].name if by_filename else None
    spec = registry.get_spec(name) if name is not None else None
    if spec is not None:
        final, name = registry.cached_path(spec), spec.name
    else:
        name = imported_name(source)
        if name in {s.name for s in registry.list_specs()}:
            raise WeightsError(
                f"cannot import {source} as {name!r}: that is a registered name. Pass "
                f"--name {name} if it is those weights, or rename the file"
            )
        final = imported_dir() / name / source.name
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(final)
    with _locked(final):
        # What is already known under this name (an imported name holds one file).
        before = (
            [final]
            if spec is not None
            else [f for f in final.parent.glob("*") if _sidecar(f).is_file()]
        )
        before = [f for f in before if f.is_file()]
        recorded = _read_sidecar(before[0]) if before else None
        if final.exists() and final.samefile(source):
            digest = file_sha256(final)  # importing the cached file itself: just verify
            if spec is not None:
                _check_import(spec, source, digest)
        else:
            digest = _copy_hashing(source, partial, progress=False, desc=source.name)
            try:
                if spec is not None:
                    _check_import(spec, source, digest)
                if recorded is not None and recorded != digest and not force:
                    raise WeightsError(
                        f"{source} differs from the weights already imported as {name!r} "
                        f"(sha256 {digest}, recorded {recorded}); pass --force to replace them"
                    )
            except WeightsError:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, final)
            for old in before:
                if old != final:
                    old.unlink(missing_ok=True)
                    _sidecar(old).unlink(missing_ok=True)
        _write_sidecar(final, digest)
    log.info("imported %s as %s", source, final)
    verified = spec is not None and spec.sha256 is not None
    return Imported(final, name, spec, digest, verified)


def _check_import(spec: WeightsSpec, source: Path, digest: str) -> None:
    if spec.sha256 is not None and digest != spec.sha256:
        raise WeightsError(
            f"{source} is not the weights {spec.name!r}: expected sha256 {spec.sha256}, "
            f"got {digest}"
        )
    if spec.size is not None and _size(source) != spec.size:
        raise WeightsError(
            f"{source} is not the weights {spec.name!r}: expected {spec.size} bytes, "
            f"got {_size(source)}"
        )


def latest_checkpoint(folder: str | Path) -> Path:
    """The weights file of the newest checkpoint in a training run or its checkpoints folder.

    Accepts `RUN/`, `RUN/checkpoints/` or one `RUN/checkpoints/step_N/`; follows
    the `latest` pointer when it names a complete checkpoint, else takes the
    highest step that holds `model.safetensors`.
    """
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return folder / "model.safetensors"
    checkpoints = folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder
    pointer = checkpoints / "latest"
    if pointer.is_file():
        named = checkpoints / pointer.read_text(encoding="utf-8").strip() / "model.safetensors"
        if named.is_file():
            return named
    steps = sorted(
        (p for p in checkpoints.glob("step_*") if (p / "model.safetensors").is_file()),
        key=lambda p: int(re.sub(r"\D", "", p.name) or 0),
    )
    if not steps:
        raise WeightsError(
            f"{folder}: a folder, but no checkpoint in it (looked for model.safetensors, "
            "checkpoints/latest and checkpoints/step_*/model.safetensors)"
        )
    return steps[-1] / "model.safetensors"


def _imported(name: str) -> Path | None:
    """The intact file imported under `name`, None when there is none; WeightsError if changed."""
    path = list_imported().get(name)
    if path is None:
        return None
    if file_sha256(path) != _read_sidecar(path):
        raise WeightsError(
            f"the weights imported as {name!r} ({path}) changed on disk since they were "
            f"imported; import them again: swinface weights import PATH --force"
        )
    return path


def resolve_weights(
    source: str | os.PathLike[str], *, download: bool = True
) -> tuple[Path, WeightsSpec | None]:
    """A weights file, training run folder or name to a local file (and its spec, if registered).

    A folder gives its latest checkpoint (`latest_checkpoint`). A registered
    name not yet cached is downloaded unless `download` is False, in which case
    (or when the download fails) the WeightsError says how to get it; weights
    shipped in parts with the package are unpacked either way. Names of
    files imported without a registered name (`swinface weights import`) work too.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path, None
    if path.is_dir():
        return latest_checkpoint(path), None
    name = os.fspath(source)
    try:
        spec = registry.get_spec(name)
    except WeightsError:
        if name in registry.registered_names():
            raise  # registered, but not available here: its error says why
        imported = _imported(name)
        if imported is not None:
            return imported, None
        known = ", ".join([s.name for s in registry.list_specs()] + list(list_imported()))
        raise WeightsError(
            f"{name!r} is neither an existing weights file or folder nor a weights name "
            f"(known: {known or '(none)'}; see `swinface weights list`)"
        ) from None
    cached = verify_cached(spec)
    if cached is not None:
        return cached, spec
    # Unpacking the parts shipped with the package is no download: it needs no network.
    if not download and not is_shipped(spec):
        present = registry.cached_path(spec).is_file()
        state = "are cached but damaged" if present else "are not in the cache"
        raise WeightsError(
            f"weights {spec.name!r} {state} ({registry.cached_path(spec)}) and downloading "
            f"is off.\n" + how_to_get(spec)
        )
    return _download(spec), spec


_download = download  # `resolve_weights` has a parameter named `download`
