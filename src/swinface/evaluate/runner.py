"""Run a `FaceAnalyzer` over a labelled dataset and measure it with the field's protocols.

`evaluate` takes any dataset with `.samples`, `.pairs`, `.name` and `.skipped`
(as `swinface.data.open_dataset` returns) and any analyzer with
`.analyze_many(images)`. Each distinct image goes through the pipeline once;
its largest face is the one scored. Images that cannot be read or show no face
are recorded, and left out of every metric.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swinface.decode import cosine_similarity
from swinface.evaluate.flip import can_flip, with_flip
from swinface.evaluate.metrics import (
    GroupBreakdown,
    age_metrics,
    attribute_metrics,
    by_group,
    classification_metrics,
    verification_metrics,
)
from swinface.evaluate.report import TASKS, EvaluationReport, Failure, write_report
from swinface.evaluate.slices import DEFAULT_SEED, stratified_folds, stratified_sample
from swinface.tasks import CELEBA_ATTRIBUTES, EXPRESSION_LABELS, GENDER_LABELS

log = logging.getLogger(__name__)

# The label each per-image task needs on a Sample.
_LABEL = {"expression": "expression", "age": "age", "gender": "gender", "attributes": "attributes"}


@dataclass
class _Scored:
    """A labelled sample and the analysis of its main face."""

    sample: Any
    face: Any  # swinface.decode.FaceAttributes


class _Images:
    """The distinct images to analyse; an image used twice (as in LFW pairs) is run once."""

    def __init__(self) -> None:
        self.refs: list[Any] = []
        self.sources: list[str] = []
        self._index: dict[tuple[str, Any], int] = {}

    def add(self, ref: Any, source: str) -> int:
        # Paths compare by name; pixels and other objects by identity (hashing arrays is costly).
        key = ("path", os.fspath(Path(ref))) if isinstance(ref, (str, Path)) else ("id", id(ref))
        if key not in self._index:
            self._index[key] = len(self.refs)
            self.refs.append(ref)
            self.sources.append(str(ref) if isinstance(ref, (str, Path)) else source)
        return self._index[key]


def _describe(ref: Any, source: str, fallback: str) -> str:
    return str(ref) if isinstance(ref, (str, Path)) else (source or fallback)


def _tasks_for(task: str, samples: Sequence[Any], pairs: Sequence[Any], name: str) -> list[str]:
    available = [t for t in _LABEL if any(getattr(s, _LABEL[t]) is not None for s in samples)]
    if pairs:
        available.insert(0, "verification")
    if task == "all":
        if not available:
            raise ValueError(f"dataset {name!r} has no labels for any task")
        return available
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)} or all")
    if task not in available:
        what = "verification pairs" if task == "verification" else f"{task} labels"
        raise ValueError(f"dataset {name!r} has no {what}")
    return [task]


def _analyse(images: _Images, analyzer: Any, progress: bool, name: str):
    """The main face of every image (None where it failed), and the failures."""
    from swinface.progress import progress as report_progress

    faces: list[Any] = []
    failures: list[Failure] = []
    results = report_progress(
        analyzer.analyze_many(images.refs),
        f"evaluate {name}",
        "image",
        total=len(images.refs),
        enabled=progress,
    )
    for source, result in zip(images.sources, results, strict=False):
        face = result.main_face() if result.error is None else None
        if result.error is not None:
            failures.append(Failure(source, f"unreadable: {result.error}"))
        elif face is None:
            failures.append(Failure(source, "no face found"))
        faces.append(None if face is None else face.analysis)
    if len(faces) != len(images.refs):
        raise RuntimeError(f"the analyzer gave {len(faces)} results for {len(images.refs)} images")
    return faces, failures


# ---------------------------------------------------------------- per-task metrics


def _verification(pairs, pair_index, faces, report: EvaluationReport, seed: int):
    scores, same, folds = [], [], []
    for pair, (a, b) in zip(pairs, pair_index, strict=True):
        if faces[a] is None or faces[b] is None:
            continue
        scores.append(cosine_similarity(faces[a].embedding, faces[b].embedding))
        same.append(bool(pair.same))
        folds.append(pair.fold)
    if len(scores) < len(pairs):
        report.notes.append(
            f"verification: {len(pairs) - len(scores)} of {len(pairs)} pairs left out "
            "because an image failed"
        )
    try:
        fold_ids = _folds(folds, same, report, seed)
        return verification_metrics(scores, same, fold_ids)
    except ValueError as err:  # too few pairs left, or only one kind: keep the rest of the report
        report.notes.append(f"verification: not measured, {err}")
        return None


def _folds(folds: list, same: list[bool], report: EvaluationReport, seed: int) -> np.ndarray:
    """The dataset's own folds (LFW's ten sets, a .bin's ten runs), else stratified random ones.

    A pair list sorted by kind would give consecutive folds of one kind only,
    and an accuracy that is just the majority rate: random folds keep each
    fold's same/different ratio.
    """
    own = bool(folds) and all(f is not None for f in folds)
    if own and len(set(folds)) >= 2:
        ids = np.asarray(folds)
    else:
        ids = stratified_folds(same, 10, seed)
        why = "fewer than two of the dataset's folds are left" if own else "no folds in the data"
        report.notes.append(
            f"verification: {why}; drew 10 folds at random (seed {seed}), each with the "
            "same share of same-person pairs"
        )
    y = np.asarray(same, bool)
    one_kind = [
        str(k + 1)  # as the report numbers folds
        for k, f in enumerate(np.unique(ids))
        if y[ids == f].all() or not y[ids == f].any()
    ]
    if one_kind and y.any() and not y.all():  # a set of one kind is warned about once, before
        _warn(
            report,
            f"verification: fold(s) {', '.join(one_kind)} hold only one "
            "kind of pair: their accuracy measures one kind of error only",
        )
    return ids


def _warn(report: EvaluationReport, message: str) -> None:
    log.warning("%s", message)
    report.notes.append(message)


def _labels(scored: list[_Scored], task: str) -> tuple[np.ndarray, np.ndarray, list[_Scored]]:
    """Predictions and true labels of `task` for the samples that have its label."""
    kept = [s for s in scored if getattr(s.sample, _LABEL[task]) is not None]
    if task == "age":
        pred = [s.face.age for s in kept]
    elif task == "gender":
        pred = [s.face.gender for s in kept]
    elif task == "expression":
        pred = [s.face.expression for s in kept]
    else:
        pred = [[s.face.attributes[n] for n in CELEBA_ATTRIBUTES] for s in kept]
    true = [getattr(s.sample, _LABEL[task]) for s in kept]
    if task == "attributes":
        return np.asarray(pred, np.float64).reshape(-1, 40), np.asarray(true, np.int64), kept
    return np.asarray(pred), np.asarray(true), kept


# name of the headline metric per task, its function of (pred, true), and whether higher is better
_GROUP_METRICS: dict[str, tuple[str, Callable[[Any, Any], float], bool]] = {
    "expression": (
        "accuracy",
        lambda p, t: classification_metrics(p, t, EXPRESSION_LABELS).accuracy,
        True,
    ),
    "gender": ("accuracy", lambda p, t: classification_metrics(p, t, GENDER_LABELS).accuracy, True),
    "age": ("MAE", lambda p, t: age_metrics(p, t).mae, False),
    "attributes": ("mean accuracy", lambda p, t: attribute_metrics(p, t).mean_accuracy, True),
}


def _task_result(task: str, scored: list[_Scored], notes: list[str]):
    """The metrics of one per-image task, or None (with a note) when nothing is left to score."""
    pred, true, kept = _labels(scored, task)
    if not kept:
        notes.append(f"{task}: not measured, no labelled image gave a face")
        return None
    if task == "age":
        stds = [s.sample.age_std for s in kept]
        std = None if any(v is None or v <= 0 for v in stds) else stds
        if std is None and any(v is not None for v in stds):
            notes.append("age: epsilon-error not computed, some images lack an age spread")
        return age_metrics(pred, true, std)
    if task == "attributes":
        return attribute_metrics(pred, true)
    labels = GENDER_LABELS if task == "gender" else EXPRESSION_LABELS
    return classification_metrics(pred, true, labels)


def _group_breakdowns(
    task: str, scored: list[_Scored], keys: Iterable[str]
) -> list[GroupBreakdown]:
    metric, fn, higher = _GROUP_METRICS[task]
    out = []
    for key in keys:
        pred, true, kept = _labels([s for s in scored if key in s.sample.groups], task)
        if kept:
            groups = [s.sample.groups[key] for s in kept]
            out.append(
                by_group(
                    fn,
                    groups,
                    pred,
                    true,
                    metric=metric,
                    key=key,
                    task=task,
                    higher_is_better=higher,
                )
            )
    return out


# ---------------------------------------------------------------- the entry point


def _weights_name(analyzer: Any) -> str | None:
    info = getattr(getattr(analyzer, "model", None), "weights_info", None)
    return getattr(info, "name", None)


def _skipped(dataset: Any) -> list[str]:
    skipped = getattr(dataset, "skipped", None) or []
    if isinstance(skipped, int):
        return [f"{skipped} label lines"] if skipped else []
    return [str(s) for s in skipped]


def _collect(samples: Sequence[Any], pairs: Sequence[Any]):
    """The distinct images, and where each sample's and each pair's images are among them."""
    images = _Images()
    sample_index = [
        images.add(s.image, _describe(s.image, s.source, f"sample {i}"))
        for i, s in enumerate(samples)
    ]
    pair_index = [
        (
            images.add(p.image_a, _describe(p.image_a, p.source, f"pair {i}") + " (first)"),
            images.add(p.image_b, _describe(p.image_b, p.source, f"pair {i}") + " (second)"),
        )
        for i, p in enumerate(pairs)
    ]
    return images, sample_index, pair_index


# The class a slice keeps the shares of, per task, for tasks with classes.
_STRATA = ("expression", "gender")


def _take(samples: list, pairs: list, limit: int | None, seed: int, image_tasks: list[str]):
    """`limit` samples and `limit` pairs drawn at random, stratified by class and by kind of pair.

    Pairs keep the share of each (dataset fold, same/different) cell, so a
    limited run still sees every fold and both kinds.
    """
    if limit is None:
        return samples, pairs
    if limit < 1:
        raise ValueError(f"limit: expected a positive number of samples or pairs, got {limit}")
    label = next((t for t in _STRATA if t in image_tasks), None)
    keys = [getattr(s, _LABEL[label]) if label else None for s in samples]
    samples = [samples[i] for i in stratified_sample(keys, limit, seed)]
    pairs = [pairs[i] for i in stratified_sample([(p.fold, p.same) for p in pairs], limit, seed)]
    return samples, pairs


def _check_balance(samples: list, pairs: list, image_tasks: list[str], report: EvaluationReport):
    """Warn when what is scored holds one class only: its accuracy says little."""
    if pairs and len({bool(p.same) for p in pairs}) == 1:
        kind = "same-person" if pairs[0].same else "different-person"
        _warn(report, f"verification: only {kind} pairs in this set")
    for task in (t for t in _STRATA if t in image_tasks):
        labels = {getattr(s, _LABEL[task]) for s in samples} - {None}
        if len(labels) == 1:
            names = GENDER_LABELS if task == "gender" else EXPRESSION_LABELS
            _warn(report, f"{task}: every image is of one class ({names[labels.pop()]})")


def _flip_setting(flip: bool | None, pairs: list, analyzer: Any, report: EvaluationReport) -> bool:
    """Whether verification uses flip-summed embeddings; the paper's protocol by default."""
    if not pairs:
        return False
    if flip is None:
        if can_flip(analyzer):
            return True
        report.notes.append(
            "verification: single-image embeddings, this analyzer cannot add the mirrored "
            "face's (the paper's protocol)"
        )
        return False
    if flip and not can_flip(analyzer):
        raise ValueError(
            f"flip: {type(analyzer).__name__} cannot run mirrored faces (it has no runner)"
        )
    return flip


def evaluate(
    task: str,
    dataset: Any,
    analyzer: Any,
    *,
    out_dir: str | Path | None = None,
    group_by: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = DEFAULT_SEED,
    flip: bool | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Evaluate `analyzer` on `dataset` for `task` (or "all" the dataset's labels allow).

    `group_by` names the `sample.groups` keys to break metrics down by (default:
    every key present). `limit` draws that many samples and pairs at random
    (from `seed`), keeping each class's share; the seed also draws verification
    folds for pairs that carry none. `flip` scores verification on
    `normalize(embedding(face) + embedding(mirrored face))`, the paper's protocol
    and the default (None) for pairs; False uses the face alone. With `out_dir`,
    the report files are written there too.
    """
    name = str(getattr(dataset, "name", "") or "dataset")
    samples = list(getattr(dataset, "samples", []) or [])
    pairs = list(getattr(dataset, "pairs", []) or [])
    tasks = _tasks_for(task, samples, pairs, name)
    pairs = pairs if "verification" in tasks else []
    image_tasks = [t for t in tasks if t in _LABEL]
    samples = [s for s in samples if any(getattr(s, _LABEL[t]) is not None for t in image_tasks)]
    samples, pairs = _take(samples, pairs, limit, seed, image_tasks)
    report = EvaluationReport(
        dataset=name,
        task=task,
        weights=_weights_name(analyzer),
        n_samples=len(samples),
        n_pairs=len(pairs),
        skipped=_skipped(dataset),
    )
    use_flip = _flip_setting(flip, pairs, analyzer, report)
    report.settings = {
        "aligned": getattr(analyzer, "aligned", None),
        "limit": limit,
        "seed": seed,
        **({"flip": use_flip} if pairs else {}),
    }
    _check_balance(samples, pairs, image_tasks, report)
    images, sample_index, pair_index = _collect(samples, pairs)
    report.n_images = len(images.refs)
    log.info("evaluating %s on %s: %d images", "/".join(tasks), name, len(images.refs))
    faces, report.failures = _analyse(
        images, with_flip(analyzer) if use_flip else analyzer, progress, name
    )
    if report.failures:
        log.warning(
            "%d of %d images failed: left out of the metrics", len(report.failures), len(faces)
        )
    scored = [_Scored(s, faces[k]) for s, k in zip(samples, sample_index, strict=True)]
    scored = [s for s in scored if s.face is not None]
    keys = sorted({k for s in scored for k in s.sample.groups}) if group_by is None else group_by
    if pairs:
        report.verification = _verification(pairs, pair_index, faces, report, seed)
    for t in image_tasks:
        setattr(report, t, _task_result(t, scored, report.notes))
        if getattr(report, t) is not None:
            report.groups += _group_breakdowns(t, scored, keys)
    missing = [k for k in keys if not any(k in s.sample.groups for s in scored)]
    if missing and image_tasks:
        report.notes.append(f"no {', '.join(missing)} group labels on the scored images")
    if out_dir is not None:
        write_report(report, out_dir)
    return report


__all__ = ["evaluate"]
