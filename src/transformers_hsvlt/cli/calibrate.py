"""`hsvlt-calibrate MODEL --calibration_split SPLIT`: one decision threshold per label, chosen on a split, saved.

`hsvlt-calibrate MODEL --dataset NAME --calibration_split SPLIT [--strategy f1|precision|global]` chooses one decision
threshold per label on a calibration split and writes them into the checkpoint's config.

The thresholds (`label_thresholds`) and the split they came from (`label_thresholds_source`) are written into
`MODEL/config.json` atomically (the whole checkpoint is staged, then moved into place; its other files are kept), and
the model card shows them. `hsvlt-predict`, the demo, the pipeline and `post_process_multi_label` then use them;
`hsvlt-eval` reports the metrics at them, labelled with the split. Strategies: `f1` (each label's best F1),
`precision` (each label's highest recall at `--target_precision`), `global` (one threshold maximising CF1 + OF1).
Labels with fewer than `--min_positives` positives in the split, or whose target precision is never reached, get the
global threshold; the table says which.
"""

import math
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..checkpoints import load_checkpoint, resolve_device, write_checkpoint
from ..data import DataArguments, load_split
from ..evaluation import evaluate_split
from ..evaluation.thresholds import STRATEGIES, calibrate_thresholds, dataset_location, describe_calibration
from ..model_card import with_thresholds_section
from ..threads import set_threads
from .common import EXIT_SUCCESS, BatchingArguments, DefaultOnceHelpFormatter, RuntimeArguments, run_command


PROG = "hsvlt-calibrate"


@dataclass
class CalibrateArguments:
    calibration_split: str = field(
        metadata={"help": "The split to choose the thresholds on (e.g. validation): never the split you report on."}
    )
    strategy: str = field(
        default="f1",
        metadata={
            "help": "f1: each label's best F1; precision: each label's highest recall at --target_precision; "
            "global: one threshold maximising CF1 + OF1.",
            "choices": list(STRATEGIES),
        },
    )
    target_precision: float = field(default=0.9, metadata={"help": "Precision to reach (--strategy precision)."})
    min_positives: int = field(
        default=5, metadata={"help": "Labels with fewer positives in the split get the global threshold."}
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda if available)."})
    seed: int = field(default=1, metadata={"help": "Seed of the digits dataset (must match training's --seed)."})
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})

    def __post_init__(self):
        if not 0 < self.target_precision <= 1 or math.isnan(self.target_precision):
            raise ValueError(f"--target_precision must be in (0, 1], got {self.target_precision}.")
        if self.min_positives < 1:
            raise ValueError(f"--min_positives must be at least 1, got {self.min_positives}.")


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (CalibrateArguments, BatchingArguments, DataArguments, RuntimeArguments),
        prog=PROG,
        description=__doc__.splitlines()[0],
        formatter_class=DefaultOnceHelpFormatter,
    )
    parser.add_argument("model", help="A local family checkpoint directory (its config.json is rewritten).")
    return parser


def check_checkpoint_directory(path: str) -> None:
    """Refuse, before any work, a MODEL that is not a writable local checkpoint directory."""
    if not os.path.isdir(path):
        raise ValueError(
            f"{path} is not a local checkpoint directory: {PROG} writes the thresholds into its config.json "
            "(download a Hub checkpoint first)."
        )
    if not os.access(path, os.W_OK) or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        raise ValueError(f"{path}: permission denied (the checkpoint is rewritten in place).")


def calibration_source(
    args: CalibrateArguments, data_args: DataArguments, num_images: int, calibration, notes: dict[str, str]
) -> dict:
    """The config's `label_thresholds_source`: where and how the thresholds were chosen, and which labels got the
    global threshold (`notes`: label name -> why)."""
    source = {
        "dataset": data_args.dataset,
        "data_dir": dataset_location(data_args.data_dir),
        "split": args.calibration_split,
        "num_images": num_images,
        "strategy": args.strategy,
        "min_positives": args.min_positives,
        "global_threshold": calibration.global_threshold,
        "labels_with_the_global_threshold": notes,
    }
    if args.strategy == "precision":
        source["target_precision"] = args.target_precision
    if data_args.dataset == "digits":
        source["seed"] = args.seed
    return source


def format_thresholds(names, thresholds, positives, notes) -> str:
    """The table printed by the command: every label's threshold, its positives in the split, and a note for the
    labels that got the global threshold."""
    width = max(len("label"), *(len(name) for name in names))
    lines = [f"{'label':<{width}}  {'threshold':>9}  {'positives':>9}"]
    for name, threshold, count in zip(names, thresholds, positives):
        note = f"  global threshold: {notes[name]}" if name in notes else ""
        lines.append(f"{name:<{width}}  {threshold:>9.4f}  {count:>9}{note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        args, batching, data_args, runtime, extra = build_parser().parse_args_into_dataclasses(argv)
        set_threads(runtime.threads)
        resolve_device(args.device)
        check_checkpoint_directory(extra.model)
        split = load_split(data_args, args.calibration_split, seed=args.seed)
        model, processor = load_checkpoint(extra.model, args.device)
        result = evaluate_split(
            model,
            processor,
            split,
            batch_size=batching.batch_size,
            show_progress=not args.quiet,
            num_workers=batching.num_workers,
        )
        calibration = calibrate_thresholds(
            result.scores, result.targets, args.strategy, args.target_precision, args.min_positives
        )
        names = [model.config.id2label[index] for index in range(model.config.num_labels)]
        column = {name: index for index, name in enumerate(result.class_names)}
        thresholds = [
            float(calibration.thresholds[column[name]]) if name in column else calibration.global_threshold
            for name in names
        ]
        notes = {result.class_names[index]: reason for index, reason in calibration.fallbacks.items()}
        notes.update({name: "not in the calibration split" for name in names if name not in column})
        positives = [int((result.targets[:, column[name]] == 1).sum()) if name in column else 0 for name in names]
        model.config.label_thresholds = thresholds
        model.config.label_thresholds_source = calibration_source(
            args, data_args, len(result.scores), calibration, notes
        )
        model.config.validate()
        write_checkpoint(
            model,
            processor,
            extra.model,
            keep=tuple(os.listdir(extra.model)),
            write_extras=lambda staging: keep_card(extra.model, staging, model.config),
        )
        print(format_thresholds(names, thresholds, positives, notes))
        print(
            f"\nglobal threshold {calibration.global_threshold:.4f}; {len(notes)} label(s) use it in place of their own"
        )
        print(f"{describe_calibration(model.config.label_thresholds_source)}: written to {extra.model}/config.json")
        if result.skipped:
            print(f"skipped {len(result.skipped)} unreadable image(s)", file=sys.stderr)
        return EXIT_SUCCESS

    return run_command(PROG, command)


def keep_card(checkpoint: str, staging, config) -> None:
    """The staged checkpoint keeps its model card (training, evaluation, figures), with the new thresholds section."""
    card = os.path.join(checkpoint, "README.md")
    if os.path.isfile(card):
        with open(card, encoding="utf-8") as file:
            text = file.read()
        (staging / "README.md").write_text(with_thresholds_section(text, config), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
