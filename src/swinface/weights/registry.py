"""The registry of named weights and where they live in the local cache.

Each entry (a `WeightsSpec`) names a weights file, the sources it can be
fetched from, and what is known about it (hash, size, licence). A source is a
string; these forms are understood:

- ``https://...`` / ``http://...``: a plain download (resumable);
- ``https://drive.google.com/drive/folders/<id>`` or ``gdrive-folder:<id>/<filename>``:
  the file ``filename`` inside a Google Drive folder (fetched with gdown);
- ``https://drive.google.com/file/d/<id>/...`` or ``gdrive:<id>``: a Google Drive file;
- ``package://<package>/<path>``: a file shipped inside an installed Python package;
- ``file:///path``: a local file or a mounted mirror;
- ``parts:/path/NAME.parts.json``: a file cut into checksummed parts (`weights.parts`),
  reassembled into the cache; how the default weights ship inside the package.

Most entries are fixed at import. The default weights shipped with the package
(`swinface-default`) are an entry made on demand from the parts manifest found
in the package (or where `$SWINFACE_DEFAULT_WEIGHTS` points), so their hash and
size are the manifest's; `default_weights()` names them when they are present and
the published checkpoint otherwise.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from swinface.errors import SwinFaceError

PUBLISHED_WEIGHTS = "swinface-published"
SHIPPED_WEIGHTS = "swinface-default"
# The registered weights used when the package ships none; `default_weights()` says which
# weights a call without any really uses.
DEFAULT_WEIGHTS = PUBLISHED_WEIGHTS
HOME_ENV = "SWINFACE_HOME"
# A folder (or one `.parts.json` manifest) holding default weights in parts, used instead
# of those inside the package: for trying new default weights before they ship, and tests.
SHIPPED_ENV = "SWINFACE_DEFAULT_WEIGHTS"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "default"
PARTS_SUFFIX = ".parts.json"  # as `weights.parts` writes it (kept here: this module stays light)

SourceKind = Literal["http", "gdrive-folder", "gdrive-file", "package", "file", "parts"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DRIVE_FOLDER = re.compile(r"^https?://drive\.google\.com/drive/(?:u/\d+/)?folders/([\w-]+)")
_DRIVE_FILE = re.compile(r"^https?://drive\.google\.com/(?:file/d/([\w-]+)|.*[?&]id=([\w-]+))")


class WeightsError(SwinFaceError):
    """Named weights that cannot be found, fetched or verified, and how to get them."""


@dataclass(frozen=True)
class Source:
    """One parsed place a weights file can be fetched from."""

    kind: SourceKind
    location: str  # URL, Drive id, "package/path inside it", or a local path
    filename: str  # the file's name at that place (Drive folders hold several)
    text: str  # the source as written in the spec, for messages

    @property
    def human_url(self) -> str | None:
        """Where a person can fetch the file with a browser (None for package data)."""
        if self.kind == "gdrive-folder":
            return f"https://drive.google.com/drive/folders/{self.location}"
        if self.kind == "gdrive-file":
            return f"https://drive.google.com/file/d/{self.location}"
        if self.kind in ("package", "parts"):
            return None
        return self.text


@dataclass(frozen=True)
class WeightsSpec:
    """A named weights file: where to fetch it and what is known about it."""

    name: str
    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None  # None: unknown; the hash seen at download time is kept beside it
    size: int | None = None
    description: str = ""
    license: str = ""
    architecture: str = "swinface_t"
    format: Literal["published", "native"] = "published"
    verify_threshold: float | None = None
    gdrive_folder: str | None = None  # a Drive folder id holding `filename`

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"weights name {self.name!r}: use letters, digits, '.', '_' and '-'")
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"{self.name}: filename {self.filename!r} must be a plain file name")
        # Accept a list for convenience; store a tuple so the spec stays hashable.
        object.__setattr__(self, "urls", tuple(self.urls))
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())
            if not _SHA256.match(self.sha256):
                raise ValueError(f"{self.name}: sha256 must be 64 hex digits, got {self.sha256!r}")
        if self.format not in ("published", "native"):
            raise ValueError(f"{self.name}: format must be 'published' or 'native'")
        if not self.urls and not self.gdrive_folder:
            raise ValueError(f"{self.name}: give at least one source (urls or gdrive_folder)")
        for url in self.urls:
            parse_source(url, self.filename)  # reject a malformed source at registration

    @property
    def sources(self) -> list[Source]:
        """The sources to try, in order: `urls`, then the Drive folder if not among them."""
        found = [parse_source(url, self.filename) for url in self.urls]
        folder = self.gdrive_folder
        if folder and not any(s.kind == "gdrive-folder" and s.location == folder for s in found):
            found.append(parse_source(f"gdrive-folder:{folder}/{self.filename}", self.filename))
        return found


def parse_source(text: str, filename: str) -> Source:
    """Parse one source string (see the module docstring); ValueError when not understood."""
    if m := _DRIVE_FOLDER.match(text):
        return Source("gdrive-folder", m[1], filename, text)
    if m := _DRIVE_FILE.match(text):
        return Source("gdrive-file", m[1] or m[2], filename, text)
    if text.startswith("gdrive-folder:"):
        folder, _, name = text[len("gdrive-folder:") :].partition("/")
        if folder:
            return Source("gdrive-folder", folder, name or filename, text)
    elif text.startswith("gdrive:"):
        if ident := text[len("gdrive:") :]:
            return Source("gdrive-file", ident, filename, text)
    elif text.startswith("package://"):
        package, _, inner = text[len("package://") :].partition("/")
        if package and inner:
            return Source("package", f"{package}/{inner}", Path(inner).name, text)
    elif text.startswith("file://"):
        path = urllib.request.url2pathname(urllib.parse.urlparse(text).path)
        return Source("file", path, Path(path).name, text)
    elif text.startswith(("http://", "https://")):
        return Source("http", text, filename, text)
    elif text.startswith("parts:") and (manifest := text[len("parts:") :]):
        return Source("parts", manifest, filename, text)
    raise ValueError(
        f"weights source {text!r} not understood: use https://, gdrive-folder:ID/FILE, "
        "gdrive:ID, package://PACKAGE/PATH, file://PATH or parts:MANIFEST"
    )


# A name maps to its spec, or to a function that makes it when asked (raising WeightsError,
# saying why, when those weights are not available in this installation).
_REGISTRY: dict[str, WeightsSpec | Callable[[], WeightsSpec]] = {}


def register(spec: WeightsSpec) -> WeightsSpec:
    """Add `spec` to the registry; a name can be registered once."""
    _add(spec.name, spec)
    return spec


def register_provider(name: str, make: Callable[[], WeightsSpec]) -> None:
    """Register `name` as weights whose spec `make()` builds when asked (e.g. from a
    manifest that may be absent); `make` raises WeightsError when they are unavailable."""
    _add(name, make)


def _add(name: str, entry: WeightsSpec | Callable[[], WeightsSpec]) -> None:
    if name in _REGISTRY:
        raise ValueError(f"weights {name!r} are already registered")
    _REGISTRY[name] = entry


def get_spec(name: str) -> WeightsSpec:
    """The spec registered as `name`; WeightsError listing the known names otherwise,
    or saying why weights registered here are not available."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY) or "(none)"
        raise WeightsError(f"no weights registered as {name!r}; registered: {known}") from None
    return entry if isinstance(entry, WeightsSpec) else entry()


def registered_names() -> list[str]:
    """Every registered name, available or not, in registration order."""
    return list(_REGISTRY)


def list_specs() -> list[WeightsSpec]:
    """Every available registered spec, in registration order."""
    specs = []
    for name in _REGISTRY:
        try:
            specs.append(get_spec(name))
        except WeightsError:
            continue  # registered, but not in this installation (see `registered_names`)
    return specs


def cache_dir() -> Path:
    """The weights cache: `$SWINFACE_HOME/weights`, else the platform's user cache folder."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "weights"
    return Path(platformdirs.user_cache_dir("swinface")) / "weights"


def cached_path(spec: WeightsSpec | str) -> Path:
    """Where the weights `spec` live once downloaded (the file may not exist yet)."""
    if isinstance(spec, str):
        spec = get_spec(spec)
    return cache_dir() / spec.name / spec.filename


# ---------------------------------------------------------------- the shipped default


def shipped_manifest() -> Path | None:
    """The parts manifest of the default weights: the one `*.parts.json` in the folder
    `$SWINFACE_DEFAULT_WEIGHTS` names (or that file itself), else in the package's
    `assets/default/`; None when the package ships none. WeightsError when the
    variable is set but names no manifest, or a folder holds several."""
    given = os.environ.get(SHIPPED_ENV)
    where = Path(given).expanduser() if given else SHIPPED_DIR
    if where.is_file() and where.name.endswith(PARTS_SUFFIX):
        return where
    found = sorted(where.glob(f"*{PARTS_SUFFIX}")) if where.is_dir() else []
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise WeightsError(f"{where}: several weights manifests ({names}); keep one")
    if not found and given:
        raise WeightsError(
            f"{SHIPPED_ENV}={given}: no weights parts manifest (*{PARTS_SUFFIX}) there"
        )
    return found[0] if found else None


def default_weights() -> str:
    """The weights used when none are named: the default shipped with the package when it
    holds them, else the published checkpoint (fetched on first use)."""
    return SHIPPED_WEIGHTS if shipped_manifest() is not None else DEFAULT_WEIGHTS


def _shipped_spec() -> WeightsSpec:
    manifest = shipped_manifest()
    if manifest is None:
        raise WeightsError(
            f"weights {SHIPPED_WEIGHTS!r} are not in this installation of swinface (no "
            f"*{PARTS_SUFFIX} in {SHIPPED_DIR}); use {PUBLISHED_WEIGHTS!r} or --weights PATH"
        )
    try:
        whole = json.loads(manifest.read_text(encoding="utf-8"))
        return WeightsSpec(
            name=SHIPPED_WEIGHTS,
            filename=whole["file"],
            urls=(f"parts:{manifest}",),
            sha256=whole["sha256"],
            size=int(whole["bytes"]),
            description=f"the default weights, shipped with the package in "
            f"{len(whole['parts'])} parts: no download",
            license="trained on non-commercial research datasets (CelebA, UTKFace, FER2013): "
            "non-commercial research use",
            architecture="swinface_t",
            format="native",
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise WeightsError(
            f"the default weights' manifest {manifest} is unreadable ({err}); reinstall "
            f"swinface, or use {PUBLISHED_WEIGHTS!r} or --weights PATH"
        ) from None


register_provider(SHIPPED_WEIGHTS, _shipped_spec)


# ---------------------------------------------------------------- the published checkpoint

_PUBLISHED_FOLDER = "1NjVN3Kp_Tmwt17hWCIWgHpuWzkHYaman"

register(
    WeightsSpec(
        name=PUBLISHED_WEIGHTS,
        filename="checkpoint_step_79999_gpu_0.pt",
        urls=(f"https://drive.google.com/drive/folders/{_PUBLISHED_FOLDER}",),
        sha256=None,
        size=None,
        description="the published SwinFace checkpoint (Swin-T, all tasks)",
        license=(
            "MIT code; weights trained on MS1MV2, CelebA, RAF-DB, CLAP2015 etc.: "
            "non-commercial research use"
        ),
        architecture="swinface_t",
        format="published",
        verify_threshold=None,
        gdrive_folder=_PUBLISHED_FOLDER,
    )
)
