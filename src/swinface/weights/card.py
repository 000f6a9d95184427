"""What a weights file is, read from the file itself: format, size, hash, architecture, and
the model card facts its metadata carries (training config, step, teachers, provenance).

Only the safetensors header is read (no tensor data, nothing unpickled); a fact the file
does not carry is left out, never guessed.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from swinface.weights.download import file_sha256
from swinface.weights.registry import WeightsError, WeightsSpec

# Metadata the native format writes for itself; every other key is a fact about the weights.
_FORMAT_KEYS = ("format", "format_version", "architecture", "tasks", "name", "int8_per_channel")
SCALE_PREFIX = "int8_scale."  # as `formats.SCALE_PREFIX`; kept here so no torch is imported
_MAX_HEADER = 100_000_000
_FLOAT_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


@dataclass(frozen=True)
class WeightsCard:
    """One weights file described: what it is and what its metadata says about it."""

    name: str
    path: Path
    format: str  # "int8", "float32", "float16", ... or "published checkpoint (torch.save)"
    bytes: int
    sha256: str
    architecture: str = ""  # a registered model name, or "custom"; "" when the file is silent
    architecture_config: dict = field(default_factory=dict)
    values: int | None = None  # numbers stored (scales excluded); None when unknown
    dtypes: dict[str, int] = field(default_factory=dict)  # safetensors dtype -> tensors
    facts: list[tuple[str, str]] = field(default_factory=list)  # model card facts, in order


def read_header(path: Path) -> tuple[dict, dict[str, str]]:
    """A safetensors file's tensor table and metadata, from its header alone."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _MAX_HEADER:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
    meta = header.pop("__metadata__", None) or {}
    return header, meta


def _architecture(meta: dict[str, str]) -> tuple[str, dict]:
    if "architecture" not in meta:
        return "", {}
    from swinface.model.config import MODEL_CONFIGS

    config = json.loads(meta["architecture"])
    named = [n for n, c in MODEL_CONFIGS.items() if c.to_dict() == config]
    return (named[0] if named else "custom"), config


def _storage(tensors: dict, meta: dict[str, str]) -> tuple[str, dict[str, int], int]:
    dtypes: dict[str, int] = {}
    values = 0
    for key, info in tensors.items():
        dtypes[info["dtype"]] = dtypes.get(info["dtype"], 0) + 1
        if not key.startswith(SCALE_PREFIX):
            count = 1
            for n in info["shape"]:
                count *= n
            values += count
    if meta.get("int8_per_channel"):
        return "int8", dtypes, values
    floats = {d: n for d, n in dtypes.items() if d in _FLOAT_NAMES}
    main = max(floats, key=floats.get) if floats else next(iter(dtypes), "")
    return _FLOAT_NAMES.get(main, main.lower()), dtypes, values


def _train_facts(text: str) -> list[tuple[str, str]]:
    """What a training config (as the trainer stores it) says: model, steps, tasks, teachers."""
    try:
        config = json.loads(text)
    except ValueError:
        return [("train config", "present but not JSON")]
    facts = []
    plain = [f"{k}={config[k]}" for k in ("model", "steps", "precision", "seed") if k in config]
    if plain:
        facts.append(("train config", " ".join(plain)))
    if config.get("init_weights"):
        facts.append(("started from", Path(str(config["init_weights"])).name))
    tasks = config.get("tasks") or {}
    if tasks:
        described = []
        for task, spec in tasks.items():
            stores = [Path(s["store"]).name for s in spec.get("sources", []) if "store" in s]
            described.append(f"{task} ({', '.join(stores)})" if stores else task)
        facts.append(("tasks (stores)", "; ".join(described)))
    teachers = _distill_teachers(config.get("distill") or {})
    if teachers:
        facts.append(("teachers (train config)", ", ".join(teachers)))
    return facts


def _distill_teachers(distill: dict) -> list[str]:
    named = list((distill.get("embedding") or {}).get("teachers") or [])
    for output in ("expression", "gender", "age"):
        soft = distill.get(output) or {}
        if soft.get("teacher"):
            named.append(f"{soft['teacher']} ({output})")
    return named


def _facts(meta: dict[str, str]) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = []
    if meta.get("step"):
        facts.append(("step", meta["step"]))
    if meta.get("train_config"):
        facts.extend(_train_facts(meta["train_config"]))
    for key in sorted(meta):
        if key in _FORMAT_KEYS or key in ("step", "train_config"):
            continue
        value = meta[key]
        try:  # lists and objects stored as JSON print as plain text
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if isinstance(parsed, list):
            value = ", ".join(map(str, parsed))
        elif isinstance(parsed, dict):
            value = ", ".join(f"{k}={v}" for k, v in parsed.items())
        facts.append((key.replace("_", " "), value if len(value) <= 300 else value[:297] + "..."))
    return facts


def read_card(path: str | Path, name: str = "") -> WeightsCard:
    """Describe the weights file at `path` (a native safetensors file or a published
    checkpoint) from its bytes and header."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    size, digest = path.stat().st_size, file_sha256(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return WeightsCard(
            name or path.stem, path, "published checkpoint (torch.save)", size, digest
        )
    tensors, meta = read_header(path)
    if meta.get("format") != "swinface":
        raise WeightsError(f"{path}: a safetensors file, but not swinface weights")
    architecture, config = _architecture(meta)
    storage, dtypes, values = _storage(tensors, meta)
    return WeightsCard(
        name=name or meta.get("name") or path.stem,
        path=path,
        format=storage,
        bytes=size,
        sha256=digest,
        architecture=architecture,
        architecture_config=config,
        values=values,
        dtypes=dtypes,
        facts=_facts(meta),
    )


def spec_facts(spec: WeightsSpec) -> list[tuple[str, str]]:
    """What the registry says about named weights, for when the file is not at hand."""
    facts = [("registered as", spec.name), ("description", spec.description)]
    if spec.license:
        facts.append(("licence", spec.license))
    facts += [(f"source {i + 1}", s.text) for i, s in enumerate(spec.sources)]
    facts.append(("size", f"{spec.size} bytes" if spec.size else "not pinned"))
    facts.append(("sha256", spec.sha256 or "not pinned"))
    return facts
