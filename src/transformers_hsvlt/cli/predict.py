"""`hsvlt-predict MODEL IMAGE... [--threshold T] [--top_k K] [--json] [--heatmaps DIR]`: labels and scores per image.

IMAGE arguments are paths, globs or URLs. Images are read, predicted and printed batch by batch (memory stays bounded
however many images are given). An unreadable image is reported on stderr by path and the others still run; the
exit status is then 1. `--heatmaps DIR` (a new or empty directory, unless `--overwrite_output_dir`) writes, for
every image, a figure of its predicted labels' heatmaps (`--heatmap_method`, default gradient x input at stage 0) and
the raw maps (`.npy`), under names unique per input path; a heatmap that cannot be written is reported without losing
the predictions, which are printed first.

`hsvlt-predict MODEL --input DIR_OR_LIST_OR_DATASET --output tags.jsonl` tags a whole collection into a file instead,
resumable and split across the processes of `accelerate launch`: see `transformers_hsvlt.collection`.
"""

import glob
import json
import math
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..checkpoints import (
    check_empty_directory,
    checkpoint_architecture,
    is_open_vocabulary,
    load_checkpoint,
    open_vocabulary_architectures,
    resolve_device,
    unknown_class_names,
)
from ..collection import CollectionArguments, Processes, tag_collection
from ..images import DEFAULT_DOWNLOAD_SECONDS, DEFAULT_MAX_DOWNLOAD_BYTES, ImageLoadError, load_image
from ..inference import predict
from ..threads import set_threads
from ..visualization import (
    DEFAULT_METHOD,
    DEFAULT_STAGE,
    METHODS,
    labels_in_file_name,
    save_prediction_figure,
    save_raw_maps,
    unique_stems,
)
from .common import (
    EXIT_PARTIAL_FAILURE,
    EXIT_SUCCESS,
    DefaultOnceHelpFormatter,
    RuntimeArguments,
    one_line,
    run_command,
)


PROG = "hsvlt-predict"


@dataclass
class PredictArguments:
    threshold: float | None = field(
        default=None,
        metadata={
            "help": "Keep labels scoring at least this, in [0, 1] (default: the checkpoint's calibrated threshold of "
            "each label, see hsvlt-calibrate, else 0.5)."
        },
    )
    top_k: int | None = field(default=None, metadata={"help": "Keep at most this many labels per image."})
    json: bool = field(default=False, metadata={"help": "Print JSON instead of a table."})
    labels: str | None = field(
        default=None,
        metadata={
            "help": "Open-vocabulary models (PatchCT, PVLR): score these comma-separated label names instead of the "
            "trained ones, e.g. 'cat,dog,bicycle'."
        },
    )
    heatmaps: str | None = field(
        default=None,
        metadata={"help": "Write heatmap figures of the predicted labels into this directory (new or empty)."},
    )
    heatmap_method: str = field(
        default=DEFAULT_METHOD,
        metadata={
            "help": "How heatmaps are made: gradxinput (the default: it points best, see benchmarks/pointing_game.md), "
            "attention (the architecture's own maps), gradcam, gradcam++, gradxact.",
            "choices": list(METHODS),
        },
    )
    heatmap_stage: int = field(
        default=DEFAULT_STAGE, metadata={"help": "Stage of the heatmaps (default 0, the finest; -1 is the last)."}
    )
    batch_size: int = field(default=8, metadata={"help": "Images per forward pass (default 8)."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda if available)."})
    download_seconds: float = field(
        default=DEFAULT_DOWNLOAD_SECONDS, metadata={"help": "Longest time one URL may take to download."}
    )
    max_download_mb: float = field(
        default=DEFAULT_MAX_DOWNLOAD_BYTES / 2**20, metadata={"help": "Largest body one URL may have, in MiB."}
    )

    def __post_init__(self):
        if not (0 < self.download_seconds < math.inf and 0 < self.max_download_mb < math.inf):  # NaN too
            raise ValueError(
                f"--download_seconds and --max_download_mb must be positive numbers, got {self.download_seconds} and "
                f"{self.max_download_mb}."
            )
        if self.threshold is not None and (not 0 <= self.threshold <= 1 or math.isnan(self.threshold)):
            raise ValueError(f"--threshold must be in [0, 1], got {self.threshold}.")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"--top_k must be at least 1, got {self.top_k}.")
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1, got {self.batch_size}.")


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (PredictArguments, CollectionArguments, RuntimeArguments),
        prog=PROG,
        description=__doc__.splitlines()[0],
        formatter_class=DefaultOnceHelpFormatter,
    )
    parser.add_argument("model", help="A family checkpoint directory or Hub id.")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="Image paths, globs or http(s) URLs.")
    return parser


def parse_arguments(argv: list[str] | None):
    """The parsed arguments; IMAGE arguments may also follow options (`MODEL --threshold 0.3 a.jpg`): argparse leaves
    them aside since IMAGE is optional (`--input` needs none)."""
    *parsed, extra, remaining = build_parser().parse_args_into_dataclasses(argv, return_remaining_strings=True)
    unknown = [argument for argument in remaining if argument.startswith("-")]
    if unknown:
        raise ValueError(f"Some specified arguments are not used by the HfArgumentParser: {unknown}")
    extra.images += remaining
    return (*parsed, extra)


def expand_image_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """Expand globs in image arguments (URLs are kept). Returns `(sources, errors)`; a glob that matches nothing is an
    error naming it."""
    sources, errors = [], []
    for argument in arguments:
        if argument.startswith(("http://", "https://")) or not glob.has_magic(argument):
            sources.append(argument)
            continue
        matches = sorted(glob.glob(argument, recursive=True))
        sources.extend(matches)
        if not matches:
            errors.append(f"{argument}: no file matches this pattern")
    return sources, errors


def check_against_checkpoint(model_name: str, args: PredictArguments) -> None:
    """Refuse, from the checkpoint's config alone (before loading weights), a heatmap method or stage it does not
    have and `--labels` for a model whose head is per-label."""
    architecture = checkpoint_architecture(model_name)
    if args.labels is not None and not is_open_vocabulary(architecture):
        raise ValueError(
            f"--labels needs an open-vocabulary model ({', '.join(open_vocabulary_architectures())}); {model_name} is "
            f"a {architecture.name} model, "
            "whose head has one trained output per label: predict its own labels, or fine-tune it on new ones."
        )
    if args.heatmaps:
        architecture.refuse_unless(
            args.heatmap_method in architecture.heatmap_methods,
            f"--heatmap_method {args.heatmap_method}",
            f"models have the heatmap methods {list(architecture.heatmap_methods)}.",
        )
        config = architecture.config_class.from_pretrained(model_name)
        stages = architecture.heatmap_stages(config)
        if not -stages <= args.heatmap_stage < stages:
            raise ValueError(
                f"--heatmap_stage must be a stage index in [{-stages}, {stages - 1}] for {model_name}, "
                f"got {args.heatmap_stage}."
            )


def label_names_argument(text: str) -> list[str]:
    """The names of `--labels`: distinct and non-empty."""
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"--labels must be distinct, non-empty, comma-separated names, got {text!r}.")
    if not all(name.isprintable() for name in names):
        raise ValueError(f"--labels names must be printable (no newline, tab or control character), got {text!r}.")
    return names


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        args, collection, runtime, extra = parse_arguments(argv)
        check_images_or_collection(extra.images, args, collection)
        set_threads(runtime.threads)
        resolve_device(args.device)
        if args.heatmaps:
            check_empty_directory(args.heatmaps, collection.overwrite_output_dir, flag="--heatmaps")
        check_against_checkpoint(extra.model, args)
        if collection.input is not None:
            return tag_collection_command(extra.model, args, collection)
        model, processor = load_checkpoint(extra.model, args.device)
        if args.labels is not None:
            names = label_names_argument(args.labels)
            model.set_class_names(names, model.class_name_tokenizer)
            if unknown := unknown_class_names(names, model.class_name_tokenizer):
                print(f"{PROG}: warning: {one_line(', '.join(unknown))}: made only of words the text encoder does not "
                      "know, these names all score alike.", file=sys.stderr)  # fmt: skip
        sources, failures = expand_image_arguments(extra.images)
        stems = dict(zip(sources, unique_stems(sources)))
        printer = PredictionPrinter(args.json, args.threshold)
        for start in range(0, len(sources), args.batch_size):
            loaded = []
            for source in sources[start : start + args.batch_size]:
                try:
                    limits = dict(
                        download_seconds=args.download_seconds, max_download_bytes=int(args.max_download_mb * 2**20)
                    )
                    loaded.append((source, load_image(source, **limits)))
                except ImageLoadError as error:
                    failures.append(str(error))
            if not loaded:
                continue
            predictions = predict(
                model,
                processor,
                [image for _, image in loaded],
                [source for source, _ in loaded],
                "auto" if args.threshold is None else args.threshold,
                args.top_k,
                heatmap_method=args.heatmap_method if args.heatmaps else None,
                heatmap_stage=args.heatmap_stage,
            )
            printer.print(predictions)
            if args.heatmaps:
                images = [image for _, image in loaded]
                label_names = list(model.config.id2label.values())
                failures += write_heatmaps(args.heatmaps, predictions, images, stems, label_names)
        printer.close()
        for failure in failures:
            print(f"{PROG}: {one_line(failure)}", file=sys.stderr)
        return EXIT_PARTIAL_FAILURE if failures else EXIT_SUCCESS

    return run_command(PROG, command)


def check_images_or_collection(images: list[str], args: PredictArguments, collection: CollectionArguments) -> None:
    """IMAGE arguments (printed) or `--input` (tagged into `--output`), not both; heatmaps only for IMAGE arguments."""
    if collection.input is None and not images:
        raise ValueError("give IMAGE arguments, or --input DIR_OR_LIST_OR_DATASET with --output FILE.")
    if collection.input is not None and (images or args.heatmaps or args.json):
        raise ValueError("--input tags a collection into --output: drop the IMAGE arguments, --heatmaps and --json.")
    if collection.input is None and collection.output is not None:
        raise ValueError("--output needs --input DIR_OR_LIST_OR_DATASET.")


def tag_collection_command(model_name: str, args: PredictArguments, collection: CollectionArguments) -> int:
    """`--input ... --output ...`: tag the collection, each process of a launch on its share; exit 1 when some images
    were unreadable (listed in the errors file)."""
    processes = Processes.from_environment()
    try:
        model, processor = load_checkpoint(model_name, processes.device(args.device))
        if args.labels is not None:
            model.set_class_names(label_names_argument(args.labels), model.class_name_tokenizer)
        _, errors = tag_collection(
            model,
            processor,
            collection,
            processes,
            threshold="auto" if args.threshold is None else args.threshold,
            top_k=args.top_k,
            batch_size=args.batch_size,
        )
    finally:
        processes.close()
    if errors:
        print(f"{PROG}: {errors} unreadable image(s), listed in {collection.output}.errors.jsonl", file=sys.stderr)
    return EXIT_PARTIAL_FAILURE if errors else EXIT_SUCCESS


class PredictionPrinter:
    """Prints predictions as they come: a table, or one JSON array written element by element."""

    def __init__(self, as_json: bool, threshold: float):
        self.as_json = as_json
        self.threshold = threshold
        self.count = 0

    def print(self, predictions) -> None:
        for prediction in predictions:
            if self.as_json:
                entry = json.dumps({"image": prediction.source, "predictions": prediction.labels}, indent=2)
                print(("[\n" if self.count == 0 else ",\n") + entry, end="", flush=True)
            else:
                print(prediction.source)
                if not prediction.labels:
                    print(
                        f"  (no label scores {'its threshold' if self.threshold is None else self.threshold} or more)"
                    )
                for label in prediction.labels:
                    print(f"  {label['label']:<24} {label['score']:.4f}")
            self.count += 1

    def close(self) -> None:
        if self.as_json:
            print("[]" if self.count == 0 else "\n]")


def write_heatmaps(directory: str, predictions, images, stems: dict[str, str], label_names: list[str]) -> list[str]:
    """Write each image's prediction figure (with the true labels and the missed ones when the file name carries
    them, as training's `examples/` do) and raw maps (`.npy`) under its unique stem; returns one failure message per
    image whose heatmaps could not be written (its prediction is printed already)."""
    failures = []
    for prediction, image in zip(predictions, images):
        try:
            os.makedirs(directory, exist_ok=True)
            stem = stems[prediction.source]
            truth = labels_in_file_name(prediction.source, label_names)
            save_prediction_figure(image, prediction, os.path.join(directory, f"{stem}.png"), ground_truth=truth)
            save_raw_maps(prediction, directory, stem)
        except OSError as error:
            failures.append(f"{prediction.source}: heatmaps not written ({error})")
    return failures


if __name__ == "__main__":
    sys.exit(main())
