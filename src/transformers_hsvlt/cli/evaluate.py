"""`hsvlt-eval MODEL --dataset NAME [--data_dir DIR] [--eval_split SPLIT]`: the metric table of any family checkpoint
on a dataset split (stdout), optionally as JSON with per-class AP (`--json FILE`) and plots (`--plots DIR`).

A checkpoint with calibrated thresholds (`hsvlt-calibrate`) also gets CP/CR/CF1/OP/OR/OF1 at those thresholds,
labelled with the split they were calibrated on, and as optimistic when that is the evaluated split."""

import math
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..checkpoints import check_output_directory, load_checkpoint, resolve_device
from ..data import DEFAULT_SPLITS, DataArguments, load_training_data
from ..evaluation import check_writable, evaluate_all_classes, format_extras, format_metric_table, write_results
from ..evaluation.metrics import format_swept_table, multilabel_metrics, swept_threshold_metrics
from ..evaluation.thresholds import dataset_location, describe_calibration
from ..image_processing_multilabel import calibrated_thresholds
from ..threads import set_threads
from .common import EXIT_SUCCESS, BatchingArguments, DefaultOnceHelpFormatter, RuntimeArguments, run_command


PROG = "hsvlt-eval"


@dataclass
class EvalArguments:
    json: str | None = field(
        default=None, metadata={"help": "Also write the results (with per-class AP) to this JSON file."}
    )
    plots: str | None = field(
        default=None,
        metadata={"help": "Write evaluation plots (per-class AP, precision-recall, F1 vs threshold) here."},
    )
    skip_bad_images: bool = field(
        default=False,
        metadata={"help": "Leave out unreadable images (listed at the end) instead of stopping at the first."},
    )
    threshold: float = field(default=0.5, metadata={"help": "Score threshold of CP/CR/CF1/OP/OR/OF1, in [0, 1]."})
    top_k: int = field(default=3, metadata={"help": "k of the top-k CP/CR/CF1/OP/OR/OF1."})
    swept_threshold: bool = field(
        default=False,
        metadata={
            "help": "Also report CP/CR/CF1/OP/OR/OF1 at the logit threshold in -1.0..0.9 that maximises CF1 + OF1, "
            "as MSRN's authors do (tuned on the evaluated split: optimistic)."
        },
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda if available)."})
    seed: int = field(default=1, metadata={"help": "Seed of the digits dataset (must match training's --seed)."})
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})

    def __post_init__(self):
        if not 0 <= self.threshold <= 1 or math.isnan(self.threshold):
            raise ValueError(f"--threshold must be in [0, 1], got {self.threshold}.")
        if self.top_k < 1:
            raise ValueError(f"--top_k must be at least 1, got {self.top_k}.")


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (EvalArguments, BatchingArguments, DataArguments, RuntimeArguments),
        prog=PROG,
        description=__doc__.splitlines()[0],
        formatter_class=DefaultOnceHelpFormatter,
    )
    parser.add_argument("model", help="A family checkpoint directory or Hub id.")
    return parser


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        eval_args, batching, data_args, runtime, extra = build_parser().parse_args_into_dataclasses(argv)
        set_threads(runtime.threads)
        resolve_device(eval_args.device)
        if eval_args.json:
            check_writable(eval_args.json)
        if eval_args.plots:
            check_output_directory(eval_args.plots, overwrite=True, flag="--plots")
        model, processor = load_checkpoint(extra.model, eval_args.device)
        split = load_training_data(data_args, seed=eval_args.seed)["eval"]
        result, extras = evaluate_all_classes(
            model,
            processor,
            split,
            batch_size=batching.batch_size,
            skip_bad_images=eval_args.skip_bad_images,
            threshold=eval_args.threshold,
            top_k=eval_args.top_k,
            show_progress=not eval_args.quiet,
            num_workers=batching.num_workers,
        )
        print(format_metric_table(result.metrics, result.class_names))
        print("\n" + format_extras(extras))
        swept = (
            swept_threshold_metrics(result.scores, result.targets, eval_args.top_k) if eval_args.swept_threshold else {}
        )
        if swept:
            print("\n" + format_swept_table(swept))
        calibrated = calibrated_metrics(model.config, result, data_args, eval_args.top_k)
        if calibrated:
            print("\n" + format_calibrated_table(calibrated))
        if result.skipped:
            print(f"\nskipped {len(result.skipped)} unreadable image(s):", file=sys.stderr)
            for path, reason in result.skipped:
                print(f"  {path}: {reason}", file=sys.stderr)
        if eval_args.json:
            write_results(eval_args.json, result, **extras, **swept, **calibrated)
        if eval_args.plots:
            from ..visualization import save_evaluation_plots

            skipped = []
            save_evaluation_plots(eval_args.plots, result.scores, result.targets, result.class_names, skipped=skipped)
            for note in skipped:
                print(f"{PROG}: note: {note}", file=sys.stderr)
        return EXIT_SUCCESS

    return run_command(PROG, command)


def calibrated_metrics(config, result, data_args: DataArguments, top_k: int) -> dict:
    """CP/CR/CF1/OP/OR/OF1 (and top-k) at the checkpoint's calibrated thresholds, keys ending in `_calibrated`, with
    `label_thresholds_source` and `calibrated_on_evaluated_split`; empty for a checkpoint without calibrated
    thresholds for every class of the split."""
    by_name = calibrated_thresholds(config)
    if not by_name or not set(result.class_names) <= set(by_name):
        return {}
    thresholds = [by_name[name] for name in result.class_names]
    metrics = multilabel_metrics(result.scores, result.targets, threshold=thresholds, top_k=top_k)
    source = config.label_thresholds_source or {}
    evaluated = (
        data_args.dataset,
        dataset_location(data_args.data_dir),
        data_args.eval_split or DEFAULT_SPLITS[data_args.dataset][1],
    )
    same_split = evaluated == (source.get("dataset"), source.get("data_dir"), source.get("split"))
    return {
        **{f"{key}_calibrated": value for key, value in metrics.items() if key not in ("mAP", "per_class_AP")},
        "label_thresholds_source": source,
        "calibrated_on_evaluated_split": same_split,
    }


def format_calibrated_table(calibrated: dict) -> str:
    """The metrics at the calibrated thresholds as a labelled table (see `calibrated_metrics`)."""
    table = format_metric_table(
        {key.removesuffix("_calibrated"): value for key, value in calibrated.items() if key.endswith("_calibrated")}
    )
    label = describe_calibration(calibrated["label_thresholds_source"])
    if calibrated["calibrated_on_evaluated_split"]:
        label += "; THIS VERY SPLIT: optimistic"
    return f"at the calibrated thresholds ({label}):\n{table}"


if __name__ == "__main__":
    sys.exit(main())
