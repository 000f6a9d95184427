"""Weights: file formats, the registry of named weights, the cache and downloads."""

# Not the `download` function: under that name it would hide the `download` submodule.
from swinface.weights.download import import_weights, resolve_weights
from swinface.weights.formats import CheckpointError, save_native, save_published
from swinface.weights.loading import WeightsInfo, load_model, load_model_from_file, resolve_device
from swinface.weights.registry import (
    WeightsError,
    WeightsSpec,
    cache_dir,
    get_spec,
    list_specs,
    register,
)

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
