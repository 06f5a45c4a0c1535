"""Resuming a training run: finding the newest complete checkpoint, and refusing to resume a different run.

Every run records what it is (`run_record.json` in the output directory: the arguments that change the model, the
data and the schedule). `--resume_from_checkpoint last` resumes only a run with the same record, and otherwise
names the arguments that differ.
"""

import json
import os
import re

from transformers import TrainerCallback, TrainingArguments
from transformers.trainer import OPTIMIZER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, logging


logger = logging.get_logger(__name__)

RUN_RECORD_NAME = "run_record.json"

TRAINING_ARGUMENTS_OF_A_RUN = (
    "learning_rate",
    "weight_decay",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
    "optim",
    "optim_args",
    "lr_scheduler_type",
)
"""The `TrainingArguments` that define a run (others, such as logging or saving, may change when resuming). The
length (`num_train_epochs`, `max_steps`) may grow: a resumed run trains on from its checkpoint, and one that would
train no further step is refused (see `check_steps_left`)."""


def run_record(model_args, data_args, training_args: TrainingArguments) -> dict:
    """What a training run is: every model and data argument, and the training arguments that define it."""
    values = training_args.to_dict()
    return {
        "model": {key: value for key, value in vars(model_args).items() if key != "quiet"},
        "data": dict(vars(data_args)),
        "training": {key: values[key] for key in TRAINING_ARGUMENTS_OF_A_RUN},
    }


def check_same_run(output_dir: str, record: dict) -> None:
    """Raise a `ValueError` naming the differences if `output_dir` records another run than `record`."""
    path = os.path.join(output_dir, RUN_RECORD_NAME)
    if not os.path.isfile(path):
        raise ValueError(
            f"--resume_from_checkpoint: {output_dir} has no {RUN_RECORD_NAME}, so it cannot be checked to hold the "
            "same run; start a new run in an empty --output_dir."
        )
    with open(path) as file:
        recorded = json.load(file)
    differences = [
        f"--{key} {recorded.get(group, {}).get(key)!r} (recorded) vs {value!r} (now)"
        for group, values in record.items()
        for key, value in json.loads(json.dumps(values)).items()
        if recorded.get(group, {}).get(key) != value
    ]
    if differences:
        raise ValueError(
            f"--resume_from_checkpoint: {output_dir} holds a different run: "
            + "; ".join(differences)
            + ". Resume with "
            "the same arguments, or train into another --output_dir."
        )


def checkpoint_record_directory(checkpoint: str) -> str:
    """Where the run record of a checkpoint is: its own copy (see `RunRecordInCheckpoints`), or for a checkpoint
    saved without one, the record of the output directory that holds it."""
    if os.path.isfile(os.path.join(checkpoint, RUN_RECORD_NAME)):
        return checkpoint
    return os.path.dirname(os.path.abspath(checkpoint))


class RunRecordInCheckpoints(TrainerCallback):
    """Copies the run record into every saved `checkpoint-N`, so that resuming from a checkpoint by its path checks
    the run it belongs to, wherever it was moved."""

    def __init__(self, record: dict):
        self.record = record

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(checkpoint):
                write_run_record(checkpoint, self.record)


def write_run_record(output_dir: str, record: dict) -> None:
    """Write `record` to `output_dir/run_record.json` atomically (a temporary file renamed into place): a run killed
    while writing it leaves the previous record or none, never a cut one."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, RUN_RECORD_NAME)
    with open(f"{path}.tmp", "w") as file:
        json.dump(record, file, indent=2, default=str)
    os.replace(f"{path}.tmp", path)


def resolve_resume_checkpoint(training_args: TrainingArguments) -> str | None:
    """
    `--resume_from_checkpoint last` (or `true`) means the newest complete checkpoint in the output directory.

    `Trainer` writes a checkpoint in place (weights, then optimizer/scheduler/RNG states, then `trainer_state.json`),
    so a run killed while saving leaves a `checkpoint-N` directory without some of these files. Such an incomplete
    checkpoint is skipped with a warning in favour of the previous one; an explicitly named incomplete checkpoint
    is an error saying what it lacks.
    """
    value = training_args.resume_from_checkpoint
    if value is None:
        return None
    needs_optimizer = not training_args.save_only_model
    if value.lower() not in ("last", "true"):
        missing = checkpoint_missing_files(value, needs_optimizer) if os.path.isdir(value) else None
        if missing:
            raise ValueError(f"--resume_from_checkpoint {value}: incomplete checkpoint, it lacks {missing}.")
        return value
    checkpoints = list_checkpoints(training_args.output_dir)
    for checkpoint in reversed(checkpoints):
        missing = checkpoint_missing_files(checkpoint, needs_optimizer)
        if not missing:
            return checkpoint
        logger.warning(f"Skipping the incomplete checkpoint {checkpoint}: it lacks {missing} (killed while saving?).")
    output_dir = training_args.output_dir
    if checkpoints:
        raise ValueError(f"--resume_from_checkpoint {value}: no complete checkpoint-* directory in {output_dir}.")
    raise ValueError(f"--resume_from_checkpoint {value}: no checkpoint-* directory in {output_dir}.")


def check_steps_left(checkpoint: str, training_args: TrainingArguments) -> None:
    """Refuse to resume from a checkpoint that is already at the end of the requested run (it would train nothing
    and save the old weights as the result)."""
    with open(os.path.join(checkpoint, TRAINER_STATE_NAME)) as file:
        state = json.load(file)
    if training_args.max_steps > 0:
        done, requested, unit = state.get("global_step", 0), training_args.max_steps, "steps (--max_steps)"
    else:
        done, requested, unit = state.get("epoch", 0), training_args.num_train_epochs, "epochs (--num_train_epochs)"
    if done >= requested:
        raise ValueError(
            f"--resume_from_checkpoint: {checkpoint} has already trained {done:g} of the {requested:g} {unit} "
            "asked for: nothing is left to train. Ask for more, or train into another --output_dir."
        )


def list_checkpoints(output_dir: str) -> list[str]:
    """The `checkpoint-N` directories of `output_dir`, oldest first."""
    found = sorted(
        (int(match.group(1)), entry.path)
        for entry in (os.scandir(output_dir) if os.path.isdir(output_dir) else ())
        if entry.is_dir() and (match := re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", entry.name))
    )
    return [path for _, path in found]


def checkpoint_missing_files(checkpoint: str, needs_optimizer: bool = True) -> str | None:
    """What a `Trainer` checkpoint directory lacks to be resumed from (`None` if complete): a readable
    `trainer_state.json` (written last), model weights, and the optimizer state unless `needs_optimizer` is false."""
    missing = []
    state_file = os.path.join(checkpoint, TRAINER_STATE_NAME)
    try:
        with open(state_file) as file:
            json.load(file)
    except FileNotFoundError:
        missing.append(TRAINER_STATE_NAME)
    except (OSError, ValueError):
        missing.append(f"a readable {TRAINER_STATE_NAME}")
    weight_files = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    if not any(os.path.isfile(os.path.join(checkpoint, name)) for name in weight_files):
        missing.append(f"model weights ({SAFE_WEIGHTS_NAME})")
    if needs_optimizer and not os.path.isfile(os.path.join(checkpoint, OPTIMIZER_NAME)):
        missing.append(OPTIMIZER_NAME)
    return ", ".join(missing) or None
