"""Evaluation reports: `report.json` for machines, `summary.md` and plots for people.

`write_report` writes everything into one folder; `headline` gives the few
figures worth printing on a terminal. matplotlib is imported only when plots
are drawn, and only through its Agg canvas, so no window or global backend is
touched.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from swinface.evaluate.metrics import (
    AgeResult,
    AttributeResult,
    ClassificationResult,
    GroupBreakdown,
    Result,
    VerificationMetrics,
)

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("verification", "expression", "age", "gender", "attributes")
DPI = 120
MAX_LISTED_FAILURES = 25  # the summary lists this many; report.json lists them all


@dataclass
class Failure(Result):
    """An image left out of every metric, and why."""

    source: str
    reason: str


@dataclass
class EvaluationReport(Result):
    """One evaluation: what was run on what, what failed, and the metrics of each task."""

    dataset: str
    task: str  # the task asked for: one of TASKS, or "all"
    weights: str | None = None
    n_samples: int = 0  # labelled images taken from the dataset
    n_pairs: int = 0  # verification pairs taken from the dataset
    n_images: int = 0  # distinct images run through the pipeline
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # label lines the dataset reader skipped
    verification: VerificationMetrics | None = None
    expression: ClassificationResult | None = None
    age: AgeResult | None = None
    gender: ClassificationResult | None = None
    attributes: AttributeResult | None = None
    groups: list[GroupBreakdown] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def tasks_done(self) -> list[str]:
        return [t for t in TASKS if getattr(self, t) is not None]

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["headline"] = [{"task": t, "metric": m, "value": v} for t, m, v in figures(self)]
        return d


# ---------------------------------------------------------------- figures and headline


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def _far(far: float) -> str:
    return f"{far:.0e}".replace("e-0", "e-")


def figures(report: EvaluationReport) -> list[tuple[str, str, str]]:
    """The headline figures as (task, metric, formatted value) rows."""
    rows: list[tuple[str, str, str]] = []
    v = report.verification
    if v is not None:
        k = v.kfold
        rows.append(
            (
                "verification",
                f"accuracy ({len(k.fold_accuracies)}-fold)",
                f"{_pct(k.accuracy)} ± {_pct(k.accuracy_std)}",
            )
        )
        rows.append(("verification", "threshold (mean over folds)", f"{k.threshold:.4f}"))
        rows.append(("verification", "AUC", f"{v.auc:.4f}"))
        for far, t in v.tar_at_far.items():
            if t.tar is not None:
                rows.append(("verification", f"TAR @ FAR={_far(far)}", _pct(t.tar)))
        if "flip" in report.settings:
            rows.append(("verification", "embeddings", _embedding_mode(report.settings["flip"])))
    for task in ("expression", "gender"):
        c: ClassificationResult | None = getattr(report, task)
        if c is not None:
            rows.append((task, "accuracy", _pct(c.accuracy)))
            rows.append((task, "mean per-class accuracy", _pct(c.mean_class_accuracy)))
    a = report.age
    if a is not None:
        rows.append(("age", "MAE", f"{a.mae:.2f} years"))
        rows.append(("age", f"CS({a.cs_threshold:g})", _pct(a.cs)))
        if a.epsilon_error is not None:
            rows.append(("age", "epsilon-error", f"{a.epsilon_error:.4f}"))
    if report.attributes is not None:
        n_attr = sum(c > 0 for c in report.attributes.counts.values())
        rows.append(
            (
                "attributes",
                f"mean accuracy ({n_attr} attributes)",
                _pct(report.attributes.mean_accuracy),
            )
        )
        rows.append(
            (
                "attributes",
                "mean majority-class rate (always the commoner answer)",
                _pct(report.attributes.mean_majority_rate),
            )
        )
    return rows


def _embedding_mode(flip: bool) -> str:
    return "face + mirrored face (flip)" if flip else "face alone (no flip)"


def _format_value(metric: str, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.2f}" if metric == "MAE" else _pct(value)


def _gap_text(g: GroupBreakdown) -> str:
    # A difference of two rates is in percentage points, not percent.
    size = f"{g.gap:.2f} years" if g.metric == "MAE" else f"{100 * g.gap:.2f} percentage points"
    return f"gap {size} (highest {g.highest}, lowest {g.lowest})"


def _images(n: int) -> str:
    return f"{n} image" + ("" if n == 1 else "s")


def headline(report: EvaluationReport) -> str:
    """The figures worth printing on a terminal, one per line."""
    lines = [
        f"{report.dataset}: {_images(report.n_images)} analysed, {len(report.failures)} failed"
        + (f", weights {report.weights}" if report.weights else "")
    ]
    width = max((len(f"{t} {m}") for t, m, _ in figures(report)), default=0)
    lines += [f"  {f'{t} {m}':<{width}}  {v}" for t, m, v in figures(report)]
    for g in report.groups:
        if g.highest is not None:
            lines.append(f"  {g.task} {g.metric} by {g.key}: {_gap_text(g)}")
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


# ---------------------------------------------------------------- summary.md


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _summary_overview(report: EvaluationReport) -> list[str]:
    rows = [
        ["Dataset", report.dataset],
        ["Weights", report.weights or "unknown"],
        [
            "Task",
            report.task + (f" ({', '.join(report.tasks_done)})" if report.task == "all" else ""),
        ],
        ["Date", report.created],
        *([["Labelled images", str(report.n_samples)]] if report.n_samples else []),
        *([["Verification pairs", str(report.n_pairs)]] if report.n_pairs else []),
        ["Images analysed", str(report.n_images)],
        ["Images failed (no face or unreadable)", str(len(report.failures))],
        ["Label lines skipped by the reader", str(len(report.skipped))],
    ]
    rows += [[k, str(v)] for k, v in report.settings.items()]
    return _table(["", ""], rows)


def _summary_verification(v: VerificationMetrics, flip: bool | None) -> list[str]:
    k = v.kfold
    lines = [
        "## Verification",
        "",
        f"{k.n_pairs} pairs ({k.n_same} same person, {k.n_different} different). In each fold the "
        "threshold is the one with the best accuracy on the other folds; the accuracy is "
        "measured on the held-out fold.",
        "",
    ]
    if flip is not None:
        lines += [
            "Embeddings: "
            + (
                "each face's embedding plus its horizontally mirrored face's, normalised "
                "(the paper's protocol)."
                if flip
                else "each face's own embedding, without its mirrored face (no flip)."
            ),
            "",
        ]
    rows = [
        [str(i + 1), str(n), f"{t:.4f}", _pct(a)]
        for i, (n, t, a) in enumerate(
            zip(k.fold_sizes, k.fold_thresholds, k.fold_accuracies, strict=True)
        )
    ]
    rows.append(
        [
            "mean",
            str(k.n_pairs),
            f"{k.threshold:.4f}",
            f"{_pct(k.accuracy)} ± {_pct(k.accuracy_std)}",
        ]
    )
    lines += _table(["Fold", "Pairs", "Threshold", "Accuracy"], rows)
    rows = [
        [
            _far(far),
            _pct(t.tar) if t.tar is not None else "n/a",
            f"{t.threshold:.4f}" if t.threshold is not None else "",
            t.note or "",
        ]
        for far, t in v.tar_at_far.items()
    ]
    lines += _table(["FAR", "TAR", "Threshold", "Note"], rows)
    lines += [
        f"Best single threshold over all pairs: {v.best_threshold:.4f} "
        f"(accuracy {_pct(v.best_accuracy)}, chosen on the same pairs).",
        "",
    ]
    return lines


def _summary_classes(task: str, c: ClassificationResult) -> list[str]:
    rows = [[lab, str(c.class_counts[lab]), _pct(c.class_accuracy[lab])] for lab in c.labels]
    return [f"## {task.capitalize()}", "", f"{c.n} faces.", ""] + _table(
        ["Class", "Faces", "Accuracy"], rows
    )


def _summary_age(a: AgeResult) -> list[str]:
    rows = [
        ["MAE", f"{a.mae:.2f} years"],
        ["Mean signed error", f"{a.mean_error:+.2f} years"],
        [f"CS({a.cs_threshold:g})", _pct(a.cs)],
    ]
    if a.epsilon_error is not None:
        rows.append(["epsilon-error", f"{a.epsilon_error:.4f}"])
    below = int(np.sum(a.pred < 0))
    if below:  # scored as predicted: clamping them at 0 would hide part of the error
        rows.append(["Predictions below 0 years", str(below)])
    return ["## Age", "", f"{a.n} faces.", ""] + _table(["Metric", "Value"], rows)


def _summary_attributes(a: AttributeResult) -> list[str]:
    ranked = sorted(a.accuracy.items(), key=lambda kv: -kv[1] if math.isfinite(kv[1]) else 1)
    rows = []
    for name, acc in ranked:
        majority = a.majority_rate.get(name, math.nan)
        gain = 100 * (acc - majority)
        rows.append(
            [
                name,
                str(a.counts[name]),
                _pct(acc),
                _pct(majority),
                f"{gain:+.2f}" if math.isfinite(gain) else "n/a",
            ]
        )
    intro = (
        f"{a.n} faces; mean accuracy {_pct(a.mean_accuracy)}, against "
        f"{_pct(a.mean_majority_rate)} for always giving each attribute's commoner answer "
        "(the majority-class rate)."
    )
    header = ["Attribute", "Labelled", "Accuracy", "Majority rate", "Gain (points)"]
    return ["## Attributes", "", intro, ""] + _table(header, rows)


def _summary_group(g: GroupBreakdown) -> list[str]:
    rows = [[name, str(v.n), _format_value(g.metric, v.value)] for name, v in g.groups.items()]
    lines = [f"### {g.task.capitalize()} {g.metric} by {g.key}", ""]
    lines += _table([g.key.capitalize(), "Faces", g.metric], rows)
    if g.highest is not None:
        lines += [f"G{_gap_text(g)[1:]}.", ""]
    return lines + [f"- {n}" for n in g.notes] + ([""] if g.notes else [])


def _summary_failures(report: EvaluationReport) -> list[str]:
    lines = ["## Failed images", ""]
    if not report.failures:
        return lines + ["None: every image gave a face.", ""]
    lines += [f"{_images(len(report.failures))} left out of every metric:", ""]
    lines += [f"- `{f.source}`: {f.reason}" for f in report.failures[:MAX_LISTED_FAILURES]]
    return lines + _more(len(report.failures))


def _more(n: int) -> list[str]:
    more = n - MAX_LISTED_FAILURES
    return ([f"- ... and {more} more (see report.json)"] if more > 0 else []) + [""]


def _summary_skipped(report: EvaluationReport) -> list[str]:
    if not report.skipped:
        return []
    lines = ["## Skipped label lines", "", "The dataset reader skipped these malformed lines:", ""]
    lines += [f"- {s}" for s in report.skipped[:MAX_LISTED_FAILURES]]
    return lines + _more(len(report.skipped))


def summary_markdown(report: EvaluationReport, plots: Sequence[Path] = ()) -> str:
    """The Markdown summary a person reads."""
    lines = [f"# SwinFace evaluation: {report.dataset}", ""] + _summary_overview(report)
    if report.failures:
        lines += [
            f"{_images(len(report.failures))} failed (unreadable, or no face found): they are "
            "excluded from every metric, and so are the pairs that use them.",
            "",
        ]
    lines += [f"> {n}" for n in report.notes] + ([""] if report.notes else [])
    lines += ["## Headline figures", ""]
    lines += _table(["Task", "Metric", "Value"], [list(r) for r in figures(report)])
    if report.verification is not None:
        lines += _summary_verification(report.verification, report.settings.get("flip"))
    for task in ("expression", "gender"):
        if getattr(report, task) is not None:
            lines += _summary_classes(task, getattr(report, task))
    if report.age is not None:
        lines += _summary_age(report.age)
    if report.attributes is not None:
        lines += _summary_attributes(report.attributes)
    if report.groups:
        lines += ["## By group", ""]
        for g in report.groups:
            lines += _summary_group(g)
    lines += _summary_failures(report) + _summary_skipped(report)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


def _figure(figsize: tuple[float, float] = (6.4, 4.8)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def plot_roc(v: VerificationMetrics, path: Path, title: str) -> Path:
    """ROC on a log FAR axis, with the measured TAR@FAR points marked."""
    fig = _figure()
    ax = fig.subplots()
    fpr, tpr = v.roc.fpr, v.roc.tpr
    keep = fpr > 0  # log axis: FAR 0 cannot be drawn
    ax.plot(fpr[keep], tpr[keep], lw=1.5, label=f"ROC (AUC {v.auc:.4f})")
    for far, t in v.tar_at_far.items():
        if t.tar is not None and t.far:
            ax.plot([t.far], [t.tar], "o", ms=5, color="tab:red")
            ax.annotate(
                f"{_pct(t.tar)} @ {_far(far)}",
                (t.far, t.tar),
                textcoords="offset points",
                xytext=(5, -12),
                fontsize=8,
            )
    ax.set_xscale("log")
    ax.set_xlim(left=max(min(fpr[keep].min(), 1e-1) / 2, 1e-7), right=1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("False accept rate (FAR)")
    ax.set_ylabel("True accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_confusion(c: ClassificationResult, path: Path, title: str) -> Path:
    """The confusion matrix with rows normalised to 1, values and counts in the cells."""
    conf = np.asarray(c.confusion, dtype=np.float64)
    rows = conf.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(rows > 0, conf / rows, np.nan)
    k = len(c.labels)
    fig = _figure((1.0 + 0.9 * k, 0.8 + 0.8 * k) if k > 3 else (4.8, 4.0))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            text = "–" if np.isnan(norm[i, j]) else f"{norm[i, j]:.2f}\n({int(conf[i, j])})"
            color = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(k), c.labels, rotation=45, ha="right")
    ax.set_yticks(range(k), c.labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Fraction of true class")
    return _save(fig, path)


def plot_age_error(a: AgeResult, path: Path, title: str) -> Path:
    """Histogram of signed age errors (predicted - true), with ±MAE marked."""
    err = a.pred - a.true
    fig = _figure()
    ax = fig.subplots()
    lo, hi = math.floor(err.min()), math.ceil(err.max())
    ax.hist(
        err, bins=np.arange(lo, hi + 2) - 0.5 if hi - lo < 200 else 100, color="tab:blue", alpha=0.8
    )
    ax.axvline(0, color="black", lw=1)
    for sign in (-1, 1):
        ax.axvline(
            sign * a.mae,
            color="tab:red",
            ls="--",
            lw=1.2,
            label=f"±MAE = {a.mae:.2f} years" if sign > 0 else None,
        )
    ax.set_xlabel("Predicted - true age (years)")
    ax.set_ylabel("Faces")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def age_scatter_limits(a: AgeResult) -> tuple[float, float]:
    """Both axes' range: from 0, or below it to show every negative prediction, to the oldest.

    Predictions are plotted as the model gave them; clipping the axis at 0
    would hide the faces it got most wrong.
    """
    lo = min(float(a.true.min()), float(a.pred.min()), 0.0)
    hi = max(float(a.true.max()), float(a.pred.max())) + 1
    return (lo - 1 if lo < 0 else lo), hi


def plot_age_scatter(a: AgeResult, path: Path, title: str) -> Path:
    """Predicted against true age, with the identity line and the CS band."""
    fig = _figure((5.6, 5.2))
    ax = fig.subplots()
    ax.scatter(a.true, a.pred, s=6, alpha=0.5)
    lo, hi = age_scatter_limits(a)
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="predicted = true")
    for d in (-a.cs_threshold, a.cs_threshold):
        ax.plot([lo, hi], [lo + d, hi + d], color="tab:red", ls=":", lw=1)
    ax.plot([], [], color="tab:red", ls=":", label=f"±{a.cs_threshold:g} years")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("True age (years)")
    ax.set_ylabel("Predicted age (years)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_group(g: GroupBreakdown, path: Path, title: str) -> Path:
    """One bar per group, with its n, and the gap between the highest and lowest annotated."""
    names = list(g.groups)
    values = [g.groups[n].value for n in names]
    years = g.metric == "MAE"
    scale = 1.0 if years else 100.0  # rates are drawn in percent
    fig = _figure((max(6.4, 1.0 + 0.9 * len(names)), 4.6))
    ax = fig.subplots()
    heights = [scale * v if math.isfinite(v) else 0.0 for v in values]
    bars = ax.bar(names, heights, color="tab:blue")
    for bar, name, v in zip(bars, names, values, strict=True):
        ax.annotate(
            f"{_format_value(g.metric, v)}\nn={g.groups[name].n}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    top = max(heights, default=0.0)
    ax.set_ylim(0, top * 1.2 if years and top > 0 else (1.0 if years else 112.0))
    ax.set_xlabel(g.key.capitalize())
    ax.set_ylabel(f"{g.metric} (years)" if years else f"{g.metric} (%)")
    if g.highest is not None:
        title += f"\n{_gap_text(g)}"
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def plot_attributes(a: AttributeResult, path: Path, title: str) -> Path:
    """Per-attribute accuracy as bars, best at the top, each with its majority-class rate marked.

    An attribute that is nearly always absent ("Mustache") scores high by always
    answering "no": the mark shows that baseline beside each bar.
    """
    ranked = sorted(((v, k) for k, v in a.accuracy.items() if math.isfinite(v)))
    names = [k for _, k in ranked]
    majority = [100 * a.majority_rate.get(k, math.nan) for k in names]
    fig = _figure((7.0, 0.22 * len(ranked) + 1.5))
    ax = fig.subplots()
    ax.barh(names, [100 * v for v, _ in ranked], color="tab:blue", label="accuracy")
    ax.scatter(
        majority,
        names,
        marker="|",
        s=120,
        linewidths=2,
        color="black",
        zorder=3,
        label="majority-class rate",
    )
    ax.axvline(
        100 * a.mean_accuracy, color="tab:red", ls="--", label=f"mean {_pct(a.mean_accuracy)}"
    )
    lowest = min([100 * v for v, _ in ranked] + [m for m in majority if math.isfinite(m)] or [0])
    ax.set_xlim(max(0.0, lowest - 5), 101)  # 101: a mark at 100% stays visible
    ax.set_xlabel("Accuracy (%)")
    ax.set_title(title, pad=20)
    ax.tick_params(axis="y", labelsize=7)
    ax.margins(y=0.01)
    # Above the bars, between them and the title: inside the axes it would hide marks.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    return _save(fig, path)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")


def write_plots(report: EvaluationReport, out: Path) -> list[Path]:
    """Every plot the report's results allow, as PNG files in `out`."""
    name = report.dataset
    plots: list[Path] = []
    if report.verification is not None:
        plots.append(plot_roc(report.verification, out / "roc.png", f"{name}: verification ROC"))
    for task in ("expression", "gender"):
        c = getattr(report, task)
        if c is not None:
            path = out / f"confusion_{task}.png"
            plots.append(plot_confusion(c, path, f"{name}: {task} (accuracy {_pct(c.accuracy)})"))
    if report.age is not None:
        plots.append(plot_age_error(report.age, out / "age_error.png", f"{name}: age error"))
        plots.append(
            plot_age_scatter(report.age, out / "age_scatter.png", f"{name}: predicted vs true age")
        )
    if report.attributes is not None:
        plots.append(
            plot_attributes(
                report.attributes, out / "attributes.png", f"{name}: attribute accuracy"
            )
        )
    for g in report.groups:
        path = out / f"group_{_slug(g.task)}_{_slug(g.metric)}_by_{_slug(g.key)}.png"
        plots.append(plot_group(g, path, f"{name}: {g.task} {g.metric} by {g.key}"))
    return plots


def write_report(result: EvaluationReport, out_dir: str | Path) -> list[Path]:
    """Write report.json, summary.md and the plots into `out_dir`; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n")
    plots = write_plots(result, out)
    md_path = out / "summary.md"
    md_path.write_text(summary_markdown(result, plots))
    log.info("wrote the %s report to %s (%d plots)", result.dataset, out, len(plots))
    return [json_path, md_path, *plots]
