"""Mixed multi-task batches: every step draws a batch for each task, from its weighted sources.

A step's batch is a pure function of (seed, rank, step): which samples it
holds and every random choice of their augmentation come from generators
seeded by those numbers, never from a process's global random state. So any
DataLoader worker, started by fork, spawn or forkserver, builds the same batch
for the same step, and resuming at step s needs nothing but s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from swinface.data.store import FaceStore, open_store
from swinface.train.config import AugmentConfig, TrainConfig

log = logging.getLogger(__name__)

# The labels each task trains. A sample takes part in a task when it carries at
# least one of them; the losses skip the labels it lacks (-1, or NaN for age).
TASK_LABELS: dict[str, tuple[str, ...]] = {
    "identity": ("identity",),
    "age_gender": ("age", "gender"),
    "attributes": ("attributes",),
    "expression": ("expression",),
}
BATCH_LABELS = ("identity", "age", "gender", "expression", "attributes")


@dataclass(frozen=True)
class LabelPriors:
    """The constant answer of each task, from training labels (None where no label)."""

    age_mean: float | None = None
    age_std: float | None = None
    gender: int | None = None
    expression: int | None = None
    attributes: tuple[int, ...] | None = None

    @classmethod
    def from_labels(
        cls,
        age: np.ndarray | None = None,
        gender: np.ndarray | None = None,
        expression: np.ndarray | None = None,
        attributes: np.ndarray | None = None,
    ) -> LabelPriors:
        def majority(values: np.ndarray | None) -> int | None:
            if values is None:
                return None
            values = values[values >= 0]
            return int(np.bincount(values.astype(np.int64)).argmax()) if len(values) else None

        ages = None if age is None else age[~np.isnan(age)]
        has_ages = ages is not None and len(ages) > 0
        attribute_majority = None
        if attributes is not None and len(attributes):
            known = attributes >= 0
            positive = ((attributes == 1) & known).sum(0)
            attribute_majority = tuple(
                int(p * 2 > k) for p, k in zip(positive, known.sum(0), strict=True)
            )
        return cls(
            age_mean=float(ages.mean()) if has_ages else None,
            age_std=float(max(ages.std(), 1.0)) if has_ages else None,
            gender=majority(gender),
            expression=majority(expression),
            attributes=attribute_majority,
        )


@dataclass
class Source:
    store: FaceStore
    weight: float
    usable: np.ndarray | None  # indices of the samples that take part; None: all of them
    identity_offset: int = 0
    teacher: dict[str, np.ndarray] | None = None  # batch key -> this store's teacher targets

    def draw(self, rng: np.random.Generator) -> int:
        count = len(self.store) if self.usable is None else len(self.usable)
        i = int(rng.integers(count))
        return i if self.usable is None else int(self.usable[i])


def usable_samples(store: FaceStore, task: str) -> np.ndarray:
    """Mask of the samples of `store` that carry at least one of `task`'s labels."""
    mask = np.zeros(len(store), dtype=bool)
    for label in TASK_LABELS[task]:
        mask |= store.has(label)
    return mask


def _augmenter(kind: str, config: AugmentConfig | None = None):
    """Per-sample augmentations on uint8 CHW tensors: flips for identities; for the
    analysis tasks, flips, RandAugment, colour jitter and random erasing as `config` says
    (published: 2 ops at magnitude 9, jitter 0.4, erasing 0.25)."""
    from torchvision.transforms import v2

    if kind == "identity":
        return v2.RandomHorizontalFlip()
    config = config or AugmentConfig()
    steps = [v2.RandomHorizontalFlip()]
    if config.randaugment_ops:
        steps.append(v2.RandAugment(num_ops=config.randaugment_ops, magnitude=config.magnitude))
    if config.colour_jitter:
        j = config.colour_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    if config.erasing:
        steps.append(v2.RandomErasing(p=config.erasing, value=0))
    return v2.Compose(steps)


class MultiTaskBatches(torch.utils.data.Dataset):
    """Map-style dataset over steps: item `s` is the whole mixed batch of step `s` for this rank."""

    def __init__(
        self, config: TrainConfig, rank: int = 0, world_size: int = 1, augment: bool | None = None
    ) -> None:
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.augment = config.augment if augment is None else augment
        self.sources: dict[str, list[Source]] = {}
        self.num_identities = 0
        stores: dict[str, FaceStore] = {}
        for task, task_config in config.tasks.items():
            sources = []
            for src in task_config.sources:
                if src.store not in stores:
                    stores[src.store] = open_store(src.store)
                store = stores[src.store]
                mask = usable_samples(store, task)
                if src.holdout:
                    from swinface.data.holdout import holdout_mask

                    mask &= ~holdout_mask(store, src.holdout, config.seed)
                if not mask.any():
                    raise ValueError(
                        f"{src.store}: no sample has a label of task {task} "
                        f"({' or '.join(TASK_LABELS[task])})"
                    )
                source = Source(store, src.weight, None if mask.all() else np.flatnonzero(mask))
                if task == "identity":
                    source.identity_offset = self.num_identities
                    self.num_identities += int(store.labels["identity"].max()) + 1
                sources.append(source)
            self.sources[task] = sources
        self.teacher_keys = self._open_targets(config, stores)
        self._augmenters: dict[str, object] = {}

    def _open_targets(self, config: TrainConfig, stores: dict[str, FaceStore]) -> dict[str, tuple]:
        """The teacher targets the `distill` losses need, per store marked `targets: true`.

        Returns each batch key's row shape and dtype (`teacher_embedding/<name>`,
        `teacher_expression`, `teacher_gender`, `teacher_age`); rows of faces from
        stores without targets are NaN in the batch.
        """
        from swinface.data.targets import TargetsError, open_targets

        distill = config.distill
        if not distill.active:
            return {}
        wanted: dict[str, tuple[str, str]] = {}  # batch key -> (teacher, array)
        if distill.embedding is not None:
            for name in distill.embedding.teachers:
                wanted[f"teacher_embedding/{name}"] = (name, "embedding")
        for task in ("expression", "gender", "age"):
            soft = getattr(distill, task)
            if soft is not None:
                wanted[f"teacher_{task}"] = (soft.teacher, task)
        per_store: dict[str, dict[str, np.ndarray]] = {}
        missing: dict[str, list[str]] = {}  # batch key -> what each store lacking it says
        for task, task_config in config.tasks.items():
            for src, source in zip(task_config.sources, self.sources[task], strict=True):
                if not src.targets:
                    continue
                if src.store not in per_store:
                    targets = open_targets(stores[src.store])
                    arrays = {}
                    for key, (teacher, array) in wanted.items():
                        bucket = (
                            targets.ensemble
                            if teacher == "ensemble"
                            else targets.teachers.get(teacher, {})
                        )
                        if array in bucket:
                            arrays[key] = bucket[array]
                            continue
                        # A store may lack a teacher (FER2013's faces have no identity
                        # targets): its faces skip that loss, as long as another store has it.
                        have = sorted(
                            f"{t}/{a}" for t, arrs in targets.teachers.items() for a in arrs
                        )
                        missing.setdefault(key, []).append(
                            f"{targets.path / 'meta.json'}: no {teacher} {array} targets "
                            f"(the store has {', '.join(have) or 'none'}); run `swinface "
                            f"distill-targets {src.store} --teachers ...` with {teacher}"
                        )
                    per_store[src.store] = arrays
                source.teacher = per_store[src.store]
        shapes: dict[str, tuple] = {}
        for arrays in per_store.values():
            for key, values in arrays.items():
                shape = values.shape[1:]
                if shapes.setdefault(key, shape) != shape:
                    raise ValueError(f"{key}: teacher targets of different shapes across stores")
        for key, problems in missing.items():
            if key not in shapes:
                raise TargetsError(problems[0])
            for problem in problems:
                log.info("%s: those faces skip this loss", problem)
        return shapes

    def label_priors(self) -> LabelPriors:
        """What a model that gives every face one answer would say, learnt from the training
        faces (held-out parts excluded): the mean and spread of the ages, the majority
        gender and expression, each attribute's majority value."""
        values: dict[str, list[np.ndarray]] = {name: [] for name in BATCH_LABELS}
        for task, sources in self.sources.items():
            for source in sources:
                rows = slice(None) if source.usable is None else source.usable
                for name in TASK_LABELS[task]:
                    if name != "identity":
                        values[name].append(np.asarray(source.store.labels[name])[rows])
        return LabelPriors.from_labels(
            **{k: np.concatenate(v) if v else None for k, v in values.items() if k != "identity"}
        )

    def __len__(self) -> int:
        return self.config.steps

    def _rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, self.rank, step])

    def indices(self, step: int) -> dict[str, list[tuple[int, int]]]:
        """(source number, sample index) for every sample of every task at `step`."""
        rng = self._rng(step)
        chosen = {}
        for task, sources in self.sources.items():
            size = self.config.tasks[task].batch_size
            weights = np.array([s.weight for s in sources], dtype=np.float64)
            which = rng.choice(len(sources), size=size, p=weights / weights.sum())
            chosen[task] = [(int(k), sources[k].draw(rng)) for k in which]
        return chosen

    def _sample_seeds(self, step: int, count: int) -> list[int]:
        """One augmentation seed per sample of `step`, apart from the sample choice's stream."""
        seeds = np.random.SeedSequence([self.config.seed, self.rank, step, 1]).generate_state(
            count, dtype=np.uint64
        )
        return [int(s) & 0x7FFF_FFFF_FFFF_FFFF for s in seeds]

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        picks = [(task, k, i) for task, chosen in self.indices(step).items() for k, i in chosen]
        seeds = self._sample_seeds(step, len(picks))
        images = []
        labels: dict[str, list] = {name: [] for name in BATCH_LABELS}
        for (task, k, i), seed in zip(picks, seeds, strict=True):
            source = self.sources[task][k]
            face = torch.from_numpy(np.array(source.store.faces[i]))
            if self.augment:
                face = self._augment(task, face.permute(2, 0, 1), seed).permute(1, 2, 0)
            images.append(face)
            self._add_labels(labels, task, source, i)
        attributes = np.stack(labels["attributes"]).astype(np.int64)
        teacher = {
            key: torch.from_numpy(self._teacher_rows(key, shape, picks))
            for key, shape in self.teacher_keys.items()
        }
        return {
            **teacher,
            "images": torch.stack(images).contiguous(),
            "identity": torch.tensor(labels["identity"], dtype=torch.long),
            "age": torch.tensor(labels["age"], dtype=torch.float32),
            "gender": torch.tensor(labels["gender"], dtype=torch.long),
            "expression": torch.tensor(labels["expression"], dtype=torch.long),
            "attributes": torch.from_numpy(attributes),
        }

    def _teacher_rows(self, key: str, shape: tuple, picks: list) -> np.ndarray:
        """(N, *shape) float32 teacher targets of the step's faces; NaN where a store has none."""
        rows = np.full((len(picks), *shape), np.nan, dtype=np.float32)
        for row, (task, k, i) in enumerate(picks):
            teacher = self.sources[task][k].teacher
            if teacher is not None and key in teacher:
                rows[row] = teacher[key][i]
        return rows

    @staticmethod
    def _add_labels(labels: dict[str, list], task: str, source: Source, i: int) -> None:
        """Append sample `i`'s labels of `task` (the store's own missing marks where it lacks
        one) and "no label" for the other tasks' labels."""
        store_labels = source.store.labels
        own = TASK_LABELS[task]
        identity = int(store_labels["identity"][i]) if "identity" in own else -1
        labels["identity"].append(identity + source.identity_offset if identity >= 0 else -1)
        labels["age"].append(float(store_labels["age"][i]) if "age" in own else float("nan"))
        labels["gender"].append(int(store_labels["gender"][i]) if "gender" in own else -1)
        labels["expression"].append(
            int(store_labels["expression"][i]) if "expression" in own else -1
        )
        labels["attributes"].append(
            store_labels["attributes"][i]
            if "attributes" in own
            else np.full(store_labels["attributes"].shape[1:], -1, np.int8)
        )

    def _augment(self, task: str, face: torch.Tensor, seed: int) -> torch.Tensor:
        """Augment one face with its own seed; the process's global generator is left as it was
        (torchvision draws from it, and in the main process it also drives dropout)."""
        kind = "identity" if task == "identity" else "analysis"
        if kind not in self._augmenters:
            self._augmenters[kind] = _augmenter(kind, self.config.augmentation)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._augmenters[kind](face)
