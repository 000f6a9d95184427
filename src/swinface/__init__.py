"""SwinFace: identity, expression, age and 40 attributes from one Swin Transformer."""

from swinface import tasks

__version__ = "0.1.0"
__all__ = ["tasks", "__version__"]
