"""Multi-label evaluation: the package's `evaluate` metric, a `Trainer` `compute_metrics` and a text report.

The metric itself lives in `metric/multilabel_map.py`, an `evaluate` metric script that is also importable: its
plain-numpy core `multilabel_metrics` is what `compute_metrics_fn` calls, so evaluation during training does not
pay for `evaluate`'s Arrow round trip. All values are percentages; see the metric card `metric/README.md`.
"""

import math
import re
from pathlib import Path

import evaluate
import numpy as np

from .metric.multilabel_map import multilabel_metrics


__all__ = [
    "AUTHORS_LOGIT_THRESHOLDS",
    "MULTILABEL_METRIC_PATH",
    "compute_metrics_fn",
    "format_metric_table",
    "load_multilabel_metric",
    "multilabel_metrics",
    "per_class_by_name",
    "sigmoid",
    "swept_threshold_metrics",
]

MULTILABEL_METRIC_PATH = Path(__file__).resolve().parent / "metric" / "multilabel_map.py"
"""Path of the `evaluate` metric script inside the installed package."""

_PRF_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def load_multilabel_metric(**load_kwargs) -> evaluate.EvaluationModule:
    """`evaluate.load` the package's multi-label metric from its local path (no network access needed).

    `load_kwargs` are passed to `evaluate.load` (e.g. `experiment_id`, `num_process` and `process_id` for
    distributed evaluation).
    """
    return evaluate.load(str(MULTILABEL_METRIC_PATH), **load_kwargs)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Float64 sigmoid of logits that never overflows."""
    # exp(-log(1 + exp(-x))) never overflows; in float64 the scores of logits up to ~36 stay below 1.0 (float32: ~17).
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, dtype=np.float64)))


def compute_metrics_fn(threshold: float = 0.5, top_k: int = 3):
    """Return a `Trainer(compute_metrics=...)` function computing the multi-label metrics from logits.

    The returned function takes an `EvalPrediction` whose `predictions` are the logits (num_images, num_classes),
    or a tuple whose first element they are, and whose `label_ids` are the labels with 1 positive, 0 negative and
    -1 ignored. It applies a sigmoid and returns a flat dict of floats: `mAP`, `CP`, `CR`, `CF1`, `OP`, `OR`, `OF1`
    and the same six with the suffix `_top{top_k}` (percentages). Per-class AP is left out because `Trainer`
    logs scalars; compute it with `multilabel_metrics` or `load_multilabel_metric()`. It expects the whole
    evaluation set at once (the `Trainer` default, `batch_eval_metrics=False`).
    """

    def compute_metrics(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        results = multilabel_metrics(sigmoid(logits), eval_prediction.label_ids, threshold=threshold, top_k=top_k)
        del results["per_class_AP"]
        return results

    return compute_metrics


AUTHORS_LOGIT_THRESHOLDS = tuple(round(-1.0 + 0.1 * step, 1) for step in range(20))
"""The logit thresholds MSRN's authors sweep (`util.evaluation`): -1.0, -0.9, ..., 0.9."""


def swept_threshold_metrics(scores: np.ndarray, targets: np.ndarray, top_k: int = 3) -> dict[str, float]:
    """
    CP/CR/CF1/OP/OR/OF1 (and their top-k variants) at the logit threshold, among `AUTHORS_LOGIT_THRESHOLDS`, that
    maximises CF1 + OF1 on these very images, as MSRN's authors report them. The threshold is TUNED ON THE EVALUATED
    SPLIT, so these numbers are optimistic and not comparable with numbers at a fixed threshold. Keys end in
    `_swept`; `swept_logit_threshold` is the chosen threshold.
    """
    best, best_threshold = None, None
    for threshold in AUTHORS_LOGIT_THRESHOLDS:
        results = multilabel_metrics(scores, targets, threshold=float(sigmoid(threshold)), top_k=top_k)
        if best is None or results["CF1"] + results["OF1"] > best["CF1"] + best["OF1"]:
            best, best_threshold = results, threshold
    swept = {f"{key}_swept": value for key, value in best.items() if key not in ("mAP", "per_class_AP")}
    return {"swept_logit_threshold": best_threshold, **swept}


def format_swept_table(swept: dict[str, float]) -> str:
    """The swept-threshold metrics as a labelled table (see `swept_threshold_metrics`)."""
    table = format_metric_table(
        {key.removesuffix("_swept"): value for key, value in swept.items() if key.endswith("_swept")}
    )
    return (
        f"at the swept logit threshold {swept['swept_logit_threshold']:+.1f} (as MSRN's authors; tuned on this split, "
        f"optimistic):\n{table}"
    )


def seen_and_unseen_map(results, seen_names) -> dict[str, float]:
    """`mAP_seen` and `mAP_unseen`: the mean AP of the classes seen in training and of the others (classes without a
    positive left out), from an `EvaluationResult` whose classes include both (the NUS-WIDE 925/81 protocol)."""
    ap = dict(zip(results.class_names, results.metrics["per_class_AP"]))
    seen = [value for name, value in ap.items() if name in set(seen_names)]
    unseen = [value for name, value in ap.items() if name not in set(seen_names)]
    return {"mAP_seen": float(np.nanmean(seen)), "mAP_unseen": float(np.nanmean(unseen))}


def _format_value(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def per_class_by_name(results: dict, class_names) -> tuple[dict, dict]:
    """Split metric results into the overall values and `{class name: AP}` (e.g. for JSON files and model cards)."""
    overall = {key: value for key, value in results.items() if key != "per_class_AP"}
    return overall, dict(zip(class_names, results["per_class_AP"]))


def format_metric_table(results: dict, class_names=None) -> str:
    """Render the results of the multi-label metric as a text table for command-line tools.

    Args:
        results: the dict returned by `multilabel_metrics` or the `evaluate` metric (`mAP`, the threshold metrics,
            the `*_top{k}` metrics and `per_class_AP`; any of these may be missing).
        class_names: names of the classes in the order of `per_class_AP`; class indices are shown if omitted.

    Returns:
        The overall metrics (mAP, then one row of CP/CR/CF1/OP/OR/OF1 at the threshold and one for top-k), followed
        by one row of AP per class; "n/a" marks a class without any positive.
    """
    per_class_ap = results.get("per_class_AP", [])
    if class_names is None:
        class_names = [str(index) for index in range(len(per_class_ap))]
    elif len(class_names) != len(per_class_ap):
        raise ValueError(f"Got {len(class_names)} class names for {len(per_class_ap)} per-class AP values.")

    sections = []
    if "mAP" in results:
        sections.append([f"mAP: {_format_value(results['mAP'])}"])
    rows = [("threshold", "")]
    for key in results:
        match = re.fullmatch(r"CP_top(\d+)", key)
        if match:
            rows.append((f"top-{match.group(1)}", f"_top{match.group(1)}"))
    rows = [(label, suffix) for label, suffix in rows if all(key + suffix in results for key in _PRF_KEYS)]
    if rows:
        header = f"{'':<10}" + "".join(f"{key:>8}" for key in _PRF_KEYS)
        sections.append(
            [header]
            + [
                f"{label:<10}" + "".join(f"{_format_value(results[key + suffix]):>8}" for key in _PRF_KEYS)
                for label, suffix in rows
            ]
        )
    if per_class_ap:
        width = max(len("class"), *(len(name) for name in class_names))
        sections.append(
            [f"{'class':<{width}}  {'AP':>7}"]
            + [f"{name:<{width}}  {_format_value(ap):>7}" for name, ap in zip(class_names, per_class_ap)]
        )
    return "\n\n".join("\n".join(section) for section in sections)
