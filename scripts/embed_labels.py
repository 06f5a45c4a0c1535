"""Embed the class names of a label.txt for HSVLT: same as the `hsvlt-embed-labels` command (see its --help)."""

from transformers_hsvlt.cli.embed_labels import main


if __name__ == "__main__":
    main()
