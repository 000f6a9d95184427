"""Mixed multi-task batches: every step draws a batch for each task, from its weighted sources.

A step's batch is a pure function of (seed, rank, step): resuming at step s
needs no sampler state, and any DataLoader worker can build any step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from swinface.data.store import FaceStore, open_store
from swinface.train.config import TrainConfig

# The labels each task trains; a sample contributes only its task's labels.
TASK_LABELS: dict[str, tuple[str, ...]] = {
    "identity": ("identity",),
    "age_gender": ("age", "gender"),
    "attributes": ("attributes",),
    "expression": ("expression",),
}
# Which samples of a store a task can use.
_REQUIRED = {
    "identity": "identity",
    "age_gender": "age",
    "attributes": "attributes",
    "expression": "expression",
}


@dataclass
class Source:
    store: FaceStore
    weight: float
    usable: np.ndarray  # indices of samples that carry the task's label
    identity_offset: int = 0


def _augmenter(kind: str):
    """Per-sample augmentations on uint8 CHW tensors, as published: flips for identities;
    RandAugment (m=9), colour jitter 0.4 and random erasing 0.25 for the analysis tasks."""
    from torchvision.transforms import v2

    if kind == "identity":
        return v2.RandomHorizontalFlip()
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandAugment(num_ops=2, magnitude=9),
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
            v2.RandomErasing(p=0.25, value=0),
        ]
    )


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
                store = stores.setdefault(src.store, open_store(src.store))
                usable = np.flatnonzero(store.has(_REQUIRED[task]))
                if len(usable) == 0:
                    raise ValueError(
                        f"{src.store}: no sample has a {_REQUIRED[task]} label for task {task}"
                    )
                source = Source(store, src.weight, usable)
                if task == "identity":
                    source.identity_offset = self.num_identities
                    self.num_identities += int(store.labels["identity"].max()) + 1
                sources.append(source)
            self.sources[task] = sources
        self._augmenters: dict[str, object] = {}

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
            chosen[task] = [
                (int(k), int(sources[k].usable[rng.integers(len(sources[k].usable))]))
                for k in which
            ]
        return chosen

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(hash((self.config.seed, self.rank, step)) & 0x7FFFFFFF)
        images, labels = (
            [],
            {name: [] for name in ("identity", "age", "gender", "expression", "attributes")},
        )
        for task, picks in self.indices(step).items():
            for k, i in picks:
                source = self.sources[task][k]
                face = torch.from_numpy(np.array(source.store.faces[i])).permute(2, 0, 1)
                if self.augment:
                    face = self._augment(task, face)
                images.append(face.permute(1, 2, 0))
                store_labels = source.store.labels
                labels["identity"].append(
                    int(store_labels["identity"][i]) + source.identity_offset
                    if task == "identity"
                    else -1
                )
                labels["age"].append(
                    float(store_labels["age"][i]) if task == "age_gender" else float("nan")
                )
                labels["gender"].append(
                    int(store_labels["gender"][i]) if task == "age_gender" else -1
                )
                labels["expression"].append(
                    int(store_labels["expression"][i]) if task == "expression" else -1
                )
                labels["attributes"].append(
                    store_labels["attributes"][i]
                    if task == "attributes"
                    else np.full(store_labels["attributes"].shape[1:], -1, np.int8)
                )
        batch = {
            "images": torch.stack(images).contiguous(),
            "identity": torch.tensor(labels["identity"], dtype=torch.long),
            "age": torch.tensor(labels["age"], dtype=torch.float32),
            "gender": torch.tensor(labels["gender"], dtype=torch.long),
            "expression": torch.tensor(labels["expression"], dtype=torch.long),
            "attributes": torch.from_numpy(np.stack(labels["attributes"]).astype(np.int64)),
        }
        return batch

    def _augment(self, task: str, face: torch.Tensor) -> torch.Tensor:
        kind = "identity" if task == "identity" else "analysis"
        if kind not in self._augmenters:
            self._augmenters[kind] = _augmenter(kind)
        return self._augmenters[kind](face)
