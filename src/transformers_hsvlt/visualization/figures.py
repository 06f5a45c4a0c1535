"""One readable figure per prediction: the image, each predicted label's heatmap over it, names and scores.

    figure = prediction_figure(image, prediction, ground_truth=["cat", "dog"])
    save_prediction_figure(image, prediction, "out/cat_photo.png")
    save_raw_maps(prediction, "out", "cat_photo")  # out/cat_photo_<label>.npy, the maps as computed

`prediction` is a `transformers_hsvlt.inference.Prediction` (or anything with `labels`, a list of
`{"label", "score", "index"}`, and `heatmaps`, label name -> `(h, w)` map). Panels are at least `MIN_PANEL_SIDE`
pixels on the long side; heatmaps are upsampled bicubically, scaled to [0, 1] per label and drawn with a colormap
whose transparency follows the heat, so the image stays visible where the label's evidence is weak.
"""

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image


__all__ = [
    "MIN_PANEL_SIDE",
    "figure_to_image",
    "labels_in_file_name",
    "new_figure",
    "prediction_figure",
    "save_prediction_figure",
    "save_raw_maps",
    "unique_stems",
    "upsample_map",
]

MIN_PANEL_SIDE = 384
"""Pixels on the long side of every panel of a prediction figure."""

_MAX_PANEL_SIDE = 640
_DPI = 100
_COLORMAP = "turbo"
_MAX_COLUMNS = 4


def _matplotlib():
    """matplotlib, imported on first use; a one-line ImportError naming the install command when it is missing."""
    try:
        import matplotlib
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ImportError(
            'Figures and plots need matplotlib: pip install -e ".[demo]" (or pip install matplotlib).'
        ) from None
    return matplotlib


def new_figure(width: float, height: float, rows: int = 1, columns: int = 1):
    """A matplotlib `Figure` of `width` x `height` inches at 100 dpi on an Agg canvas and its `(rows, columns)` array
    of axes. The figure is not registered with pyplot: no GUI backend is touched and nothing needs closing, so it is
    safe in threads (the demo server) and in scripts alike."""
    matplotlib = _matplotlib()
    figure = matplotlib.figure.Figure(figsize=(width, height), dpi=_DPI)
    matplotlib.backends.backend_agg.FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=False)


def upsample_map(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    """A `(h, w)` map scaled to [0, 1] (all-equal maps give zeros) and resized bicubically to `(height, width)`."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    span = float(heatmap.max() - heatmap.min())
    scaled = (heatmap - heatmap.min()) / span if span > 0 else np.zeros_like(heatmap)
    resized = PIL.Image.fromarray(scaled).resize((width, height), PIL.Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def _display_image(image: PIL.Image.Image) -> PIL.Image.Image:
    """The image in RGB, resized smoothly (bicubic) so its long side is at least `MIN_PANEL_SIDE` pixels and at most
    `_MAX_PANEL_SIDE`, the most a panel shows: the heatmap overlays, made at this size, stay small for large images."""
    image = image.convert("RGB")
    scale = min(max(MIN_PANEL_SIDE / max(image.size), 1.0), _MAX_PANEL_SIDE / max(image.size))
    if scale == 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, PIL.Image.Resampling.BICUBIC)


def _heat_rgba(heat: np.ndarray) -> np.ndarray:
    """Colour a [0, 1] map with the colormap, its opacity rising with the heat (at most 0.6)."""
    colours = _matplotlib().colormaps[_COLORMAP](heat)
    colours[..., 3] = 0.15 + 0.45 * heat
    return colours


def _truth_text(prediction, ground_truth: Sequence[str] | None) -> str:
    """The lines under the input panel: the ground truth and the true labels not predicted, when known."""
    lines = [] if prediction.labels else ["no label scores above the threshold"]
    if ground_truth is not None:
        predicted = {label["label"] for label in prediction.labels}
        missed = [name for name in ground_truth if name not in predicted]
        lines.append("truth: " + (", ".join(ground_truth) or "(none)"))
        lines.append("missed: " + (", ".join(missed) or "none"))
    return "\n".join(lines)


def prediction_figure(image: PIL.Image.Image, prediction, ground_truth: Sequence[str] | None = None):
    """
    A matplotlib figure of one prediction: the input (with the ground truth and the missed labels under it, when
    given), then one panel per predicted label that has a heatmap: the image with the heatmap over it, titled with
    the label's name and score, green with a check mark or red with a cross when the ground truth is known. A map
    that is zero everywhere (no positive evidence at that stage, for Grad-CAM) says so. Up to four panels a row.
    """
    shown = _display_image(image)
    mapped = [label for label in prediction.labels if label["label"] in prediction.heatmaps]
    num_panels = 1 + len(mapped)
    columns = min(num_panels, _MAX_COLUMNS)
    rows = -(-num_panels // columns)
    side = min(max(shown.size), _MAX_PANEL_SIDE) / _DPI
    panel_width, panel_height = side * shown.width / max(shown.size), side * shown.height / max(shown.size)
    text = _truth_text(prediction, ground_truth)
    text_height = 0.25 * (text.count("\n") + 1) if text else 0.0
    figure, axes = new_figure(columns * panel_width, rows * (panel_height + 0.45) + text_height, rows, columns)
    for axis in axes.flat:
        axis.set_axis_off()
    pixels = np.asarray(shown)
    first = axes.flat[0]
    first.imshow(pixels)
    first.set_title("input", fontsize=13)
    if text:
        first.text(0.0, -0.02, text, transform=first.transAxes, va="top", fontsize=11)
    truth = set(ground_truth) if ground_truth is not None else None
    for axis, label in zip(axes.flat[1:], mapped):
        heatmap = np.asarray(prediction.heatmaps[label["label"]], dtype=np.float32)
        axis.imshow(pixels)
        if heatmap.max() > heatmap.min():
            axis.imshow(_heat_rgba(upsample_map(heatmap, shown.width, shown.height)))
        else:
            axis.text(0.5, 0.04, "flat map: no evidence at this stage", transform=axis.transAxes, ha="center",
                      color="white", fontsize=10, bbox={"facecolor": "black", "alpha": 0.6})  # fmt: skip
        mark = "" if truth is None else ("  \u2713" if label["label"] in truth else "  \u2717")
        colour = "black" if truth is None else ("darkgreen" if label["label"] in truth else "firebrick")
        axis.set_title(f"{label['label']}  {label['score']:.2f}{mark}", fontsize=13, color=colour, fontweight="bold")
    figure.tight_layout()
    return figure


def figure_to_image(figure) -> PIL.Image.Image:
    """Render a matplotlib figure to an RGB image."""
    figure.canvas.draw()
    return PIL.Image.fromarray(np.asarray(figure.canvas.buffer_rgba())).convert("RGB")


def save_prediction_figure(
    image: PIL.Image.Image, prediction, path: str | os.PathLike, ground_truth: Sequence[str] | None = None
) -> Path:
    """Write `prediction_figure(image, prediction, ground_truth)` to `path` (PNG); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prediction_figure(image, prediction, ground_truth).savefig(path, dpi=_DPI)
    return path


def labels_in_file_name(source: str, label_names: Sequence[str]) -> list[str] | None:
    """The true labels an example's file name carries (`03_five-seven.png`: `["five", "seven"]`; `07_none.png`: no
    label), as training's `examples/` are named; None when the name is not of that form or names other labels."""
    match = re.fullmatch(r"\d+_([^/\\]+)", _path_parts(source)[-1])
    if match is None:
        return None
    names = [] if match.group(1) == "none" else match.group(1).split("-")
    return names if set(names) <= set(label_names) else None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "image"


def save_raw_maps(prediction, directory: str | os.PathLike, stem: str) -> list[Path]:
    """Write each heatmap of `prediction` as computed (`float32`, the stage's resolution) to
    `<directory>/<stem>_<label>.npy`; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, heatmap in prediction.heatmaps.items():
        path = directory / f"{stem}_{_safe_name(label)}.npy"
        np.save(path, np.asarray(heatmap, dtype=np.float32))
        paths.append(path)
    return paths


def _path_parts(source: str) -> list[str]:
    """The components of a path or URL, without the query and the file extension of the last one."""
    trimmed = re.sub(r"^[a-z]+://", "", source.split("?")[0].rstrip("/\\"))
    parts = [part for part in re.split(r"[/\\]+", trimmed) if part]
    if not parts:
        return ["image"]
    parts[-1] = os.path.splitext(parts[-1])[0] or parts[-1]
    return parts


def unique_stems(sources: Sequence[str]) -> list[str]:
    """
    A file-name stem for every source, unique among them: the file name without extension, prefixed with as many
    parent folders as it takes to tell sources with the same file name apart (`a/x.png`, `b/x.png` -> `a_x`, `b_x`);
    a source given twice gets `-2`, `-3`, ... Only letters, digits, `_`, `-` and `.` are kept.
    """
    parts = [_path_parts(source) for source in sources]
    depth = [1] * len(sources)
    while True:
        stems = ["_".join(p[-d:]) for p, d in zip(parts, depth)]
        sources_of = defaultdict(set)
        for stem, source_parts in zip(stems, parts):
            sources_of[stem].add(tuple(source_parts))
        deeper = [i for i, stem in enumerate(stems) if len(sources_of[stem]) > 1 and depth[i] < len(parts[i])]
        if not deeper:
            break
        for i in deeper:
            depth[i] += 1
    unique, used = [], set()
    for stem in map(_safe_name, stems):
        candidate, copy = stem, 1
        while candidate in used:
            copy += 1
            candidate = f"{stem}-{copy}"
        used.add(candidate)
        unique.append(candidate)
    return unique
