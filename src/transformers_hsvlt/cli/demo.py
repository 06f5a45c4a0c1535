"""`hsvlt-demo MODEL [--port N] [--host HOST] [--share]`: serve the Gradio demo of a checkpoint in the browser.

MODEL is a checkpoint directory or Hub id of any architecture of the family. The page shows every label's score, a
threshold slider and the heatmap figure of the predicted labels (see `transformers_hsvlt.demo`). Needs the `demo`
extra (`pip install -e ".[demo]"`). Exit status 2 when the model cannot be loaded or gradio is missing.
"""

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hsvlt-demo", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="A checkpoint directory or Hub id.")
    parser.add_argument("--port", type=int, default=None, help="Port to serve on (default 7860, or the next free one).")
    parser.add_argument("--host", default=None, help="Address to listen on (default 127.0.0.1; 0.0.0.0 for all).")
    parser.add_argument("--share", action="store_true", help="Also open a temporary public gradio.live link.")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        print(f"hsvlt-demo: error: --port must be in 1..65535, got {args.port}.", file=sys.stderr)
        return 2
    try:
        from ..demo import DEMO_CSS, MAX_UPLOAD_BYTES, build_demo

        demo = build_demo(args.model, args.device)
    except (ImportError, ValueError, OSError) as error:
        print(f"hsvlt-demo: error: {error}", file=sys.stderr)
        return 2
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD_BYTES, css=DEMO_CSS
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
