"""Training configuration: typed dataclasses loaded from YAML and validated on load."""

from __future__ import annotations

import types
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from swinface.errors import SwinFaceError

TASK_NAMES = ("identity", "age_gender", "attributes", "expression")
AGE_LOSSES = ("smooth_l1", "l1", "annealed")


class ConfigError(SwinFaceError, ValueError):
    """A training configuration that cannot be used, and where."""


@dataclass
class SourceConfig:
    """One prepared face store feeding a task, and how often it is drawn."""

    store: str
    weight: float = 1.0
    # Read the teacher targets beside this store (`swinface distill-targets`) for the
    # `distill` losses; its faces then learn from the teachers whatever task drew them.
    targets: bool = False
    # Share of the store kept out of training (by person where it has identities), for
    # validation: an `eval_stores` entry with the same store and holdout scores that part.
    holdout: float = 0.0


@dataclass
class EvalStoreConfig:
    """A validation store, whole or (with `holdout`) the part a training source leaves out."""

    store: str
    holdout: float = 0.0


@dataclass
class AugmentConfig:
    """Augmentation of the analysis tasks' faces (identities are only flipped). The
    published values (RandAugment 2 ops at magnitude 9, colour jitter 0.4, random erasing
    0.25) suit millions of faces; a small model learning from thousands needs milder ones."""

    randaugment_ops: int = 2  # 0: no RandAugment
    magnitude: int = 9
    colour_jitter: float = 0.4
    erasing: float = 0.25


@dataclass
class TaskConfig:
    """One task's share of every step: its batch size and its data sources."""

    batch_size: int = 32
    sources: list[SourceConfig] = field(default_factory=list)
    loss_weight: float = 1.0


@dataclass
class IdentityLossConfig:
    margin: str = "cosface"  # cosface | arcface | sface
    scale: float = 64.0
    margin_value: float = 0.4
    sample_rate: float = 1.0  # Partial FC: share of class centres sampled each step


@dataclass
class OptimConfig:
    lr: float = 5e-4
    backbone_lr_scale: float = 0.1
    weight_decay: float = 0.05
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.0
    clip_grad_norm: float = 5.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class EmbeddingDistillConfig:
    """Identity from teacher embeddings: a projection of the student's embedding into each
    teacher's space matched by cosine, and the batch's face-to-face cosines matched as a whole."""

    teachers: list[str] = field(default_factory=list)
    weight: float = 1.0  # 1 - cos(projection(student), teacher), per teacher
    relation_weight: float = 1.0  # squared error between the batch's two similarity matrices


@dataclass
class SoftTargetConfig:
    """One output learned from a teacher's answers (soft targets, or ages in years)."""

    teacher: str = "ensemble"  # a teacher's name, or `ensemble` (the mean of the store's teachers)
    weight: float = 1.0
    temperature: float = 1.0  # softens both distributions (classes); unused for age
    # On every face with a teacher target, labelled or not (a teacher's soft answer carries
    # more than a label does); false: only on faces without that label.
    labelled: bool = True


@dataclass
class DistillConfig:
    embedding: EmbeddingDistillConfig | None = None
    expression: SoftTargetConfig | None = None
    gender: SoftTargetConfig | None = None
    age: SoftTargetConfig | None = None

    def __post_init__(self) -> None:
        for name in ("expression", "gender", "age"):
            soft = getattr(self, name)
            if soft is not None and soft.temperature <= 0:
                raise ConfigError(
                    f"distill.{name}.temperature: must be above 0, got {soft.temperature}"
                )
        if self.embedding is not None and not self.embedding.teachers:
            raise ConfigError("distill.embedding.teachers: name at least one teacher")

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


@dataclass
class TrainConfig:
    """Everything a run needs; `swinface train CONFIG.yaml` reads one of these."""

    output_dir: str = "runs/swinface"
    model: str = "swinface_t"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None  # any weights the loader accepts, to fine-tune
    steps: int = 10000
    seed: int = 0
    precision: str = "auto"  # auto | float32 | bfloat16 | float16
    num_workers: int = 4
    # How DataLoader workers start: fork | spawn | forkserver; None: the platform's default.
    multiprocessing_context: str | None = None
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    # Age: `smooth_l1` or `l1` on the error in spreads of the training ages (a model built
    # here regresses ages normalised by the training data's mean and spread, kept in its
    # architecture, so it still answers in years), or the published `annealed` loss in years.
    age_loss: str = "smooth_l1"
    age_loss_weight: float = 1.0
    # Validation beside the constant answer: a run still at the constant answer on a task
    # at an evaluation after its warm-up stops (`--allow-collapse` goes on).
    allow_collapse: bool = False
    log_every: int = 20
    checkpoint_every: int = 1000
    eval_every: int = 0  # 0: no periodic evaluation
    # name -> validation store: a path, or {store: PATH, holdout: FRACTION}
    eval_stores: dict[str, EvalStoreConfig | str] = field(default_factory=dict)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    identity_loss: IdentityLossConfig = field(default_factory=IdentityLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        self.eval_stores = {
            name: (
                value
                if isinstance(value, EvalStoreConfig)
                else EvalStoreConfig(value)
                if isinstance(value, str)
                else _build(EvalStoreConfig, value, f"eval_stores.{name}")
            )
            for name, value in self.eval_stores.items()
        }
        for where, fraction in [
            *(
                (f"tasks.{t}.sources[{i}].holdout", s.holdout)
                for t, task in self.tasks.items()
                for i, s in enumerate(task.sources)
            ),
            *((f"eval_stores.{n}.holdout", e.holdout) for n, e in self.eval_stores.items()),
        ]:
            if not 0.0 <= fraction < 1.0:
                raise ConfigError(f"{where}: a fraction in [0, 1) is needed, got {fraction}")
        unknown = set(self.tasks) - set(TASK_NAMES)
        if unknown:
            raise ConfigError(
                f"tasks: unknown task(s) {sorted(unknown)}; known: {list(TASK_NAMES)}"
            )
        if not self.tasks:
            raise ConfigError("tasks: at least one task with data sources is needed")
        for name, task in self.tasks.items():
            if not task.sources:
                raise ConfigError(f"tasks.{name}.sources: no data source")
            if task.batch_size < 1:
                raise ConfigError(
                    f"tasks.{name}.batch_size: must be at least 1, got {task.batch_size}"
                )
        if self.distill.active and not any(
            src.targets for task in self.tasks.values() for src in task.sources
        ):
            raise ConfigError(
                "distill: no source reads teacher targets; mark the stores that have them "
                "with `targets: true`"
            )
        if self.age_loss not in AGE_LOSSES:
            raise ConfigError(
                f"age_loss: expected one of {', '.join(AGE_LOSSES)}, got {self.age_loss!r}"
            )
        if self.precision not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(
                f"precision: expected auto, float32, bfloat16 or float16, got {self.precision!r}"
            )
        if self.steps < 1:
            raise ConfigError(f"steps: must be at least 1, got {self.steps}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers: must be 0 or more, got {self.num_workers}")
        if self.multiprocessing_context not in (None, "fork", "spawn", "forkserver"):
            raise ConfigError(
                "multiprocessing_context: expected fork, spawn or forkserver, "
                f"got {self.multiprocessing_context!r}"
            )

    def resolve_paths(self, base: Path) -> None:
        """Make relative store and output paths relative to the config file's folder."""

        def fix(p: str) -> str:
            return p if Path(p).is_absolute() else str((base / p).resolve())

        self.output_dir = fix(self.output_dir)
        for task in self.tasks.values():
            for src in task.sources:
                src.store = fix(src.store)
        for entry in self.eval_stores.values():
            entry.store = fix(entry.store)
        if self.init_weights and (
            "/" in self.init_weights or self.init_weights.endswith((".pt", ".safetensors"))
        ):
            self.init_weights = fix(self.init_weights)


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from plain YAML data, naming the offending key on error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint, path = hints[name], f"{where}.{name}" if where else name
        kwargs[name] = _convert(hint, value, path)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where or 'config'}: {err}") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = getattr(hint, "__origin__", None)
    args = getattr(hint, "__args__", ())
    if isinstance(hint, types.UnionType) and type(None) in args:  # `X | None`
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _convert(hint, value, path)
    if is_dataclass(hint):
        return _build(hint, value, path)
    if origin is list and args and is_dataclass(args[0]):
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list")
        return [_build(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict and len(args) == 2 and is_dataclass(args[1]):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping")
        return {k: _build(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if origin is tuple:
        return tuple(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads `1e-3` (no dot) as a string; a float field takes it as the number.
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected float, got {value!r}") from None
    if (
        hint in (int, float)
        and not isinstance(value, (int, float))
        or hint is int
        and isinstance(value, float)
    ):
        raise ConfigError(f"{path}: expected {hint.__name__}, got {value!r}")
    return value


def _set_dotted(data: dict, key: str, value: Any, path: Path) -> None:
    """Set `a.b.c` in nested mappings (made where missing), as `--set a.b.c=VALUE` asks."""
    *parents, last = key.split(".")
    node = data
    for i, name in enumerate(parents):
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"{path}: cannot set {key}: {where} is not a mapping")
        node = child
    node[last] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from the command line: the value read as YAML (numbers, lists, true)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. model=swinface_nano")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({err})") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config; relative paths are taken from the file's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value, path)
    try:
        config = _build(TrainConfig, data, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    config.resolve_paths(path.parent)
    return config
