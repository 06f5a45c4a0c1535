"""The one writer of evaluation results: the JSON that `hsvlt-eval --json` and training (`eval_results.json`) write."""

import json
import os
from pathlib import Path

from .loop import EvaluationResult
from .metrics import per_class_by_name


def results_payload(result: EvaluationResult, **extra) -> dict:
    """The overall metrics, the per-class AP by class name, the number of images scored and the skipped images,
    plus `extra` entries (e.g. the chance-level mAP)."""
    payload, per_class_ap = per_class_by_name(result.metrics, result.class_names)
    payload.update(extra)
    payload["per_class_AP"] = per_class_ap
    payload["num_images"] = len(result.scores)
    payload["skipped"] = [{"path": path, "reason": reason} for path, reason in result.skipped]
    return payload


def write_results(path: str | os.PathLike, result: EvaluationResult, **extra) -> Path:
    """Write `results_payload(result, **extra)` as JSON to `path` (NaN for classes without a positive)."""
    path = Path(path)
    path.write_text(json.dumps(results_payload(result, **extra), indent=2, allow_nan=True) + "\n")
    return path


def format_extras(extras: dict) -> str:
    """The lines training and `hsvlt-eval` print under the metric table: the mAP of the labels an open-vocabulary
    model was trained on and of the others (when it scored both), and the split's chance-level mAP."""
    lines = []
    if "mAP_unseen" in extras:
        lines.append(
            f"labels the model was trained on: mAP {extras['mAP_seen']:.2f}; labels unseen in training: "
            f"mAP {extras['mAP_unseen']:.2f}"
        )
    chance = extras["chance_mAP"]
    lines.append(
        "chance-level mAP of this split: "
        + ("n/a (no image has a positive label)" if chance is None else f"{chance:.2f}")
    )
    return "\n".join(lines)


def check_writable(path: str | os.PathLike) -> None:
    """Raise a one-line `ValueError` now, before any work, if a results file cannot be written to `path`."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a file to write results to.")
    if not directory.is_dir():
        raise ValueError(f"cannot write {path}: the directory {directory} does not exist.")
    if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write {path}: permission denied.")
