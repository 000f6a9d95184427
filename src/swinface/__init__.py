"""SwinFace: identity, expression, age and 40 attributes from one Swin Transformer.

import swinface
model = swinface.load_model("model.safetensors")      # or a registered name
result = swinface.analyze_aligned(model, faces)       # (N, 112, 112, 3) uint8 RGB
result.faces[0].age, result.faces[0].expression, result.raw["Age"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swinface import tasks

__version__ = "0.1.0"

# Heavy modules (torch, timm) load on first use, so `import swinface` stays light.
_LAZY = {
    "load_model": "swinface.weights.loading",
    "create_model": "swinface.model",
    "SwinFace": "swinface.model",
    "FaceAttributes": "swinface.decode",
    "AlignedAnalysis": "swinface.inference",
    "SwinFaceRunner": "swinface.inference",
    "analyze_aligned": "swinface.inference",
}

if TYPE_CHECKING:
    from swinface.decode import FaceAttributes
    from swinface.inference import AlignedAnalysis, SwinFaceRunner, analyze_aligned
    from swinface.model import SwinFace, create_model
    from swinface.weights.loading import load_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'swinface' has no attribute {name!r}")


__all__ = [
    "AlignedAnalysis",
    "FaceAttributes",
    "SwinFace",
    "SwinFaceRunner",
    "__version__",
    "analyze_aligned",
    "create_model",
    "load_model",
    "tasks",
]
