"""Choosing decision thresholds on a calibration split (pure numpy; used by `hsvlt-calibrate`).

A label is predicted when its score is at or above its threshold. Every strategy looks at the cuts of the ranked
scores: cutting after a group of equal scores predicts that group and every higher score. The threshold of a cut is
the midpoint between the lowest score it keeps and the next lower score (the lowest score itself when nothing is
left out), so that it does not sit on a calibration score.

- `f1`: per label, the cut that maximises that label's F1 (ties: the higher threshold).
- `precision`: per label, the lowest cut whose precision reaches `target_precision` (the highest recall at that
  precision); a label that never reaches it falls back to the global threshold.
- `global`: one threshold for every label, the cut of all scores that maximises CF1 + OF1 (ML-GCN's definitions).

Labels with fewer than `min_positives` positives in the calibration split get the global threshold too. Targets are
1 (positive), 0 (negative) or -1 (ignored: left out).
"""

import os
from dataclasses import dataclass

import numpy as np

from .metric.multilabel_map import _precision_recall_f1


STRATEGIES = ("f1", "precision", "global")
MAX_GLOBAL_CANDIDATES = 512
"""The global strategy tries at most this many thresholds (evenly spaced among the cuts of all scores)."""


@dataclass
class ThresholdCalibration:
    """The chosen thresholds (one per label), the global threshold, and why some labels got the global one
    (`{label index: reason}`)."""

    thresholds: np.ndarray
    global_threshold: float
    fallbacks: dict[int, str]


def cut_thresholds(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For scores sorted in decreasing order: the index of the last entry of each group of equal scores (each cut),
    and the threshold of each cut (see the module doc)."""
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    kept = sorted_scores[ends]
    below = np.append(sorted_scores[ends[:-1] + 1], kept[-1])
    return ends, (kept + below) / 2


def label_cuts(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The cuts of one label's scores (ignored entries left out): their thresholds (decreasing), the true positives
    and the predictions at each cut, and the number of positives."""
    valid = targets != -1
    order = np.argsort(-scores[valid], kind="stable")
    sorted_scores, positive = scores[valid][order], targets[valid][order] == 1
    if len(sorted_scores) == 0:
        return np.empty(0), np.empty(0), np.empty(0), 0
    ends, thresholds = cut_thresholds(sorted_scores)
    return thresholds, np.cumsum(positive)[ends], ends + 1, int(positive.sum())


def f1_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The threshold maximising the F1 of one label (NaN without a positive)."""
    thresholds, true_positives, predicted, positives = label_cuts(scores, targets)
    if positives == 0:
        return float("nan")
    f1 = 2 * true_positives / (predicted + positives)
    return float(thresholds[np.argmax(f1)])


def precision_threshold(scores: np.ndarray, targets: np.ndarray, target_precision: float) -> float:
    """The lowest threshold whose precision on one label is at least `target_precision` (NaN when none is)."""
    thresholds, true_positives, predicted, positives = label_cuts(scores, targets)
    reached = np.flatnonzero(true_positives / np.maximum(predicted, 1) >= target_precision)
    if positives == 0 or len(reached) == 0:
        return float("nan")
    return float(thresholds[reached[-1]])


def global_threshold(scores: np.ndarray, targets: np.ndarray, max_candidates: int = MAX_GLOBAL_CANDIDATES) -> float:
    """The one threshold of all labels that maximises CF1 + OF1 (ties: the higher threshold)."""
    all_scores = np.sort(scores[targets != -1])[::-1]
    _, candidates = cut_thresholds(all_scores)
    if len(candidates) > max_candidates:
        candidates = candidates[np.linspace(0, len(candidates) - 1, max_candidates).round().astype(int)]
    best, best_threshold = -1.0, float(candidates[0])
    for threshold in candidates:
        metrics = _precision_recall_f1(scores >= threshold, targets)
        value = np.nan_to_num(metrics["CF1"]) + np.nan_to_num(metrics["OF1"])
        if value > best:
            best, best_threshold = value, float(threshold)
    return best_threshold


def calibrate_thresholds(
    scores: np.ndarray,
    targets: np.ndarray,
    strategy: str = "f1",
    target_precision: float = 0.9,
    min_positives: int = 5,
) -> ThresholdCalibration:
    """
    One threshold per label from calibration scores `(num_images, num_labels)` and targets (1/0/-1) with a named
    strategy (see the module doc). Labels with fewer than `min_positives` positives, and labels whose strategy has
    no answer (a target precision never reached), get the global threshold, with the reason in `fallbacks`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    overall = global_threshold(scores, targets)
    thresholds, fallbacks = np.full(scores.shape[1], overall), {}
    if strategy == "global":
        return ThresholdCalibration(thresholds, overall, fallbacks)
    for label in range(scores.shape[1]):
        positives = int((targets[:, label] == 1).sum())
        if positives < min_positives:
            fallbacks[label] = f"{positives} positive(s), fewer than {min_positives}"
        elif strategy == "f1":
            thresholds[label] = f1_threshold(scores[:, label], targets[:, label])
        else:
            chosen = precision_threshold(scores[:, label], targets[:, label], target_precision)
            if np.isnan(chosen):
                fallbacks[label] = f"precision {target_precision} is never reached"
            else:
                thresholds[label] = chosen
    return ThresholdCalibration(thresholds, overall, fallbacks)


def describe_calibration(source: dict | None) -> str:
    """One phrase saying where thresholds were calibrated, from a config's `label_thresholds_source`."""
    if not source:
        return "calibrated on an unrecorded split"
    where = f"the {source.get('split')!r} split of {source.get('dataset')}"
    if source.get("data_dir"):
        where += f" ({source['data_dir']})"
    strategy = source.get("strategy")
    if strategy == "precision":
        strategy += f" {source.get('target_precision')}"
    return f"calibrated on {where}, {source.get('num_images')} images, strategy {strategy}"


def dataset_location(data_dir: str | None) -> str | None:
    """A dataset's `--data_dir` as recorded in `label_thresholds_source`: absolute for a local path, as given for a
    Hub name."""
    if data_dir is None:
        return None
    return os.path.abspath(data_dir) if os.path.exists(data_dir) else data_dir
