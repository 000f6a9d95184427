"""Evaluation: the field's standard protocols and metrics, and reports people read.

from swinface.evaluate import evaluate, write_report, headline

report = evaluate("verification", dataset, analyzer, out_dir="reports/lfw")
print(headline(report))
"""

from swinface.evaluate.flip import with_flip
from swinface.evaluate.metrics import (
    AgeResult,
    AttributeResult,
    ClassificationResult,
    GroupBreakdown,
    GroupValue,
    RocCurve,
    TarAtFar,
    VerificationMetrics,
    VerificationResult,
    age_metrics,
    attribute_metrics,
    best_threshold,
    by_group,
    classification_metrics,
    epsilon_error,
    gender_metrics,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_10fold,
    verification_metrics,
)
from swinface.evaluate.report import EvaluationReport, Failure, headline, write_report
from swinface.evaluate.runner import evaluate
from swinface.evaluate.slices import stratified_folds, stratified_sample

__all__ = [
    "AgeResult",
    "AttributeResult",
    "ClassificationResult",
    "EvaluationReport",
    "Failure",
    "GroupBreakdown",
    "GroupValue",
    "RocCurve",
    "TarAtFar",
    "VerificationMetrics",
    "VerificationResult",
    "age_metrics",
    "attribute_metrics",
    "best_threshold",
    "by_group",
    "classification_metrics",
    "epsilon_error",
    "evaluate",
    "gender_metrics",
    "headline",
    "roc_auc",
    "roc_curve",
    "stratified_folds",
    "stratified_sample",
    "tar_at_far",
    "verification_10fold",
    "verification_metrics",
    "with_flip",
    "write_report",
]
