"""Convert an authors' HSVLT checkpoint to a Hugging Face one: same as the `hsvlt-convert` command (see its --help)."""

from transformers_hsvlt.cli.convert import main


if __name__ == "__main__":
    main()
