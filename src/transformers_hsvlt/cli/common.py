"""What the five commands share: one parser style, one error format and one exit-code rule.

- Parsing: `transformers.HfArgumentParser` over dataclasses for every command; flags are spelled as the fields
  (`--output_dir`, `--top_k`), and the kebab-case spelling (`--top-k`) is accepted too.
- Exit codes: 0 success; 1 some inputs failed while the rest succeeded (e.g. one unreadable image among many);
  2 usage errors and bad input. Errors are one line on stderr (`hsvlt-eval: error: ...`), never a traceback.
- Output: one progress bar per phase and no library noise on success; `--quiet` drops the progress bars.
"""

import logging
import os
import re
import sys
import warnings
from argparse import ArgumentDefaultsHelpFormatter
from collections.abc import Callable
from dataclasses import dataclass, field

import datasets
import transformers
from huggingface_hub.errors import StrictDataclassError
from huggingface_hub.utils import disable_progress_bars
from tqdm.auto import tqdm


EXIT_SUCCESS = 0
EXIT_PARTIAL_FAILURE = 1
EXIT_BAD_INPUT = 2

HANDLED_ERRORS = (ValueError, OSError, StrictDataclassError, ImportError)
"""Errors that bad input raises in our code (a `FileNotFoundError` or an `ImageLoadError` among them), the type
errors of `@strict` configs (a config field of the wrong type in `config.json` or `--config_overrides`), and the
missing optional dependency of a feature (its message says what to install)."""


MAX_ERROR_CHARS = 1000
"""Longest error line printed; a longer one (a pasted list of names, a huge path) is cut in its middle."""


def one_line(error: BaseException | str) -> str:
    """The message of an error on one line. Errors re-raised from a data-loader worker carry the worker's traceback:
    their last line is the error."""
    message = str(error).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    message = " ".join(message.split()) or type(error).__name__
    if len(message) > MAX_ERROR_CHARS:  # a huge name or value in it: keep the start and the end
        half = MAX_ERROR_CHARS // 2
        message = f"{message[:half]} [... {len(message) - 2 * half:,} characters cut ...] {message[-half:]}"
    return message


def fail(prog: str, error: BaseException | str) -> int:
    """Print `prog: error: <one line>` on stderr (on a line of its own, above a progress bar that was running) and
    return the bad-input exit code."""
    tqdm.write(f"{prog}: error: {one_line(error)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def quiet_libraries() -> None:
    """Silence the libraries' informational logs, warnings and the progress bars of saving and dataset building:
    on a successful run the commands print only their own progress bars and results."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    disable_progress_bars()
    logging.getLogger("torch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


@dataclass
class RuntimeArguments:
    """How a command uses this machine (shared by the commands that run a model)."""

    threads: str = field(
        default="auto",
        metadata={
            "help": "CPU intra-op threads: auto (as many as CPUs are idle at the start: on a busy machine HSVLT's "
            "many small products slow down sharply with more) or a number. See transformers_hsvlt.threads."
        },
    )


DEFAULT_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 1))


@dataclass
class BatchingArguments:
    """How a command that runs a model over a dataset split batches it (shared by hsvlt-eval and hsvlt-calibrate)."""

    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    num_workers: int = field(
        default=DEFAULT_WORKERS,
        metadata={
            "help": "Processes that decode and resize images while the model runs (default: cores - 1, at most 4)."
        },
    )

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1, got {self.batch_size}.")
        if self.num_workers < 0:
            raise ValueError(f"--num_workers must be 0 or more, got {self.num_workers}.")


EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT), as shells report it."""
STATED_DEFAULT = re.compile(r"\bdefault\b(:| depends| \d)", re.IGNORECASE)
"""How a help text states its default itself: "(default: the preset's)", "Default: on, ...", "(default 0.5)"."""


class DefaultOnceHelpFormatter(ArgumentDefaultsHelpFormatter):
    """`HfArgumentParser`'s help formatter, which appends "(default: X)" to every option, except to the options whose
    help states its default already (a default of None that means "the preset's" would read "(default: the
    preset's). (default: None)")."""

    def _get_help_string(self, action):
        if STATED_DEFAULT.search(action.help or ""):
            return action.help
        return super()._get_help_string(action)


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a command body with the libraries quiet; bad input anywhere becomes a one-line error with exit code 2, and
    Ctrl-C one line with exit code 130 (commands that can say more, like `hsvlt-train`, catch it first)."""
    quiet_libraries()
    try:
        return command()
    except HANDLED_ERRORS as error:
        return fail(prog, error)
    except KeyboardInterrupt:
        tqdm.write(f"{prog}: interrupted (Ctrl-C).", file=sys.stderr)
        return EXIT_INTERRUPTED
