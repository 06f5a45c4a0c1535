"""`hsvlt-predict MODEL IMAGE... [--threshold T] [--top-k K] [--json] [--heatmaps DIR]`: labels and scores per image.

IMAGE arguments are paths, globs or URLs. An unreadable image is reported on stderr by path and the others still run;
the exit status is then 1. `--heatmaps DIR` writes, for every image and predicted label, a PNG of the label's IVLA
attention (last block, averaged over heads) blended over the image, named `<image stem>_<label>.png`.
"""

import argparse
import json
import os
import sys

from ..images import ImageLoadError, load_image
from ..inference import heatmap_filename, heatmap_overlay, expand_image_arguments, load_checkpoint, predict


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hsvlt-predict", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="An HSVLT checkpoint directory or Hub id.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="Image paths, globs or http(s) URLs.")
    parser.add_argument("--threshold", type=float, default=0.5, help="Keep labels scoring at least this (default 0.5).")
    parser.add_argument("--top-k", type=int, default=None, help="Keep at most this many labels per image.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    parser.add_argument("--heatmaps", metavar="DIR", help="Write attention heatmap overlays of the predicted labels here.")
    parser.add_argument(
        "--heatmap-stage", type=int, default=-1,
        help="Stage whose last-block attention the heatmaps show (default -1, the last, as the authors; 0 is finest).",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="Images per forward pass (default 8).")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available).")
    return parser


def _read_images(sources: list[str]):
    """Load every source; returns the loaded `(source, image)` pairs and the `(source, reason)` failures."""
    loaded, failures = [], []
    for source in sources:
        try:
            loaded.append((source, load_image(source)))
        except ImageLoadError as error:
            failures.append(str(error))
    return loaded, failures


def _print_table(predictions, threshold) -> None:
    for prediction in predictions:
        print(prediction.source)
        if not prediction.labels:
            print(f"  (no label scores {threshold} or more)")
        for label in prediction.labels:
            print(f"  {label['label']:<24} {label['score']:.4f}")


def _write_heatmaps(directory: str, predictions, images) -> None:
    os.makedirs(directory, exist_ok=True)
    for prediction, image in zip(predictions, images):
        for label, heatmap in prediction.heatmaps.items():
            heatmap_overlay(image, heatmap).save(os.path.join(directory, heatmap_filename(prediction.source, label)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model, processor = load_checkpoint(args.model, args.device)
    except (ValueError, OSError) as error:
        print(f"hsvlt-predict: error: {error}", file=sys.stderr)
        return 2
    sources, failures = expand_image_arguments(args.images)
    loaded, read_failures = _read_images(sources)
    failures += read_failures
    predictions = []
    for start in range(0, len(loaded), args.batch_size):
        batch = loaded[start : start + args.batch_size]
        batch_predictions = predict(
            model, processor, [image for _, image in batch], [source for source, _ in batch],
            args.threshold, args.top_k, with_heatmaps=bool(args.heatmaps), heatmap_stage=args.heatmap_stage,
        )
        if args.heatmaps:
            _write_heatmaps(args.heatmaps, batch_predictions, [image for _, image in batch])
        predictions += batch_predictions
    if args.json:
        print(json.dumps([{"image": p.source, "predictions": p.labels} for p in predictions], indent=2))
    else:
        _print_table(predictions, args.threshold)
    for failure in failures:
        print(f"hsvlt-predict: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
