"""The registry of named weights and where they live in the local cache.

Each entry (a `WeightsSpec`) names a weights file, the sources it can be
fetched from, and what is known about it (hash, size, licence). A source is a
string; these forms are understood:

- ``https://...`` / ``http://...``: a plain download (resumable);
- ``https://drive.google.com/drive/folders/<id>`` or ``gdrive-folder:<id>/<filename>``:
  the file ``filename`` inside a Google Drive folder (fetched with gdown);
- ``https://drive.google.com/file/d/<id>/...`` or ``gdrive:<id>``: a Google Drive file;
- ``package://<package>/<path>``: a file shipped inside an installed Python package;
- ``file:///path``: a local file or a mounted mirror.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from swinface.errors import SwinFaceError

DEFAULT_WEIGHTS = "swinface-published"
HOME_ENV = "SWINFACE_HOME"

SourceKind = Literal["http", "gdrive-folder", "gdrive-file", "package", "file"]

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
        if self.kind == "package":
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
    raise ValueError(
        f"weights source {text!r} not understood: use https://, gdrive-folder:ID/FILE, "
        "gdrive:ID, package://PACKAGE/PATH or file://PATH"
    )


_REGISTRY: dict[str, WeightsSpec] = {}


def register(spec: WeightsSpec) -> WeightsSpec:
    """Add `spec` to the registry; a name can be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"weights {spec.name!r} are already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> WeightsSpec:
    """The spec registered as `name`; WeightsError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY) or "(none)"
        raise WeightsError(f"no weights registered as {name!r}; registered: {known}") from None


def list_specs() -> list[WeightsSpec]:
    """Every registered spec, in registration order."""
    return list(_REGISTRY.values())


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


_PUBLISHED_FOLDER = "1NjVN3Kp_Tmwt17hWCIWgHpuWzkHYaman"

register(
    WeightsSpec(
        name="swinface-published",
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
