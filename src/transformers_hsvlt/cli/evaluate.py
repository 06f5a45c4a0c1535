"""`hsvlt-eval MODEL --dataset NAME [--data_dir DIR] [--eval_split SPLIT]`: the metric table of any family checkpoint
on a dataset split (stdout), optionally as JSON with per-class AP (`--json FILE`) and plots (`--plots DIR`)."""

import math
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..checkpoints import load_checkpoint, resolve_device
from ..data import DataArguments, load_training_data
from ..evaluation import check_writable, evaluate_all_classes, format_extras, format_metric_table, write_results
from ..evaluation.metrics import format_swept_table, swept_threshold_metrics
from ..threads import set_threads
from .common import EXIT_SUCCESS, DefaultOnceHelpFormatter, RuntimeArguments, run_command


PROG = "hsvlt-eval"

DEFAULT_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 1))


@dataclass
class EvalArguments:
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    num_workers: int = field(
        default=DEFAULT_WORKERS,
        metadata={
            "help": "Processes that decode and resize images while the model runs (default: cores - 1, at most 4)."
        },
    )
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
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1, got {self.batch_size}.")
        if self.num_workers < 0:
            raise ValueError(f"--num_workers must be 0 or more, got {self.num_workers}.")


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (EvalArguments, DataArguments, RuntimeArguments),
        prog=PROG,
        description=__doc__.splitlines()[0],
        formatter_class=DefaultOnceHelpFormatter,
    )
    parser.add_argument("model", help="A family checkpoint directory or Hub id.")
    return parser


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        eval_args, data_args, runtime, extra = build_parser().parse_args_into_dataclasses(argv)
        set_threads(runtime.threads)
        resolve_device(eval_args.device)
        if eval_args.json:
            check_writable(eval_args.json)
        model, processor = load_checkpoint(extra.model, eval_args.device)
        split = load_training_data(data_args, seed=eval_args.seed)["eval"]
        result, extras = evaluate_all_classes(
            model,
            processor,
            split,
            batch_size=eval_args.batch_size,
            skip_bad_images=eval_args.skip_bad_images,
            threshold=eval_args.threshold,
            top_k=eval_args.top_k,
            show_progress=not eval_args.quiet,
            num_workers=eval_args.num_workers,
        )
        print(format_metric_table(result.metrics, result.class_names))
        print("\n" + format_extras(extras))
        swept = (
            swept_threshold_metrics(result.scores, result.targets, eval_args.top_k) if eval_args.swept_threshold else {}
        )
        if swept:
            print("\n" + format_swept_table(swept))
        if result.skipped:
            print(f"\nskipped {len(result.skipped)} unreadable image(s):", file=sys.stderr)
            for path, reason in result.skipped:
                print(f"  {path}: {reason}", file=sys.stderr)
        if eval_args.json:
            write_results(eval_args.json, result, **extras, **swept)
        if eval_args.plots:
            from ..visualization import save_evaluation_plots

            save_evaluation_plots(eval_args.plots, result.scores, result.targets, result.class_names)
        return EXIT_SUCCESS

    return run_command(PROG, command)


if __name__ == "__main__":
    sys.exit(main())
