"""Thin entry point: `python scripts/predict.py ...` is `hsvlt-predict ...`."""

import sys

from transformers_hsvlt.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
