"""Evaluation: the one prediction loop over a split (`loop`), the multi-label metrics (`metrics`, with the
`evaluate` metric module in `metric/`) and the one results writer (`results`)."""

from .loop import EvaluationResult, evaluate_all_classes, evaluate_split
from .metrics import (
    MULTILABEL_METRIC_PATH,
    compute_metrics_fn,
    format_metric_table,
    load_multilabel_metric,
    multilabel_metrics,
    per_class_by_name,
    sigmoid,
)
from .results import check_writable, format_extras, results_payload, write_results


__all__ = [
    "MULTILABEL_METRIC_PATH",
    "EvaluationResult",
    "check_writable",
    "compute_metrics_fn",
    "evaluate_all_classes",
    "evaluate_split",
    "format_extras",
    "format_metric_table",
    "load_multilabel_metric",
    "multilabel_metrics",
    "per_class_by_name",
    "results_payload",
    "sigmoid",
    "write_results",
]
