"""Weights: file formats, the registry of named weights, the cache and downloads."""

from swinface.weights.formats import CheckpointError, save_native, save_published
from swinface.weights.loading import WeightsInfo, load_model, load_model_from_file, resolve_device

__all__ = [
    "CheckpointError",
    "WeightsInfo",
    "load_model",
    "load_model_from_file",
    "resolve_device",
    "save_native",
    "save_published",
]
