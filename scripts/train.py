"""Thin entry point: `python scripts/train.py ...` is `hsvlt-train ...`."""

import sys

from transformers_hsvlt.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
