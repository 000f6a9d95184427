"""Weights: file formats, the registry of named weights, the cache and downloads.

The registry and the downloader are light; the formats and the loader need
torch and load on first use, so the command line can check names and paths
before paying for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Not the `download` function: under that name it would hide the `download` submodule.
from swinface.weights.download import import_weights, resolve_weights
from swinface.weights.registry import (
    WeightsError,
    WeightsSpec,
    cache_dir,
    get_spec,
    list_specs,
    register,
)

_LAZY = {
    "CheckpointError": "swinface.weights.formats",
    "save_native": "swinface.weights.formats",
    "save_published": "swinface.weights.formats",
    "WeightsInfo": "swinface.weights.loading",
    "load_model": "swinface.weights.loading",
    "load_model_from_file": "swinface.weights.loading",
    "resolve_device": "swinface.weights.loading",
}

if TYPE_CHECKING:
    from swinface.weights.formats import CheckpointError, save_native, save_published
    from swinface.weights.loading import (
        WeightsInfo,
        load_model,
        load_model_from_file,
        resolve_device,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'swinface.weights' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "WeightsError",
    "WeightsInfo",
    "WeightsSpec",
    "cache_dir",
    "get_spec",
    "import_weights",
    "list_specs",
    "load_model",
    "load_model_from_file",
    "register",
    "resolve_device",
    "resolve_weights",
    "save_native",
    "save_published",
]
