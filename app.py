"""The demo as a Hugging Face Space runs it: `python app.py` serves the checkpoint named by `HSVLT_MODEL` (a Hub id or
a directory, default `hsvlt-digits`, the folder `hsvlt-train` writes). The Space needs this package installed (its
requirements.txt: `transformers-hsvlt[demo]` or this repository's URL with `[demo]`)."""

import os

from transformers_hsvlt.demo import build_demo


demo = build_demo(os.environ.get("HSVLT_MODEL", "hsvlt-digits"))

if __name__ == "__main__":
    demo.launch()
