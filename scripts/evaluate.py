"""Thin entry point: `python scripts/evaluate.py ...` is `hsvlt-eval ...`."""

import sys

from transformers_hsvlt.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
