"""
`hsvlt-convert`: convert a checkpoint of an architecture's authors' code into a Hugging Face checkpoint directory
that loads with `AutoModelForImageClassification.from_pretrained(DIR, trust_remote_code=True)`.

```bash
hsvlt-convert experiments/mscoco/checkpoints/best_model.pth --labels data/mscoco/label.txt \\
    --label_embeddings data/mscoco/bert.npy --output hsvlt-s-coco
hsvlt-convert --architecture msrn model_best.pth.tar --labels coco_labels.txt \\
    --label_embeddings coco_glove_word2vec.pkl --cooccurrence coco_adj.pkl --output msrn-coco
```
"""

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..checkpoints import check_output_directory, convert_checkpoint
from ..registry import architecture_names
from .common import EXIT_SUCCESS, DefaultOnceHelpFormatter, run_command


PROG = "hsvlt-convert"


@dataclass
class ConvertArguments:
    output: str = field(metadata={"help": "Directory to write the checkpoint to."})
    architecture: str = field(default="hsvlt", metadata={"help": "Architecture of the checkpoint: hsvlt, msrn, ..."})
    labels: str | None = field(default=None, metadata={"help": "label.txt: one class name per line, in head order."})
    label_embeddings: str | None = field(
        default=None, metadata={"help": "The label-name vectors: .npy (HSVLT: (num_labels, 768)) or the authors' .pkl."}
    )
    cooccurrence: str | None = field(
        default=None, metadata={"help": "Label co-occurrence counts (MSRN: the authors' *_adj.pkl, or .npz)."}
    )
    num_heads: int | None = field(
        default=None, metadata={"help": "HSVLT's IVLA attention heads of the trained model (default 1, released)."}
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace a non-empty --output directory."})


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        ConvertArguments,
        prog=PROG,
        description=__doc__.strip().splitlines()[0],
        formatter_class=DefaultOnceHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="The authors' checkpoint (.pth / .pth.tar).")
    return parser


def converter_options(args: ConvertArguments) -> dict:
    """The converter's keyword arguments: the options given on the command line."""
    options = {
        "labels": args.labels,
        "label_embeddings": args.label_embeddings,
        "cooccurrence": args.cooccurrence,
        "num_attention_heads": args.num_heads,
    }
    return {name: value for name, value in options.items() if value is not None}


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        args, extra = build_parser().parse_args_into_dataclasses(argv)
        if args.architecture not in architecture_names():
            raise ValueError(f"--architecture {args.architecture}: unknown; use one of {architecture_names()}.")
        check_output_directory(args.output, args.overwrite_output_dir, flag="--output")
        model = convert_checkpoint(args.architecture, extra.checkpoint, args.output, **converter_options(args))
        config = model.config
        print(
            f"Converted {extra.checkpoint} ({args.architecture}, {config.num_labels} labels) to {args.output}. Load it "
            f"with AutoModelForImageClassification.from_pretrained({args.output!r}, trust_remote_code=True)."
        )
        return EXIT_SUCCESS

    return run_command(PROG, command)


if __name__ == "__main__":
    sys.exit(main())
