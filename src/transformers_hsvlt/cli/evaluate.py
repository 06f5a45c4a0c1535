"""`hsvlt-eval MODEL --dataset NAME [--data_dir DIR] [--eval_split SPLIT]`: the metric table of a checkpoint on a
dataset split (stdout), optionally as JSON with per-class AP (`--json FILE`)."""

import json
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..inference import evaluate_split, load_checkpoint
from ..metrics import format_metric_table, per_class_by_name
from ..training import DataArguments, load_training_data


@dataclass
class EvalArguments:
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    json: str | None = field(default=None, metadata={"help": "Also write the results (with per-class AP) to this JSON file."})
    skip_bad_images: bool = field(
        default=False, metadata={"help": "Leave out unreadable images (listed at the end) instead of stopping at the first."}
    )
    threshold: float = field(default=0.5, metadata={"help": "Score threshold of CP/CR/CF1/OP/OR/OF1."})
    top_k: int = field(default=3, metadata={"help": "k of the top-k CP/CR/CF1/OP/OR/OF1."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda if available)."})
    seed: int = field(default=1, metadata={"help": "Seed of the digits dataset (must match training's --seed)."})


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser((EvalArguments, DataArguments))
    parser.add_argument("model", help="An HSVLT checkpoint directory or Hub id.")
    eval_args, data_args, extra = parser.parse_args_into_dataclasses(argv)
    try:
        model, processor = load_checkpoint(extra.model, eval_args.device)
        split = load_training_data(data_args, seed=eval_args.seed)["eval"]
        result = evaluate_split(
            model, processor, split, eval_args.batch_size, eval_args.skip_bad_images, eval_args.threshold, eval_args.top_k
        )
    except (ValueError, OSError) as error:
        print(f"hsvlt-eval: error: {error}", file=sys.stderr)
        return 2
    print(format_metric_table(result.metrics, result.class_names))
    if result.skipped:
        print(f"\nskipped {len(result.skipped)} unreadable image(s):", file=sys.stderr)
        for path, reason in result.skipped:
            print(f"  {path}: {reason}", file=sys.stderr)
    if eval_args.json:
        payload, per_class_ap = per_class_by_name(result.metrics, result.class_names)
        payload["per_class_AP"] = per_class_ap
        payload["num_images"] = len(split) - len(result.skipped)
        payload["skipped"] = [{"path": path, "reason": reason} for path, reason in result.skipped]
        with open(eval_args.json, "w") as file:
            json.dump(payload, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
