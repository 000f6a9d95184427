"""int8 graphs for CPU: static ONNX Runtime quantisation, calibrated on aligned faces, and the
accuracy bar a fast path must meet against float32 before it is used by default.

The float32 graph (`swinface.export`) is quantised in QDQ form: per-channel
symmetric int8 weights and asymmetric uint8 activations (the u8s8 products
that AVX-512 VNNI runs), activation ranges from min/max over the calibration
faces. Only the layers with weights are quantised; attention's own products
(query by key, weights by value) and, by default, the first patch embedding,
the embedding head and the output layers stay float32: they cost little time
and carry the most accuracy.

An int8 graph is checked against the float32 model on held-out faces
(`Agreement`), and the figures travel in its metadata: `auto` on CPU takes a
cached int8 graph only when they meet `ACCURACY_BAR`. OpenVINO bf16, what
`auto` runs on CPUs with native bf16, is checked the same way (`check_bf16`):
once a check of a set of weights records that it misses the bar, `auto` runs
those weights on ONNX Runtime instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from swinface import tasks
from swinface.atomic import atomic_path, file_lock
from swinface.errors import SwinFaceError

log = logging.getLogger(__name__)

INT8_FORMAT = "swinface-onnx-int8"
# Layers kept in float32 by default, by the names the export gives them.
SENSITIVE_LAYERS: dict[str, str] = {
    "patch_embed": "/model/backbone/patch_embed/",
    "embedding": "/model/embedding_head/",
    "outputs": "/model/heads/MatMul_2",
}
DEFAULT_KEEP_FLOAT: tuple[str, ...] = tuple(SENSITIVE_LAYERS)
_QUANTISED_OPS = ("Conv", "MatMul", "Gemm")
MIN_CALIBRATION_FACES = 8


class QuantizationError(SwinFaceError, ValueError):
    """Faces or a graph that cannot make an int8 graph, and why."""


# ---------------------------------------------------------------- accuracy


@dataclass(frozen=True)
class AccuracyBar:
    """How close a fast path must stay to float32 to be used by default."""

    cosine_mean: float = 0.995  # identity embeddings, cosine to float32's
    cosine_min: float = 0.98
    expression: float = 0.99  # share of faces with the same top expression
    gender: float = 0.99
    attributes: float = 0.99  # mean over the 40 attributes of the share that agree
    age_difference: float = 0.3  # years, mean absolute


ACCURACY_BAR = AccuracyBar()


@dataclass(frozen=True)
class Agreement:
    """A fast path's outputs beside float32's on the same faces."""

    faces: int
    cosine_mean: float
    cosine_min: float
    expression: float
    gender: float
    attributes: float
    age_difference: float

    def shortfalls(self, bar: AccuracyBar = ACCURACY_BAR) -> list[str]:
        """What misses `bar`, in words (empty when every figure meets it)."""
        misses = []
        for name in ("cosine_mean", "cosine_min", "expression", "gender", "attributes"):
            if getattr(self, name) < getattr(bar, name):
                misses.append(f"{name} {getattr(self, name):.4f} < {getattr(bar, name)}")
        if self.age_difference > bar.age_difference:
            misses.append(f"age_difference {self.age_difference:.3f} > {bar.age_difference}")
        return misses

    def meets(self, bar: AccuracyBar = ACCURACY_BAR) -> bool:
        return not self.shortfalls(bar)

    def summary(self) -> str:
        return (
            f"cosine mean {self.cosine_mean:.4f} min {self.cosine_min:.4f}, "
            f"expression {self.expression:.1%}, gender {self.gender:.1%}, "
            f"attributes {self.attributes:.1%}, age {self.age_difference:.2f} y "
            f"({self.faces} faces)"
        )


def agreement(reference, other) -> Agreement:
    """How far `other` (a `SwinFaceOutput`) strays from `reference` on the same faces."""
    slices = tasks.output_slices()
    ref_logits, logits = np.asarray(reference.logits), np.asarray(other.logits)
    a, b = np.asarray(reference.embedding, np.float64), np.asarray(other.embedding, np.float64)
    cosine = (a * b).sum(1) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
    )

    def same_top(output: tasks.Output) -> float:
        s = slices[output.name]
        return float((ref_logits[:, s].argmax(1) == logits[:, s].argmax(1)).mean())

    age = slices[tasks.output("Age").name]
    return Agreement(
        faces=len(a),
        cosine_mean=float(cosine.mean()),
        cosine_min=float(cosine.min()),
        expression=same_top(tasks.output("Expression")),
        gender=same_top(tasks.output("Gender")),
        attributes=float(np.mean([same_top(o) for o in tasks.ATTRIBUTE_OUTPUTS])),
        age_difference=float(np.abs(ref_logits[:, age] - logits[:, age]).mean()),
    )


# ---------------------------------------------------------------- calibration faces


def load_faces(folder: str | Path, limit: int | None = None) -> np.ndarray:
    """Aligned face crops from a folder of images, as uint8 RGB (N, 112, 112, 3).

    Images are taken in name order and resized to 112x112 when they are not
    (crops already aligned to the face template, such as CelebA's aligned
    images). Unreadable images are skipped with a warning.
    """
    from swinface.data.formats.base import IMAGE_SUFFIXES
    from swinface.vision.align import resize_face
    from swinface.vision.image import load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise QuantizationError(f"{folder}: not a folder of face images")
    faces = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if limit is not None and len(faces) >= limit:
            break
        try:
            faces.append(resize_face(load_image(path)))
        except (SwinFaceError, ValueError, OSError) as err:
            log.warning("%s: skipped (%s)", path, err)
    if not faces:
        raise QuantizationError(f"{folder}: no readable face images")
    return np.stack(faces)


def _batches(faces: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(faces), size):
        yield faces[i : i + size]


def faces_digest(faces: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(faces).tobytes()).hexdigest()[:12]


# ---------------------------------------------------------------- quantisation


def _layers_to_quantise(graph, keep_float: Sequence[str]) -> tuple[list[str], list[str]]:
    """(nodes to quantise, nodes to keep float): weight layers only, less the kept ones."""
    unknown = set(keep_float) - set(SENSITIVE_LAYERS)
    if unknown:
        raise ValueError(f"keep_float: unknown {sorted(unknown)}; known: {list(SENSITIVE_LAYERS)}")
    weights = {i.name for i in graph.graph.initializer}
    prefixes = tuple(SENSITIVE_LAYERS[k] for k in keep_float)
    quantise, keep = [], []
    for node in graph.graph.node:
        if node.op_type not in _QUANTISED_OPS:
            continue
        has_weights = any(name in weights for name in node.input[1:])
        (quantise if has_weights and not node.name.startswith(prefixes) else keep).append(node.name)
    return quantise, keep


def quantize_graph(
    float_graph: str | Path,
    faces: np.ndarray,
    out: str | Path,
    *,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    batch: int = 8,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write the int8 version of a SwinFace uint8 graph, calibrated on `faces`; returns `out`.

    `faces`: aligned uint8 RGB (N, 112, 112, 3), N >= 8. Written atomically, with
    `metadata` added to the graph's own.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (112, 112, 3):
        raise QuantizationError(
            f"calibration faces: expected uint8 (N, 112, 112, 3), got {faces.dtype} {faces.shape}"
        )
    if len(faces) < MIN_CALIBRATION_FACES:
        raise QuantizationError(
            f"calibration faces: {len(faces)} given, at least {MIN_CALIBRATION_FACES} needed"
        )
    graph = onnx.load(str(float_graph))
    quantise, keep = _layers_to_quantise(graph, keep_float)
    input_name = graph.graph.input[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(_batches(faces, batch))

        def get_next(self) -> dict | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp, atomic_path(out) as target:
        staged = Path(tmp) / "int8.onnx"
        quantize_static(
            str(float_graph),
            str(staged),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(_QUANTISED_OPS),
            nodes_to_quantize=quantise,
            nodes_to_exclude=keep,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
        q = onnx.load(str(staged))
        meta = {p.key: p.value for p in graph.metadata_props}
        meta.update(
            {
                "format": INT8_FORMAT,
                "calibration_faces": str(len(faces)),
                "calibration_digest": faces_digest(faces),
                "kept_float": ",".join(keep_float),
                **(metadata or {}),
            }
        )
        del q.metadata_props[:]
        for key, value in meta.items():
            q.metadata_props.add(key=key, value=value)
        onnx.save(q, str(target))
    log.info("int8 graph %s: %d layers int8, %d float", out, len(quantise), len(keep))
    return out


def graph_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an ONNX graph, read without its weights."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in graph.metadata_props}


def recorded_agreement(path: str | Path) -> Agreement | None:
    """The agreement with float32 recorded in an int8 graph, if it was checked."""
    text = graph_metadata(path).get("agreement")
    return Agreement(**json.loads(text)) if text else None


# ---------------------------------------------------------------- the cache


def int8_path_for(model) -> Path:
    """Where the checked int8 graph of `model`'s weights is cached."""
    from swinface.export import model_digest, onnx_path_for

    digest = model_digest(model)
    return onnx_path_for(model, digest).with_name(f"swinface-{digest}-int8.onnx")


def cached_int8_graph(model) -> Path | None:
    """The cached int8 graph of `model`'s weights, if one was made (`quantize_model`)."""
    path = int8_path_for(model)
    if not path.is_file():
        return None
    from swinface.export import model_digest

    if graph_metadata(path).get("weights_digest") != model_digest(model):
        log.warning("cached int8 graph %s was made for other weights; ignored", path)
        return None
    return path


def quantize_model(
    model,
    faces: np.ndarray,
    *,
    held_out: float = 0.5,
    out: str | Path | None = None,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
) -> tuple[Path, Agreement]:
    """Quantise `model` on aligned faces and check the result against float32 eager PyTorch.

    The first `1 - held_out` of the faces calibrate, the rest measure the
    agreement, recorded in the graph. Written to `out`, else to the cache
    (`int8_path_for`), where `auto` finds it. The model is not changed.
    """
    import torch

    from swinface.backends import OnnxBackend, TorchBackend
    from swinface.export import cached_onnx_graph

    faces = np.asarray(faces)
    split = len(faces) - len(held_out_faces(faces, held_out))
    if split < MIN_CALIBRATION_FACES:
        raise QuantizationError(
            f"{len(faces)} faces: too few to calibrate on {MIN_CALIBRATION_FACES} "
            f"and check on the held-out {held_out:.0%}"
        )
    calibration, check = faces[:split], faces[split:]
    path = Path(out) if out is not None else int8_path_for(model)
    # Processes that fill the cache take turns; a path of the caller's own gets no lock file.
    with file_lock(path) if out is None else contextlib.nullcontext():
        quantize_graph(cached_onnx_graph(model), calibration, path, keep_float=keep_float)
        cpu = torch.device("cpu")
        check_t = torch.from_numpy(check)
        reference = TorchBackend(model, cpu, "float32")(check_t)
        fast = OnnxBackend(path, cpu)(check_t)
        result = agreement(reference, fast)
        _record(path, {"agreement": json.dumps(asdict(result))})
    return path, result


def held_out_faces(faces: np.ndarray, held_out: float = 0.5) -> np.ndarray:
    """The faces `quantize_model` checks on (the last `held_out` of them)."""
    return faces[len(faces) - max(1, round(len(faces) * held_out)) :]


# ---------------------------------------------------------------- OpenVINO bf16

BF16_CHECK_FORMAT = "swinface-bf16-check"
_CHECK_BATCH = 32  # faces per batch while checking: bounded memory for big folders


def bf16_check_path(model, digest: str | None = None) -> Path:
    """Where the OpenVINO bf16 check of `model`'s weights (of this digest, when given) is
    recorded: beside its graph."""
    from swinface.export import model_digest, onnx_path_for

    digest = digest or model_digest(model)
    return onnx_path_for(model, digest).with_name(f"swinface-{digest}-bf16.json")


def check_bf16(model, faces: np.ndarray) -> Agreement:
    """OpenVINO bf16 against float32 eager PyTorch on aligned faces, recorded where `auto`
    reads it (`recorded_bf16_agreement`). The model is not changed."""
    import torch

    from swinface.backends import OpenVinoBackend, TorchBackend
    from swinface.export import model_digest
    from swinface.model import SwinFaceOutput

    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim != 4 or len(faces) == 0:
        raise QuantizationError(
            f"faces to check on: (N, 112, 112, 3) uint8 aligned faces, not {faces.dtype} "
            f"{faces.shape}"
        )
    cpu = torch.device("cpu")
    reference_backend = TorchBackend(model, cpu, "float32")
    fast_backend = OpenVinoBackend(model, cpu, "bfloat16")
    embeddings, logits, fast_embeddings, fast_logits = [], [], [], []
    for batch in _batches(faces, _CHECK_BATCH):
        batch_t = torch.from_numpy(batch)
        reference, fast = reference_backend(batch_t), fast_backend(batch_t)
        embeddings.append(reference.embedding)
        logits.append(reference.logits)
        fast_embeddings.append(fast.embedding)
        fast_logits.append(fast.logits)
    result = agreement(
        SwinFaceOutput(torch.cat(embeddings), torch.cat(logits)),
        SwinFaceOutput(torch.cat(fast_embeddings), torch.cat(fast_logits)),
    )
    digest = model_digest(model)
    record = {
        "format": BF16_CHECK_FORMAT,
        "weights_digest": digest,
        "agreement": asdict(result),
    }
    with atomic_path(bf16_check_path(model, digest)) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return result


def recorded_bf16_agreement(model) -> Agreement | None:
    """The recorded OpenVINO bf16 check of `model`'s weights, if one was made."""
    from swinface.export import model_digest, onnx_path_for

    # No check recorded for any weights (the usual case): say so without hashing the weights.
    folder = onnx_path_for(model, "0").parent
    if not folder.is_dir() or not any(folder.glob("swinface-*-bf16.json")):
        return None
    digest = model_digest(model)
    path = bf16_check_path(model, digest)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if record.get("format") != BF16_CHECK_FORMAT:
            raise ValueError(f"not a {BF16_CHECK_FORMAT} record")
        if record.get("weights_digest") != digest:
            log.warning("bf16 check %s was made for other weights; ignored", path)
            return None
        return Agreement(**record["agreement"])
    except (ValueError, TypeError, KeyError, OSError) as err:
        log.warning("bf16 check %s unreadable (%s); ignored", path, err)
        return None


def _record(path: Path, values: dict[str, str]) -> None:
    """Set metadata of a graph in place (atomically), replacing keys it already has."""
    import onnx

    graph = onnx.load(str(path))
    meta = {p.key: p.value for p in graph.metadata_props}
    meta.update(values)
    del graph.metadata_props[:]
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    with atomic_path(path) as tmp:
        onnx.save(graph, str(tmp))
