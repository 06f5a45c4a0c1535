"""Pointing game of every heatmap method and stage on the embedded digits test canvases.

    python benchmarks/pointing_game.py MODEL [--num-images 500] [--seed 1] [--output benchmarks/pointing_game.md]

MODEL is a checkpoint trained on the embedded digits default (e.g. `hsvlt-train --output_dir /tmp/qs` gives
`/tmp/qs`). The test canvases are rebuilt exactly as `hsvlt-train` builds them (`build_digit_canvases` with the
training seed, 1 in the `tiny` recipe); every digit's box is recorded by the generator. For every (image, true label)
pair the label's heatmap is upsampled bilinearly to the canvas and the pair is a hit when its maximum lies inside a
box of that digit (see `transformers_hsvlt.visualization.gradcam.pointing_game`). The table goes to `--output`.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from transformers_hsvlt.checkpoints import load_checkpoint
from transformers_hsvlt.data import build_digit_canvases
from transformers_hsvlt.registry import get_architecture
from transformers_hsvlt.visualization.gradcam import (
    DEFAULT_METHOD,
    DEFAULT_STAGE,
    METHODS,
    label_heatmaps,
    pointing_game,
    upsample_heatmaps,
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="A checkpoint trained on the embedded digits default.")
    parser.add_argument("--num-images", type=int, default=500, help="Test canvases (default 500, as hsvlt-train).")
    parser.add_argument("--seed", type=int, default=1, help="Seed of the canvases (the training seed, default 1).")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "pointing_game.md"))
    return parser.parse_args(argv)


def stage_settings(num_stages: int) -> list[tuple[int, ...]]:
    """Every single stage, the two finest together and all stages together."""
    return [(stage,) for stage in range(num_stages)] + [(0, 1), tuple(range(num_stages))]


def true_label_boxes(split) -> list[dict[int, list[list[int]]]]:
    """Per canvas: each drawn digit -> its boxes."""
    per_image = []
    for digits, boxes in zip(split["digits"], split["boxes"]):
        by_label = {}
        for digit, box in zip(digits, boxes):
            by_label.setdefault(digit, []).append(box)
        per_image.append(by_label)
    return per_image


def random_point_baseline(label_boxes, canvas_size: int) -> float:
    """Expected pointing-game score of a point drawn uniformly on the canvas: the mean share of the canvas covered by
    a true label's boxes."""
    shares = []
    for by_label in label_boxes:
        for boxes in by_label.values():
            covered = np.zeros((canvas_size, canvas_size), dtype=bool)
            for x0, y0, x1, y1 in boxes:
                covered[y0:y1, x0:x1] = True
            shares.append(covered.mean())
    return float(np.mean(shares))


def evaluate(model, pixel_values, label_boxes, method, stages, batch_size, canvas_size):
    hits = pairs = 0
    resolution = None
    all_labels = list(range(model.config.num_labels))
    for start in range(0, len(pixel_values), batch_size):
        batch = pixel_values[start : start + batch_size]
        maps = label_heatmaps(model, batch, all_labels, method=method, stage=stages)
        resolution = tuple(maps.shape[-2:])
        batch_hits, batch_pairs = pointing_game(
            upsample_heatmaps(maps, canvas_size, canvas_size), label_boxes[start : start + batch_size]
        )
        hits, pairs = hits + batch_hits, pairs + batch_pairs
    return hits, pairs, resolution


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_grad_enabled(False)
    model, processor = load_checkpoint(args.model, "cpu")
    split = build_digit_canvases(num_train=1, num_test=args.num_images, seed=args.seed)["test"]
    canvas_size = split[0]["image"].size[0]
    label_boxes = true_label_boxes(split)
    pixel_values = processor(images=list(split["image"]), return_tensors="pt")["pixel_values"]
    num_stages = get_architecture(model.config.model_type).heatmap_stages(model.config)
    default_stages = (DEFAULT_STAGE % num_stages,)
    rows = []
    for method in METHODS:
        for stages in stage_settings(num_stages):
            began = time.perf_counter()
            hits, pairs, resolution = evaluate(
                model, pixel_values, label_boxes, method, stages, args.batch_size, canvas_size
            )
            seconds = time.perf_counter() - began
            default = method == DEFAULT_METHOD and stages == default_stages
            rows.append((method, stages, resolution, hits, pairs, seconds, default))
            print(f"{method:<10} stages {stages}: {100 * hits / pairs:5.1f}% ({hits}/{pairs}), {seconds:.1f} s")
    baseline = random_point_baseline(label_boxes, canvas_size)
    write_report(args, model, rows, baseline, canvas_size)
    return 0


def write_report(args, model, rows, baseline, canvas_size) -> None:
    header = [
        "| method | stage(s) | map size | hits / pairs | pointing game | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    stage_sizes = ", ".join(str(s) for s in model.config.hidden_sizes)
    results_path = os.path.join(args.model, "eval_results.json")
    test_map = ""
    if os.path.isfile(results_path):
        with open(results_path) as handle:
            test_map = f", test mAP {json.load(handle)['mAP']:.2f}"
    lines = [
        "# Pointing game on the embedded digits",
        "",
        f"Measured with `python benchmarks/pointing_game.py {args.model}` on {args.num_images} test canvases "
        f"({canvas_size} px, seed {args.seed}, {rows[0][4]} (image, true label) pairs) of a "
        f"`{model.config.model_type}` checkpoint (stage widths {stage_sizes}{test_map}; the quick-start model, "
        "from `hsvlt-train --output_dir /tmp/qs`). A pair is a hit when the maximum of the label's heatmap, upsampled "
        "bilinearly to the canvas, lies in a box of that digit (ties between equal maxima: their centroid). "
        f"A point drawn uniformly on the canvas would score {100 * baseline:.1f}% (the mean share of the canvas a "
        "true digit covers). Stages count from 0 (finest); several stages are averaged after scaling each map to a "
        "maximum of 1. **Bold**: the default of `label_heatmaps` (and so of `hsvlt-predict --heatmaps` and the demo). "
        "Seconds are for all 10 labels of the 500 canvases on a shared 2-core CPU: indicative only.",
    ]
    lines += ["", "Best setting of each method:", ""]
    for method in METHODS:
        best = max((row for row in rows if row[0] == method), key=lambda row: row[3])
        stages = "+".join(str(s) for s in best[1])
        lines.append(f"- {method}: stage(s) {stages}, {100 * best[3] / best[4]:.1f}%")
    lines += ["", "All settings:", "", *header]
    for method, stages, resolution, hits, pairs, seconds, default in rows:
        cells = [
            method,
            "+".join(str(s) for s in stages),
            f"{resolution[0]}x{resolution[1]}",
            f"{hits} / {pairs}",
            f"{100 * hits / pairs:.1f}%",
            f"{seconds:.1f}",
        ]
        if default:
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    with open(args.output, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
