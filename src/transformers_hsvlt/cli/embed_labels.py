"""
`hsvlt-embed-labels`: embed the class names of a `label.txt` with a text encoder and save them as `.npy`; optionally
write a copy of a checkpoint relabelled with these names and embeddings.

```bash
hsvlt-embed-labels data/voc2007/label.txt --encoder bert-base-uncased --pooling authors --output data/voc2007/bert.npy
hsvlt-embed-labels my_labels.txt --output my_labels.npy --model hsvlt-s-coco --save_model hsvlt-s-my-labels
```
"""

import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser

from ..checkpoints import (
    check_output_directory,
    checkpoint_architecture,
    load_checkpoint,
    resolve_device,
    write_checkpoint,
)
from ..data import read_label_names
from ..label_embeddings import POOLING_CHOICES, embed_label_names, save_label_embeddings
from .common import EXIT_SUCCESS, DefaultOnceHelpFormatter, run_command


PROG = "hsvlt-embed-labels"


@dataclass
class EmbedArguments:
    output: str = field(metadata={"help": "Where to write the (num_labels, width) float32 embeddings (.npy)."})
    encoder: str = field(
        default="bert-base-uncased",
        metadata={
            "help": "Hub id or local directory of the text encoder (default: bert-base-uncased, as the authors)."
        },
    )
    pooling: str = field(
        default="authors",
        metadata={"help": "How a name's token vectors become one vector.", "choices": list(POOLING_CHOICES)},
    )
    batch_size: int = field(default=64, metadata={"help": "Names encoded per forward pass (default: 64)."})
    device: str | None = field(
        default=None, metadata={"help": "Device of the encoder, e.g. cpu or cuda (default: cpu)."}
    )
    rewrite_voc_names: bool = field(
        default=True,
        metadata={"help": "Encode diningtable, pottedplant and tvmonitor as two words (--no_rewrite_voc_names)."},
    )
    model: str | None = field(
        default=None, metadata={"help": "A checkpoint to relabel with these names and embeddings."}
    )
    save_model: str | None = field(default=None, metadata={"help": "Where to write the relabelled checkpoint."})
    allow_untrained_labels: bool = field(
        default=False,
        metadata={"help": "Relabel even when names are new to the checkpoint (their head rows start untrained)."},
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace a non-empty --save_model directory."})

    def __post_init__(self):
        if (self.model is None) != (self.save_model is None):
            raise ValueError(
                "--model and --save_model go together: give both to write a relabelled checkpoint, or neither."
            )
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1, got {self.batch_size}.")


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        EmbedArguments,
        prog=PROG,
        description=__doc__.strip().splitlines()[0],
        formatter_class=DefaultOnceHelpFormatter,
    )
    parser.add_argument("labels", metavar="LABELS_TXT", help="label.txt: one class name per line, in label-id order.")
    return parser


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        args, extra = build_parser().parse_args_into_dataclasses(argv)
        resolve_device(args.device)
        names = read_label_names(extra.labels)
        model = processor = None
        if args.model:
            check_takes_label_embeddings(args.model)
            check_output_directory(args.save_model, args.overwrite_output_dir, flag="--save_model")
            model, processor = load_checkpoint(args.model, "cpu")
            check_relabelling(model, names, args)
        embeddings = embed_label_names(
            names,
            encoder=args.encoder,
            pooling=args.pooling,
            batch_size=args.batch_size,
            device=args.device,
            rewrite_voc_names=args.rewrite_voc_names,
        )
        if model is not None:
            check_width(model, embeddings.shape[1], args)
        save_label_embeddings(embeddings, args.output)
        print(f"Wrote {embeddings.shape[0]} label embeddings of width {embeddings.shape[1]} to {args.output}.")
        if model is not None:
            new_names = [name for name in names if name not in model.config.label2id]
            model.set_label_embeddings(torch.from_numpy(embeddings), names)
            write_checkpoint(model, processor, args.save_model, provenance=f"Relabelled from `{args.model}`.")
            print(f"Wrote the checkpoint relabelled with {len(names)} labels to {args.save_model}.")
            if new_names:
                print(
                    f"These labels are new and need fine-tuning (their head rows are untrained): {', '.join(new_names)}."
                )
        return EXIT_SUCCESS

    return run_command(PROG, command)


def check_takes_label_embeddings(model_name: str) -> None:
    """Refuse, from the checkpoint's config alone, a model whose architecture is not relabelled with label
    embeddings (`Architecture.relabelling`)."""
    architecture = checkpoint_architecture(model_name)
    ways = {"class_names": "their own text tower reads class names: score new names with hsvlt-predict --labels"}
    architecture.refuse_unless(
        architecture.relabelling == "label_embeddings",
        f"--model {model_name}",
        f"models take no new label embeddings ({ways.get(architecture.relabelling, 'their label set is fixed')}).",
    )


def check_relabelling(model, names: list[str], args: EmbedArguments) -> None:
    """Refuse (without `--allow_untrained_labels`) to relabel a model whose per-label head has no row for some of
    the names."""
    new_names = [name for name in names if name not in model.config.label2id]
    if new_names and not args.allow_untrained_labels:
        raise ValueError(
            f"{args.model} has a per-label head with no trained row for {new_names}: pass --allow_untrained_labels "
            "to write a checkpoint whose new labels need fine-tuning, or fine-tune with hsvlt-train "
            "--model_name_or_path."
        )


def check_width(model, width: int, args: EmbedArguments) -> None:
    """Refuse an encoder whose width is not the checkpoint's label width, saying what to do."""
    expected = model.config.label_embedding_size
    if width != expected:
        raise ValueError(
            f"the checkpoint {args.model} takes label embeddings of width {expected} (config.label_embedding_size) "
            f"but the encoder {args.encoder} gives {width}-d embeddings. Use an encoder of width {expected} (the "
            f"released HSVLT models use bert-base-uncased, 768), or train a new model with label_embedding_size="
            f"{width}. Nothing was written."
        )


if __name__ == "__main__":
    sys.exit(main())
