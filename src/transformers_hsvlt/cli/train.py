"""`hsvlt-train`: train HSVLT with `transformers.Trainer` (see `transformers_hsvlt.training`).

With no argument it trains the tiny preset on the embedded digit-canvas dataset (offline, a few minutes on 2 CPU
cores) and saves a checkpoint to `hsvlt-digits/`. `hsvlt-train --help` lists every option, including all of
`TrainingArguments` (bf16/fp16, gradient accumulation, resume, push to Hub, ...).
"""

import sys

from ..training import parse_train_arguments, train


def main(argv: list[str] | None = None) -> int:
    model_args, data_args, training_args = parse_train_arguments(argv)
    try:
        train(model_args, data_args, training_args)
    except (ValueError, FileNotFoundError) as error:
        message = str(error).strip()
        if "Original Traceback" in message:  # re-raised from a data-loader worker: its last line is the error
            message = message.splitlines()[-1].split(": ", 1)[-1]
        print(f"hsvlt-train: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
