"""Teachers: face models from registry packages, converted to ONNX, that teach SwinFace.

from swinface.teachers import registry, runner
teacher = registry.get("sface")
model = runner.load(teacher)            # converts from the installed package once
outputs = model.predict(faces)          # (N, 112, 112, 3) aligned uint8 RGB
outputs["embedding"]                    # (N, 128), L2-normalised
"""

from swinface.teachers.base import (
    CheckResult,
    Crop,
    CropKind,
    PackageFile,
    Preprocess,
    Reading,
    Teacher,
    TeacherError,
    TeacherInput,
    TeacherOutput,
)

__all__ = [
    "CheckResult",
    "Crop",
    "CropKind",
    "PackageFile",
    "Preprocess",
    "Reading",
    "Teacher",
    "TeacherError",
    "TeacherInput",
    "TeacherOutput",
]
