"""The SwinFace network and its factory."""

from swinface.model.config import MODEL_CONFIGS, SwinFaceConfig, model_config
from swinface.model.swinface import SwinFace, SwinFaceOutput, create_model

__all__ = [
    "MODEL_CONFIGS",
    "SwinFace",
    "SwinFaceConfig",
    "SwinFaceOutput",
    "create_model",
    "model_config",
]
