"""
`hsvlt-embed-labels`: embed the class names of a `label.txt` with a text encoder and save them as `.npy`; optionally
write a copy of an HSVLT checkpoint relabelled with these names and embeddings.

```bash
hsvlt-embed-labels data/voc2007/label.txt --encoder bert-base-uncased --pooling authors --output data/voc2007/bert.npy
hsvlt-embed-labels my_labels.txt --output my_labels.npy --model hsvlt-s-coco --save-model hsvlt-s-my-labels
```
"""

import argparse

import torch

from ..label_embeddings import POOLING_CHOICES, embed_label_names, read_label_names, save_label_embeddings
from ..modeling_hsvlt import HSVLTForMultiLabelClassification


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of `hsvlt-embed-labels`."""
    parser = argparse.ArgumentParser(
        prog="hsvlt-embed-labels",
        description="Embed class names (one per line of LABELS_TXT) with a text encoder for HSVLT, save them as a "
        "(num_labels, width) float32 .npy array and, with --model, write a relabelled HSVLT checkpoint.",
    )
    parser.add_argument("labels", metavar="LABELS_TXT", help="label.txt: one class name per line, in label-id order.")
    parser.add_argument(
        "--encoder",
        default="bert-base-uncased",
        metavar="ID_OR_DIR",
        help="Hub id or local directory of the text encoder (default: bert-base-uncased, as the authors).",
    )
    parser.add_argument(
        "--pooling",
        default="authors",
        choices=POOLING_CHOICES,
        help="How a name's token vectors become one vector (default: authors, the authors' embedding script).",
    )
    parser.add_argument("--output", required=True, metavar="OUT.npy", help="Where to write the embeddings.")
    parser.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="Names encoded per forward pass (default: 64)."
    )
    parser.add_argument(
        "--device", default=None, help="Device to run the encoder on, e.g. cpu or cuda (default: cpu)."
    )
    parser.add_argument(
        "--no-rewrite-voc-names",
        dest="rewrite_voc_names",
        action="store_false",
        help="Encode diningtable, pottedplant and tvmonitor as written instead of as two words.",
    )
    parser.add_argument(
        "--model", metavar="CHECKPOINT_DIR", help="HSVLT checkpoint to relabel with these names and embeddings."
    )
    parser.add_argument("--save-model", metavar="OUT_DIR", help="Where to write the relabelled checkpoint.")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run `hsvlt-embed-labels` with `argv` (defaults to the command line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.model is None) != (args.save_model is None):
        parser.error("--model and --save-model go together: give both to write a relabelled checkpoint, or neither.")

    try:
        names = read_label_names(args.labels)
        model = HSVLTForMultiLabelClassification.from_pretrained(args.model) if args.model else None
        embeddings = embed_label_names(
            names,
            encoder=args.encoder,
            pooling=args.pooling,
            batch_size=args.batch_size,
            device=args.device,
            rewrite_voc_names=args.rewrite_voc_names,
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"hsvlt-embed-labels: error: {error}") from error
    if model is not None:
        _check_width(model, embeddings.shape[1], args)

    save_label_embeddings(embeddings, args.output)
    print(f"Wrote {embeddings.shape[0]} label embeddings of width {embeddings.shape[1]} to {args.output}.")
    if model is not None:
        model.set_label_embeddings(torch.from_numpy(embeddings), names)
        model.save_pretrained(args.save_model)
        print(f"Wrote the HSVLT checkpoint relabelled with {len(names)} labels to {args.save_model}.")


def _check_width(model: HSVLTForMultiLabelClassification, width: int, args: argparse.Namespace) -> None:
    """Exit with a message saying what to do when the encoder's width is not the checkpoint's label width."""
    expected = model.config.label_embedding_size
    if width != expected:
        raise SystemExit(
            f"hsvlt-embed-labels: error: the checkpoint {args.model} takes label embeddings of width {expected} "
            f"(config.label_embedding_size) but the encoder {args.encoder} gives {width}-d embeddings. Use an encoder "
            f"of width {expected} (the released HSVLT models use bert-base-uncased, 768), or train a new model with "
            f"label_embedding_size={width}. Nothing was written."
        )


if __name__ == "__main__":
    main()
