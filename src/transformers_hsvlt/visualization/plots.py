"""Evaluation plots: per-class AP, precision-recall curves, CF1/OF1 against the threshold, training curves.

    save_evaluation_plots("plots", scores, targets, class_names, trainer_state="run/trainer_state.json")

`scores` are probabilities `(num_images, num_classes)`, `targets` 1 (positive), 0 (negative) or -1 (ignored), as
for `transformers_hsvlt.evaluation.multilabel_metrics`, which computes every AP, CF1 and OF1 drawn here.
"""

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..evaluation import multilabel_metrics
from .figures import new_figure


__all__ = [
    "THRESHOLDS",
    "UndefinedPlotError",
    "plot_f1_against_threshold",
    "plot_per_class_ap",
    "plot_precision_recall",
    "plot_training_curves",
    "save_evaluation_plots",
]

THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
"""The thresholds at which CF1 and OF1 are drawn."""

_HIGHLIGHT = {"best": "tab:green", "worst": "tab:red"}


def _per_class_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """AP of every class in percent (NaN without a positive), from the project's metric."""
    return np.asarray(multilabel_metrics(scores, targets)["per_class_AP"], dtype=np.float64)


def plot_per_class_ap(scores, targets, class_names: Sequence[str]):
    """Horizontal bars of every class's AP, best at the top, with the mAP as a dashed line. Classes without a
    positive are listed as "no positive"."""
    ap = _per_class_ap(scores, targets)
    order = sorted(range(len(ap)), key=lambda i: (np.isnan(ap[i]), -np.nan_to_num(ap[i])))[::-1]
    figure, axes = new_figure(8, max(3.5, 1.2 + 0.28 * len(ap)))
    axis = axes[0, 0]
    values = np.nan_to_num(ap[order])
    bars = axis.barh(range(len(order)), values, color="tab:blue")
    for bar, index in zip(bars, order):
        text = "no positive" if np.isnan(ap[index]) else f"{ap[index]:.1f}"
        axis.text(bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=9)
    mean_ap = float(np.nanmean(ap)) if not np.isnan(ap).all() else float("nan")
    axis.axvline(mean_ap, color="black", linestyle="--", linewidth=1)
    axis.set_yticks(range(len(order)), [class_names[i] for i in order])
    axis.set_ylim(-0.6, len(order) - 0.4)
    axis.set_xlim(0, 109)
    axis.set_xlabel("average precision (%)")
    axis.set_title(f"Average precision per class (dashed: mAP {mean_ap:.1f})")
    figure.tight_layout()
    return figure


def plot_precision_recall(scores, targets, class_names: Sequence[str]):
    """The precision-recall curve of every class with a positive (thin grey), the best and the worst AP highlighted."""
    from sklearn.metrics import precision_recall_curve  # imported here: the commands need it only for this plot

    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    ap = _per_class_ap(scores, targets)
    figure, axes = new_figure(7, 6)
    axis = axes[0, 0]
    evaluated = np.flatnonzero(~np.isnan(ap))
    highlighted = {}
    if len(evaluated):
        highlighted = {"best": evaluated[np.argmax(ap[evaluated])], "worst": evaluated[np.argmin(ap[evaluated])]}
    for index in evaluated:
        kept = targets[:, index] != -1
        precision, recall, _ = precision_recall_curve(targets[kept, index] == 1, scores[kept, index])
        role = next((name for name, chosen in highlighted.items() if chosen == index), None)
        if role is None:
            axis.plot(recall, precision, color="0.7", linewidth=0.8, drawstyle="steps-post")
        else:
            label = f"{role}: {class_names[index]} (AP {ap[index]:.1f})"
            axis.plot(recall, precision, color=_HIGHLIGHT[role], linewidth=2.2, drawstyle="steps-post", label=label,
                      zorder=3)  # fmt: skip
    axis.set_xlim(0, 1.01)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_title(f"Precision-recall, {len(evaluated)} classes (grey: the others)")
    if highlighted:
        axis.legend(loc="lower left")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


class UndefinedPlotError(ValueError):
    """A plot the evaluated split does not define (e.g. F1 on a split without any positive label)."""


OVERLAP_POINTS = 1.0
"""CF1 and OF1 closer than this (in points, at every threshold) draw as one line: the F1 plot says so."""


def plot_f1_against_threshold(scores, targets, thresholds: Sequence[float] = THRESHOLDS):
    """CF1 and OF1 (the project's metric) at every threshold, with the best threshold of each marked."""
    f1 = {"CF1": [], "OF1": []}
    for threshold in thresholds:
        results = multilabel_metrics(scores, targets, threshold=float(threshold))
        for key in f1:
            f1[key].append(results[key])
    if not np.isfinite(f1["OF1"]).any():
        raise UndefinedPlotError("F1 is undefined at every threshold (the split has no positive label)")
    figure, axes = new_figure(7, 4.5)
    axis = axes[0, 0]
    for key, colour, offset, style in (("CF1", "tab:blue", (6, 10), "-"), ("OF1", "tab:orange", (6, -16), "--")):
        values = np.asarray(f1[key])
        best = int(np.nanargmax(values))
        axis.plot(thresholds, values, style, marker="o", markersize=3, color=colour, label=key)
        axis.scatter([thresholds[best]], [values[best]], s=80, color=colour, edgecolor="black", zorder=3)
        axis.annotate(f"{key} {values[best]:.1f} at {thresholds[best]:.2f}", (thresholds[best], values[best]),
                      textcoords="offset points", xytext=offset, color=colour)  # fmt: skip
    axis.axvline(0.5, color="0.5", linestyle=":", linewidth=1)
    axis.set_xlabel("threshold")
    axis.set_ylabel("F1 (%)")
    axis.set_ylim(0, 105)
    axis.set_title("CF1 and OF1 against the decision threshold")
    gap = np.nanmax(np.abs(np.asarray(f1["CF1"]) - np.asarray(f1["OF1"])))
    if gap < OVERLAP_POINTS:
        axis.text(0.02, 0.04, f"CF1 and OF1 overlap: they differ by {gap:.2f} points at most", transform=axis.transAxes)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _read_trainer_state(trainer_state) -> list[dict]:
    if isinstance(trainer_state, (str, os.PathLike)):
        with open(trainer_state) as handle:
            trainer_state = json.load(handle)
    if not isinstance(trainer_state, Mapping) or not isinstance(trainer_state.get("log_history"), list):
        raise ValueError(
            "trainer_state must be a Trainer state (a dict or trainer_state.json) with a log_history list."
        )
    return trainer_state["log_history"]


def _series(log_history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["epoch"], entry[key]) for entry in log_history if key in entry and "epoch" in entry]
    return [epoch for epoch, _ in points], [value for _, value in points]


def plot_training_curves(trainer_state):
    """Two panels from a Trainer state's `log_history`: training and evaluation loss, and the evaluation mAP, per
    epoch (the best mAP marked)."""
    log_history = _read_trainer_state(trainer_state)
    figure, axes = new_figure(12, 4.5, 1, 2)
    from matplotlib.ticker import MaxNLocator  # matplotlib is there: `new_figure` checked

    loss_axis, map_axis = axes[0]
    for key, label, colour in (("loss", "training", "tab:blue"), ("eval_loss", "evaluation", "tab:orange")):
        epochs, values = _series(log_history, key)
        if epochs:
            loss_axis.plot(epochs, values, marker="o", markersize=3, color=colour, label=label)
    loss_axis.set_title("Loss")
    loss_axis.set_ylabel("loss")
    loss_axis.legend()
    epochs, values = _series(log_history, "eval_mAP")
    if epochs:
        map_axis.plot(epochs, values, marker="o", markersize=3, color="tab:green")
        best = int(np.argmax(values))
        map_axis.scatter([epochs[best]], [values[best]], s=80, color="tab:green", edgecolor="black", zorder=3)
        map_axis.annotate(f"best {values[best]:.1f}", (epochs[best], values[best]), textcoords="offset points",
                          xytext=(-10, -18), ha="right")  # fmt: skip
    else:
        map_axis.text(0.5, 0.5, "no evaluation logged", ha="center", va="center", transform=map_axis.transAxes)
    map_axis.set_title("Evaluation mAP (%)")
    map_axis.set_ylabel("mAP (%)")
    for axis in (loss_axis, map_axis):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def save_evaluation_plots(
    directory: str | os.PathLike,
    scores,
    targets,
    class_names: Sequence[str],
    trainer_state=None,
    skipped: list[str] | None = None,
) -> list[Path]:
    """
    Write `per_class_ap.png`, `precision_recall.png`, `f1_threshold.png` and, with `trainer_state` (a dict or the
    path of a `trainer_state.json`), `training_curves.png` to `directory`; returns their paths. A plot the split
    does not define (`UndefinedPlotError`) raises, or, with a `skipped` list, is left out and noted in it.
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.ndim != 2 or len(class_names) != scores.shape[1]:
        raise ValueError(
            f"class_names: expected one name per score column ({scores.shape[-1]}), got {len(class_names)}."
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = {
        "per_class_ap.png": lambda: plot_per_class_ap(scores, targets, class_names),
        "precision_recall.png": lambda: plot_precision_recall(scores, targets, class_names),
        "f1_threshold.png": lambda: plot_f1_against_threshold(scores, targets),
    }
    if trainer_state is not None:
        figures["training_curves.png"] = lambda: plot_training_curves(trainer_state)
    paths = []
    for name, plot in figures.items():
        try:
            figure = plot()
        except UndefinedPlotError as error:
            if skipped is None:
                raise
            skipped.append(f"{name} not written: {error}.")
            continue
        figure.savefig(directory / name)
        paths.append(directory / name)
    return paths
