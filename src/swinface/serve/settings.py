"""What a `swinface serve` process is configured with: one typed record, filled by the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from swinface.gallery.index import DEFAULT_FAISS_MIN

KEYS_ENV = "SWINFACE_API_KEYS"


def default_data_dir() -> Path:
    """`$SWINFACE_HOME/serve`, else the platform's user data folder."""
    home = os.environ.get("SWINFACE_HOME")
    if home:
        return Path(home) / "serve"
    import platformdirs

    return Path(platformdirs.user_data_dir("swinface")) / "serve"


@dataclass
class ServeSettings:
    """Service options. Keys are given in plain text or as `sha256:<hex>`; only hashes are kept."""

    data_dir: Path = field(default_factory=default_data_dir)
    store: str = "sqlite"  # 'sqlite' (in data_dir), a .sqlite path, or a postgresql:// URL
    api_keys: tuple[str, ...] = ()
    protect_reads: bool = False  # read endpoints need a key too
    max_body_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_images: int = 16  # photos per request
    max_batch: int = 16  # photos per model batch
    max_wait_ms: float = 5.0  # how long a batch waits to fill
    max_queue: int = 64  # photos waiting; beyond it: 503
    cors_origins: tuple[str, ...] = ()
    faiss_min: int = DEFAULT_FAISS_MIN
    verify_threshold: float | None = None  # default: the one stored with the weights
    max_top_k: int = 100

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        for name in ("max_body_bytes", "max_pixels", "max_images", "max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms: must not be negative, got {self.max_wait_ms}")


def read_keys(keys_file: str | Path | None = None, environ: dict | None = None) -> tuple[str, ...]:
    """API keys from `SWINFACE_API_KEYS` (comma-separated) and a keys file (one per line, # comments)."""
    environ = os.environ if environ is None else environ
    keys = [k.strip() for k in environ.get(KEYS_ENV, "").split(",") if k.strip()]
    if keys_file is not None:
        path = Path(keys_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: keys file not found")
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(line)
    return tuple(keys)
