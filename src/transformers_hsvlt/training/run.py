"""One training run, end to end: data, model, `FamilyTrainer`, the final evaluation (the same loop as `hsvlt-eval`)
and a complete checkpoint written atomically into `output_dir`."""

import importlib.util
import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from transformers import EarlyStoppingCallback, PreTrainedModel, TrainingArguments, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, IntervalStrategy

from .. import data as family_data
from ..checkpoints import (
    check_output_directory,
    image_processor_for,
    is_open_vocabulary,
    open_vocabulary_architectures,
    write_checkpoint,
)
from ..data.decoding import decode_images_naming_the_file
from ..data.label_subsets import restrict_to_labels
from ..evaluation import (
    EvaluationResult,
    compute_metrics_fn,
    evaluate_all_classes,
    format_extras,
    format_metric_table,
    per_class_by_name,
    write_results,
)
from ..hub import push_checkpoint_to_hub
from ..model_card import TRAINING_ARGUMENTS_IN_CARD
from ..registry import get_architecture
from ..visualization.plots import save_evaluation_plots
from .arguments import ModelArguments, OutputArguments
from .disk import naming_a_full_disk
from .lock import output_directory_lock
from .model_building import build_model, config_values_for
from .progress import use_training_progress
from .recipe import resolve_recipe
from .resume import (
    RunRecordInCheckpoints,
    check_same_run,
    check_steps_left,
    checkpoint_record_directory,
    list_checkpoints,
    resolve_resume_checkpoint,
    run_record,
    write_run_record,
)
from .trainer import FamilyTrainer, check_distributed_launch, warn_if_fsdp_is_ignored


PLOTS_DIRECTORY = "plots"
CARD_FIGURES = (f"{PLOTS_DIRECTORY}/per_class_ap.png", f"{PLOTS_DIRECTORY}/training_curves.png")
"""The plots the model card embeds: per-class AP and the training curves."""

LOCAL_DATASET_FORMATS = ("list", "custom")
"""`--dataset` formats of the user's own files: the format is no dataset's name, so the model card names none."""


def check_output_dir(
    training_args: TrainingArguments,
    model_args: ModelArguments,
    record: dict,
    resume_checkpoint: str | None,
    overwrite: bool,
) -> None:
    """Refuse, before any work, an output directory that would lose work (see `check_output_directory`) or the
    `--model_name_or_path` it would replace; a resumed run must be the one recorded in the output directory and in
    the checkpoint resumed from."""
    check_source_outside_output(model_args.model_name_or_path, training_args.output_dir)
    if resume_checkpoint is not None:
        check_same_run(training_args.output_dir, record)
        check_same_run(checkpoint_record_directory(resume_checkpoint), record)
        check_steps_left(resume_checkpoint, training_args)
    elif training_args.process_index == 0:  # the other processes of a distributed run may see its lock already
        check_output_directory(training_args.output_dir, overwrite)


def check_source_outside_output(source: str | None, output_dir: str) -> None:
    """Refuse fine-tuning a checkpoint that the run replaces: the final model of `output_dir` or one of its
    `checkpoint-*` directories."""
    if not source or not os.path.exists(source):
        return
    try:
        inside = Path(source).resolve().relative_to(Path(output_dir).resolve())
    except ValueError:
        return
    if not inside.parts or inside.parts[0].startswith(f"{PREFIX_CHECKPOINT_DIR}-"):
        raise ValueError(
            f"--model_name_or_path {source} is in --output_dir {output_dir}, which this run replaces: copy it "
            "elsewhere first, or train into another --output_dir."
        )


def remove_previous_checkpoints(output_dir: str) -> None:
    """Remove an overwritten run's `checkpoint-*` directories (they would mix with the new run's); its final
    checkpoint is replaced when the new one is written."""
    for checkpoint in list_checkpoints(output_dir):
        shutil.rmtree(checkpoint)


def train(
    model_args: ModelArguments,
    data_args: family_data.DataArguments,
    output_args: OutputArguments,
    training_args: TrainingArguments,
) -> dict:
    """Train, evaluate the best model on the evaluation split, print the metric table and save a complete
    remote-code checkpoint (model, image processor, label names, metrics, model card) in `output_dir`. Every
    argument and input is checked (data read, model built) before anything in `output_dir` is removed, and the
    output directory is locked against a second training for the whole run."""
    check_distributed_launch(training_args)
    warn_if_fsdp_is_ignored(training_args)
    architecture = get_architecture(model_args.model)
    recipe = resolve_recipe(architecture, model_args)
    record = {**run_record(model_args, data_args, training_args), "recipe": recipe.to_dict()}
    resume_checkpoint = resolve_resume_checkpoint(training_args)
    if not (model_args.model_name_or_path or model_args.backbone):  # bad config values before any work
        architecture.config_class(**config_values_for(architecture, model_args))
    check_output_dir(training_args, model_args, record, resume_checkpoint, output_args.overwrite_output_dir)
    # one process of a distributed run writes the output directory, and locks it
    lock = output_directory_lock(training_args.output_dir) if training_args.process_index == 0 else nullcontext()
    with lock:
        return train_in_output_dir(
            architecture, recipe, record, resume_checkpoint, model_args, data_args, output_args, training_args
        )


def train_in_output_dir(
    architecture, recipe, record: dict, resume_checkpoint: str | None, model_args, data_args, output_args, training_args
) -> dict:
    """The run itself, once the output directory is checked (and locked)."""
    splits = family_data.load_training_data(data_args, seed=training_args.seed)
    check_evaluation_split_has_positives(splits["eval"], data_args)
    class_names = family_data.get_class_names(splits["train"])
    eval_during_training = evaluation_split_for_training(architecture, splits["eval"], class_names, data_args)
    set_seed(training_args.seed)  # `Trainer` seeds when it is created, after the model's random initialisation
    model = build_model(architecture, model_args, class_names, splits["train"], seed=training_args.seed)
    image_processor = image_processor_for(architecture, model.config)
    augmentation = recipe_augmentation(architecture, image_processor, data_args)
    # Early stopping watches the evaluations: without any (`--eval_strategy no`) there is nothing to stop on, and
    # `EarlyStoppingCallback` would fail an assertion when training starts.
    evaluates = training_args.eval_strategy != IntervalStrategy.NO
    early_stopping = recipe.early_stopping_patience > 0 and evaluates
    callbacks = [EarlyStoppingCallback(recipe.early_stopping_patience)] if early_stopping else []
    if recipe.uses_trainer_schedule:
        training_args.lr_scheduler_type = recipe.lr_schedule
    if training_args.activation_checkpointing and training_args.ddp_find_unused_parameters is None:
        # The label gate of the last block gets no gradient (its output is not used by the logits), so DDP must look
        # for unused parameters; `Trainer` turns that off with activation checkpointing, and DDP then fails.
        training_args.ddp_find_unused_parameters = True
    trainer = FamilyTrainer(
        model=model,
        args=training_args,
        train_dataset=decode_images_naming_the_file(splits["train"]),
        eval_dataset=decode_images_naming_the_file(eval_during_training),
        data_collator=family_data.MultiLabelCollator(image_processor, len(class_names)),
        processing_class=image_processor,
        compute_metrics=compute_metrics_fn(),
        callbacks=callbacks,
        train_augmentation=augmentation,
        recipe=recipe,
    )
    use_training_progress(trainer, quiet=output_args.quiet)
    trainer.add_callback(RunRecordInCheckpoints(record))
    if trainer.is_world_process_zero():
        if resume_checkpoint is None:
            remove_previous_checkpoints(training_args.output_dir)
        write_run_record(training_args.output_dir, record)
    optimizer_states = 0 if training_args.save_only_model else 2
    try:
        with naming_a_full_disk(training_args.output_dir, model, optimizer_states):
            trainer.train(resume_from_checkpoint=resume_checkpoint)
    finally:
        trainer.end()  # every process leaves the distributed group: what follows runs in process 0 alone
    if not trainer.is_world_process_zero():
        return {}
    final = final_evaluation(trainer.model, image_processor, splits["eval"], training_args, output_args)
    final.log_history = trainer.state.log_history
    with naming_a_full_disk(training_args.output_dir, model, optimizer_states):
        save_training_checkpoint(
            trainer.model, image_processor, final, recipe, model_args, data_args, output_args, training_args, splits
        )
    print(format_metric_table(final.result.metrics, final.result.class_names))
    print("\n" + format_extras(final.extras))
    print(f"checkpoint saved to {training_args.output_dir}")
    return {**final.result.metrics, **final.extras}


def evaluation_split_for_training(architecture, eval_split, class_names: list[str], data_args):
    """The evaluation split of the per-epoch evaluations: the whole split, or with `--train_labels` (open-vocabulary
    models only) the split restricted to the trained labels; the final evaluation scores every label."""
    eval_names = family_data.get_class_names(eval_split)
    if eval_names == class_names:
        return eval_split
    if not data_args.train_labels:
        raise ValueError("The training and evaluation splits have different class names or class orders.")
    if not is_open_vocabulary(architecture):
        raise ValueError(
            f"--train_labels: {architecture.name} has one trained output per label and cannot score labels unseen in "
            f"training; use an open-vocabulary model (--model {' or '.join(open_vocabulary_architectures())})."
        )
    return restrict_to_labels(eval_split, class_names)


@dataclass
class FinalEvaluation:
    """Training's final evaluation: the result of the evaluation loop, the extra numbers (chance level, seen and
    unseen mAP) and the trainer's log history (for the training curves)."""

    result: EvaluationResult
    extras: dict
    log_history: list = field(default_factory=list)


def check_evaluation_split_has_positives(eval_split, data_args) -> None:
    """Refuse, before any work, an evaluation split without any positive label: it has no mAP (nor chance level) to
    select or report the model by."""
    try:
        family_data.chance_level_map(eval_split)
    except ValueError:
        name = data_args.eval_split or family_data.DEFAULT_SPLITS[data_args.dataset][1]
        raise ValueError(
            f"The evaluation split {name!r} of dataset {data_args.dataset!r} has no image with a positive label: its "
            "mAP is undefined, so the trained model could not be evaluated; evaluate on a split with labelled images."
        ) from None


def final_evaluation(model, image_processor, eval_split, training_args, output_args) -> FinalEvaluation:
    """Evaluate the trained model on the whole evaluation split with the same loop as `hsvlt-eval`; an
    open-vocabulary model trained on some of the labels scores all of them, seen and unseen mAP reported apart."""
    result, extras = evaluate_all_classes(
        model,
        image_processor,
        eval_split,
        batch_size=training_args.per_device_eval_batch_size,
        show_progress=not output_args.quiet,
        num_workers=training_args.dataloader_num_workers,
    )
    return FinalEvaluation(result, extras)


def recipe_augmentation(architecture, image_processor, data_args):
    """The architecture's batch augmentation, on by default except for the digits (a flip or crop changes or cuts
    digits while their labels stay)."""
    augment = data_args.augment if data_args.augment is not None else data_args.dataset != "digits"
    if not augment or architecture.augmentation is None:
        return None
    normalized = image_processor.do_normalize
    return architecture.augmentation(
        image_size=image_processor.size["height"],
        mean=tuple(image_processor.image_mean) if normalized else None,
        std=tuple(image_processor.image_std) if normalized else None,
    )


def card_dataset_name(data_args, output_args) -> str | None:
    """The dataset the model card names: `--dataset_name`, else the Hub dataset or benchmark trained on; local data
    (`--dataset list` or `custom`) has no name to give."""
    if output_args.dataset_name:
        return output_args.dataset_name
    if data_args.dataset in LOCAL_DATASET_FORMATS:
        return None
    return data_args.data_dir if data_args.dataset == "hub" else data_args.dataset


def save_training_checkpoint(
    model: PreTrainedModel,
    image_processor,
    final: FinalEvaluation,
    recipe,
    model_args,
    data_args,
    output_args,
    training_args,
    splits,
) -> None:
    """Write the final checkpoint with `eval_results.json`, the evaluation plots and training curves (`plots/`,
    embedded in the card; with matplotlib), example images for digits, and its card; push it if asked."""
    result = final.result
    overall, per_class_ap = per_class_by_name(result.metrics, result.class_names)
    draws_plots = importlib.util.find_spec("matplotlib") is not None
    if not draws_plots:
        print(f"{PLOTS_DIRECTORY}/ not written: pip install -e '.[demo]' (matplotlib) for evaluation plots.")

    def write_extras(directory: Path) -> None:
        write_results(directory / "eval_results.json", result, **final.extras)
        if data_args.dataset == "digits":
            save_examples(directory, splits["eval"])
        if draws_plots:
            trainer_state = {"log_history": final.log_history}
            save_evaluation_plots(
                directory / PLOTS_DIRECTORY, result.scores, result.targets, result.class_names, trainer_state
            )

    write_checkpoint(
        model,
        image_processor,
        training_args.output_dir,
        write_extras=write_extras,
        base_model=model_args.backbone or model_args.model_name_or_path,
        dataset_name=card_dataset_name(data_args, output_args),
        metrics=rounded_like_the_metric_table(overall),
        per_class_ap=rounded_like_the_metric_table(per_class_ap),
        training_args={**card_training_arguments(training_args), **recipe.to_dict()},
        repo_id=training_args.hub_model_id,
        figures=CARD_FIGURES if draws_plots else (),
    )
    if training_args.push_to_hub:
        repo_id = training_args.hub_model_id or Path(training_args.output_dir).name
        push_checkpoint_to_hub(training_args.output_dir, repo_id, token=training_args.hub_token)


def rounded_like_the_metric_table(values: dict) -> dict:
    """Metric values (percent) with the 2 decimals the metric table prints, for the model card."""
    return {name: round(value, 2) if isinstance(value, float) else value for name, value in values.items()}


def card_training_arguments(training_args: TrainingArguments) -> dict:
    """The recipe's hyper-parameters for the card; the schedule is reported as the `Recipe`'s `lr_schedule`, what
    really ran."""
    values = training_args.to_dict()
    return {name: values[name] for name in TRAINING_ARGUMENTS_IN_CARD if name in values and name != "lr_scheduler_type"}


def save_examples(output_dir: str | Path, dataset, count: int = 6) -> list[Path]:
    """Save the first `count` evaluation images as PNGs in `output_dir/examples/`, named after their true labels, so
    that `hsvlt-predict` has real held-out images to run on (`examples/03_five-seven.png`)."""
    directory = Path(output_dir, "examples")
    directory.mkdir(parents=True, exist_ok=True)
    names = family_data.get_class_names(dataset)
    paths = []
    for index, example in enumerate(dataset.select(range(min(count, len(dataset))))):
        path = directory / f"{index:02d}_{'-'.join(names[label] for label in example['labels']) or 'none'}.png"
        example["image"].convert("RGB").save(path)
        paths.append(path)
    return paths


__all__ = ["check_output_dir", "save_examples", "train"]
