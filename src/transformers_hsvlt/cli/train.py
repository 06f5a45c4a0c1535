"""`hsvlt-train`: train any family architecture with `transformers.Trainer` (see `transformers_hsvlt.training`).

With no argument it trains the tiny HSVLT preset on the embedded digit-canvas dataset (offline, a few minutes on 2
CPU cores) and saves a checkpoint to `hsvlt-digits/`. `--model msrn` (or any registered architecture) trains
another member of the family with its authors' recipe. `hsvlt-train --help` lists every option, including all of
`TrainingArguments` (bf16/fp16, gradient accumulation, resume, push to Hub, ...).
"""

import sys

from tqdm.auto import tqdm

from ..threads import set_threads
from ..training import parse_train_arguments, train
from ..training.resume import checkpoint_missing_files, list_checkpoints
from .common import EXIT_SUCCESS, run_command


PROG = "hsvlt-train"


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        model_args, data_args, output_args, training_args = parse_train_arguments(argv)
        threads = set_threads(output_args.threads)
        print(
            f"{PROG}: {threads} CPU thread(s) (--threads {output_args.threads}); the same seed and thread count "
            "train the same model",
            flush=True,
        )
        try:
            train(model_args, data_args, output_args, training_args)
        except KeyboardInterrupt:
            tqdm.write(interrupted_message(training_args.output_dir), file=sys.stderr)  # below the progress bar
            return 130
        return EXIT_SUCCESS

    return run_command(PROG, command)


def interrupted_message(output_dir: str) -> str:
    """One line saying where the last complete checkpoint is and how to resume."""
    complete = [path for path in list_checkpoints(output_dir) if checkpoint_missing_files(path) is None]
    if not complete:
        return f"{PROG}: interrupted before the first checkpoint was saved; nothing to resume in {output_dir}."
    return (
        f"{PROG}: interrupted; the last complete checkpoint is {complete[-1]}. Resume with the same arguments plus "
        "--resume_from_checkpoint last."
    )


if __name__ == "__main__":
    sys.exit(main())
