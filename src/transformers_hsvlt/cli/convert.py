"""
`hsvlt-convert`: convert a checkpoint of the authors' code (github.com/NaturalKnight/HSVLT) into a Hugging Face
checkpoint directory that loads with `AutoModelForImageClassification.from_pretrained(DIR, trust_remote_code=True)`.

```bash
hsvlt-convert experiments/mscoco/checkpoints/best_model.pth --labels data/mscoco/label.txt \
    --label-embeddings data/mscoco/bert.npy --output hsvlt-s-coco
```
"""

import argparse

from ..conversion import convert_authors_checkpoint


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of `hsvlt-convert`."""
    parser = argparse.ArgumentParser(
        prog="hsvlt-convert",
        description="Convert an authors' HSVLT checkpoint (.pth) with its label.txt and label-embedding .npy into a "
        "Hugging Face checkpoint directory (safetensors, config, remote code, image processor, model card). The "
        ".pth is read with torch.load(weights_only=True): files holding pickled code are refused.",
    )
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="The authors' .pth (a state dict, or {'model': ...})."
    )
    parser.add_argument("--labels", required=True, metavar="LABEL_TXT", help="label.txt: one class name per line.")
    parser.add_argument(
        "--label-embeddings", required=True, metavar="NPY", help="The (num_labels, 768) label embeddings (.npy)."
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="Directory to write the checkpoint to.")
    parser.add_argument(
        "--num-heads",
        type=int,
        default=1,
        metavar="N",
        help="IVLA attention heads of the trained model (default: 1, the released configuration).",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run `hsvlt-convert` with `argv` (defaults to the command line)."""
    args = build_parser().parse_args(argv)
    try:
        model = convert_authors_checkpoint(
            args.checkpoint,
            args.labels,
            args.label_embeddings,
            args.output,
            num_attention_heads=args.num_heads,
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"hsvlt-convert: error: {' '.join(str(error).split())}") from error
    config = model.config
    print(
        f"Converted {args.checkpoint} (depths {config.depths}, widths {config.hidden_sizes}, {config.num_labels} "
        f"labels) to {args.output}. Load it with AutoModelForImageClassification.from_pretrained({args.output!r}, "
        "trust_remote_code=True)."
    )


if __name__ == "__main__":
    main()
