"""Training HSVLT with `transformers.Trainer`: arguments, recipes, datasets, model construction, the LR schedule.

`hsvlt-train` (see `cli/train.py`) is a thin wrapper over `parse_train_arguments` and `train`. With no argument it
trains the `tiny` preset on the embedded digit-canvas dataset; with `--preset hsvlt-s` (the default for every other
dataset) the defaults are the authors' MS-COCO recipe: AdamW lr 1e-5, weight decay 1e-4, batch 4, 2 warm-up epochs,
ReduceLROnPlateau on validation mAP, early stopping after 4 epochs without improvement, at most 100 epochs, seed 1.
Every `TrainingArguments` flag can override the recipe.
"""

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from datasets import Image as ImageFeature
from transformers import EarlyStoppingCallback, HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer import OPTIMIZER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, IntervalStrategy
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, logging

from . import data as hsvlt_data
from .backbone import build_hsvlt_from_convnext
from .configuration_hsvlt import HSVLTConfig
from .hub import push_checkpoint_to_hub, save_model_card
from .image_processing_hsvlt import HSVLTImageProcessor
from .inference import load_dataset_image, load_pretrained_weights
from .label_embeddings import embed_label_names, load_label_embeddings
from .metrics import compute_metrics_fn, format_metric_table, multilabel_metrics, per_class_by_name, sigmoid
from .modeling_hsvlt import HSVLTForMultiLabelClassification

logger = logging.get_logger(__name__)

PRESETS = {
    "hsvlt-s": {},
    "tiny": dict(depths=[1, 1, 3, 1], hidden_sizes=[48, 96, 144, 192], image_size=64, initializer_range=0.05),
}
"""Model presets: `hsvlt-s` is the paper's model (the `HSVLTConfig` defaults); `tiny` trains on 2 CPU cores in minutes."""

RECIPES = {
    "hsvlt-s": dict(
        learning_rate=1e-5,
        weight_decay=1e-4,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=16,
        num_train_epochs=100,
        seed=1,
        dataloader_num_workers=4,
    ),
    "tiny": dict(
        learning_rate=1e-3,
        weight_decay=1e-4,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        num_train_epochs=20,
        seed=1,
        dataloader_num_workers=0,
    ),
}
"""`TrainingArguments` defaults of each preset (flags given on the command line win)."""

COMMON_TRAINING_DEFAULTS = dict(
    eval_strategy="epoch",
    save_strategy="epoch",
    logging_strategy="epoch",
    load_best_model_at_end=True,
    metric_for_best_model="mAP",
    greater_is_better=True,
    save_total_limit=2,
    remove_unused_columns=False,
    report_to="none",
    dataloader_pin_memory=torch.cuda.is_available(),
    lr_scheduler_type="constant",
)

DEFAULT_SPLITS = {
    # dataset format -> (training split, evaluation split)
    "digits": ("train", "test"),
    "voc2007": ("trainval", "test"),
    "coco2014": ("train", "validation"),
    "nuswide": ("train", "test"),
    "list": ("train", "test"),
    "custom": ("train", "test"),
    "hub": ("train", "validation"),
}


@dataclass
class ModelArguments:
    """Which HSVLT to train and where its label embeddings and backbone weights come from."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An HSVLT checkpoint (directory or Hub id) to fine-tune instead of building one."}
    )
    preset: str = field(
        default="auto",
        metadata={"help": "Model size and recipe: 'hsvlt-s' (the paper's), 'tiny', or 'auto' (tiny for digits).", "choices": ["auto", "hsvlt-s", "tiny"]},
    )
    backbone: str | None = field(
        default=None,
        metadata={"help": "ConvNeXt weights for the visual hierarchy: a transformers ConvNeXt (Hub id or directory, e.g. "
                  "facebook/convnext-small-384-22k-1k) or an original ConvNeXt .pth file."},
    )
    label_embeddings: str | None = field(
        default=None, metadata={"help": "A (num_labels, width) .npy of label-name embeddings (see hsvlt-embed-labels)."}
    )
    text_encoder: str | None = field(
        default=None, metadata={"help": "Embed the class names with this text encoder (Hub id or directory), e.g. bert-base-uncased."}
    )
    label_pooling: str = field(default="authors", metadata={"help": "Pooling of --text_encoder outputs (see hsvlt-embed-labels)."})
    random_label_embedding_size: int = field(
        default=64,
        metadata={"help": "Width of seeded random label embeddings, used when no --label_embeddings or --text_encoder is given."},
    )
    image_size: int | None = field(default=None, metadata={"help": "Training resolution (default: the preset's)."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "IVLA heads (default: the preset's)."})
    drop_path_rate: float | None = field(default=None, metadata={"help": "Stochastic depth rate (default: the preset's)."})
    warmup_epochs: float = field(default=-1, metadata={"help": "Linear warm-up length in epochs (default: 2 for hsvlt-s, 0.5 for tiny)."})
    plateau_factor: float = field(default=0.1, metadata={"help": "LR factor when validation mAP stops improving."})
    plateau_patience: int = field(default=1, metadata={"help": "Evaluations without improvement before the LR is reduced."})
    early_stopping_patience: int = field(default=4, metadata={"help": "Evaluations without improvement before stopping (0: never)."})


@dataclass
class DataArguments:
    """Which dataset to train on (see `transformers_hsvlt.data`)."""

    dataset: str = field(default="digits", metadata={"help": "Dataset format.", "choices": list(DEFAULT_SPLITS)})
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Root of the dataset (VOCdevkit, COCO root, NUS-WIDE root, custom CSV/JSONL/folder) or a "
                  "Hub dataset name / local dataset directory for --dataset hub."},
    )
    train_split: str | None = field(default=None, metadata={"help": "Training split (default depends on the dataset)."})
    eval_split: str | None = field(default=None, metadata={"help": "Evaluation split (default depends on the dataset)."})
    label_file: str | None = field(default=None, metadata={"help": "label.txt (one class per line) for --dataset list/custom."})
    train_list: str | None = field(default=None, metadata={"help": "Authors' list file of the training split (--dataset list)."})
    eval_list: str | None = field(default=None, metadata={"help": "Authors' list file of the evaluation split (--dataset list)."})
    label_column: str = field(default="labels", metadata={"help": "Label column for --dataset hub."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many evaluation images."})
    augment: bool | None = field(
        default=None,
        metadata={"help": "Authors' augmentation (flip, RandomResizedCrop 0.7-1, RandAugment) on the training device. "
                  "Default: on, except for digits (a flip or crop changes or cuts digits while their labels stay)."},
    )
    digits_train_size: int = field(default=4000, metadata={"help": "Number of training canvases of the digits dataset."})
    digits_test_size: int = field(default=500, metadata={"help": "Number of test canvases of the digits dataset."})


def resolve_preset(model_args: ModelArguments, data_args: DataArguments) -> str:
    if model_args.preset != "auto":
        return model_args.preset
    return "tiny" if data_args.dataset == "digits" else "hsvlt-s"


def parse_train_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse `hsvlt-train` arguments; the preset's recipe gives the `TrainingArguments` defaults."""
    argv = sys.argv[1:] if argv is None else list(argv)
    without_help = [argument for argument in argv if argument not in ("-h", "--help")]
    model_args, data_args, _ = HfArgumentParser((ModelArguments, DataArguments)).parse_args_into_dataclasses(
        without_help, return_remaining_strings=True
    )
    preset = resolve_preset(model_args, data_args)
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    output_dir = "hsvlt-digits" if data_args.dataset == "digits" else f"hsvlt-{data_args.dataset}"
    parser.set_defaults(output_dir=output_dir, **COMMON_TRAINING_DEFAULTS, **RECIPES[preset])
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(argv)
    if model_args.warmup_epochs < 0:
        model_args.warmup_epochs = 2.0 if preset == "hsvlt-s" else 0.5
    return model_args, data_args, training_args


def load_training_data(data_args: DataArguments, seed: int = 0) -> DatasetDict:
    """The `train` and `eval` splits of the requested dataset, in the common multi-label schema."""
    name = data_args.dataset
    if name != "digits" and data_args.data_dir is None and name != "list":
        raise ValueError(f"--dataset {name} needs --data_dir (the dataset root, file or Hub name).")
    if name == "digits":
        splits = hsvlt_data.build_digit_canvases(data_args.digits_train_size, data_args.digits_test_size, seed=seed)
    elif name == "list":
        if not (data_args.label_file and data_args.train_list and data_args.eval_list):
            raise ValueError("--dataset list needs --label_file, --train_list and --eval_list.")
        splits = hsvlt_data.load_list_files(
            data_args.label_file, {"train": data_args.train_list, "test": data_args.eval_list}, image_root=data_args.data_dir
        )
    elif name == "hub":
        splits = hsvlt_data.load_hub(data_args.data_dir, label_column=data_args.label_column)
    elif name == "custom":
        splits = hsvlt_data.load_custom(data_args.data_dir, class_names=data_args.label_file)
    else:
        loaders = {"voc2007": hsvlt_data.load_voc2007, "coco2014": hsvlt_data.load_coco2014, "nuswide": hsvlt_data.load_nuswide}
        splits = loaders[name](data_args.data_dir)
    train_split = data_args.train_split or DEFAULT_SPLITS[name][0]
    eval_split = data_args.eval_split or DEFAULT_SPLITS[name][1]
    for split in (train_split, eval_split):
        if split not in splits:
            raise ValueError(f"Dataset {name!r} has no split {split!r}; it has {sorted(splits)}.")
    return DatasetDict(
        train=_head(splits[train_split], data_args.max_train_samples),
        eval=_head(splits[eval_split], data_args.max_eval_samples),
    )


def _head(dataset, limit: int | None):
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def random_label_embeddings(num_labels: int, width: int, seed: int) -> np.ndarray:
    """Seeded Gaussian label embeddings with unit-variance entries: distinct, label-agnostic label vectors for when
    no text encoder is available (the model learns the label identities through its label projections)."""
    return np.random.default_rng(seed).standard_normal((num_labels, width)).astype(np.float32)


def label_embeddings_for(
    class_names: list[str], model_args: ModelArguments, seed: int, width: int | None = None
) -> np.ndarray:
    """The label embeddings requested by the arguments: a .npy file, a text encoder, or seeded random vectors. When
    `width` is given (a checkpoint's), a `.npy` file must have that many columns and random vectors get it."""
    if model_args.label_embeddings and model_args.text_encoder:
        raise ValueError("Give either --label_embeddings or --text_encoder, not both.")
    if model_args.label_embeddings:
        return load_label_embeddings(model_args.label_embeddings, len(class_names), expected_width=width)
    if model_args.text_encoder:
        return embed_label_names(class_names, encoder=model_args.text_encoder, pooling=model_args.label_pooling)
    return random_label_embeddings(len(class_names), width or model_args.random_label_embedding_size, seed)


def build_model(model_args: ModelArguments, preset: str, class_names: list[str], seed: int) -> HSVLTForMultiLabelClassification:
    """A new HSVLT classifier for `class_names` (optionally on ConvNeXt weights), or a checkpoint adapted to them."""
    if model_args.model_name_or_path:
        model = load_pretrained_weights(model_args.model_name_or_path)
        # a given --label_embeddings file is checked against the checkpoint and used even for the same class names
        if model_args.label_embeddings or list(model.config.id2label.values()) != class_names:
            embeddings = label_embeddings_for(class_names, model_args, seed, width=model.config.label_embedding_size)
            model.set_label_embeddings(torch.from_numpy(embeddings), class_names)
        return model
    embeddings = torch.from_numpy(label_embeddings_for(class_names, model_args, seed))
    overrides = {
        key: value
        for key, value in dict(
            image_size=model_args.image_size,
            num_attention_heads=model_args.num_attention_heads,
            drop_path_rate=model_args.drop_path_rate,
        ).items()
        if value is not None
    }
    if model_args.backbone:
        # depths, widths and layer scale come from the ConvNeXt; the preset only chooses the recipe
        return build_hsvlt_from_convnext(model_args.backbone, class_names, embeddings, **overrides)
    config_values = {**PRESETS[preset], **overrides, "label_embedding_size": embeddings.shape[1]}
    model = HSVLTForMultiLabelClassification(HSVLTConfig(id2label=dict(enumerate(class_names)), **config_values))
    model.set_label_embeddings(embeddings, class_names)
    return model


class WarmupReduceLROnPlateau(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up over `warmup_steps` optimiser steps, then the learning rate is multiplied by `factor` whenever
    the monitored metric (higher is better) has not improved by more than `threshold` for `patience` evaluations.

    `step()` is called by `Trainer` after every optimiser step; `report(metric)` after every evaluation (see
    `PlateauCallback`). The plateau state is part of `state_dict()`, so it resumes with the checkpoint.
    """

    def __init__(self, optimizer, warmup_steps: int, factor: float = 0.1, patience: int = 1, threshold: float = 1e-4):
        self.warmup_steps = warmup_steps
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.scale = 1.0
        self.best = -math.inf
        self.evaluations_without_improvement = 0
        super().__init__(optimizer, self._multiplier)

    def _multiplier(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return warmup * self.scale

    def report(self, metric: float) -> None:
        if metric > self.best + self.threshold:
            self.best = metric
            self.evaluations_without_improvement = 0
            return
        self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            self.scale *= self.factor
            self.evaluations_without_improvement = 0
            for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base_lr * self._multiplier(self.last_epoch)
            self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class PlateauCallback(TrainerCallback):
    """Feeds every evaluation's `metric_for_best_model` to a `WarmupReduceLROnPlateau`."""

    def on_evaluate(self, args, state, control, metrics=None, lr_scheduler=None, **kwargs):
        if isinstance(lr_scheduler, WarmupReduceLROnPlateau) and metrics:
            key = args.metric_for_best_model
            lr_scheduler.report(metrics[key if key.startswith("eval_") else f"eval_{key}"])


class HSVLTTrainer(Trainer):
    """`Trainer` with the authors' batch augmentation applied on the training device, and the warm-up +
    reduce-on-plateau schedule."""

    def __init__(self, *args, train_augmentation=None, warmup_epochs: float = 0.0, plateau_factor=0.1, plateau_patience=1, **kwargs):
        super().__init__(*args, **kwargs)
        # The model's loss is already a mean over the batch's label entries and takes no `num_items_in_batch`: if
        # `Trainer` believed otherwise (the model's `forward` takes `**kwargs`), it would neither divide the loss by
        # the gradient-accumulation steps nor undo its multiplication by the number of processes.
        self.model_accepts_loss_kwargs = False
        self.train_augmentation = train_augmentation
        self.warmup_epochs = warmup_epochs
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.add_callback(PlateauCallback())

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training and self.train_augmentation is not None:
            inputs = {**inputs, "pixel_values": self.train_augmentation(inputs["pixel_values"])}
        return super().compute_loss(model, inputs, *args, **kwargs)

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self._update_steps_per_epoch = values[1]  # the warm-up is counted in epochs of optimiser steps
        return values

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.args.lr_scheduler_type == "constant":
            # With `--max_steps`, `num_train_epochs` is not the length of the run: use the real epoch length.
            steps_per_epoch = getattr(self, "_update_steps_per_epoch", None) or (
                num_training_steps / max(self.args.num_train_epochs, 1e-9)
            )
            self.lr_scheduler = WarmupReduceLROnPlateau(
                optimizer or self.optimizer,
                warmup_steps=round(self.warmup_epochs * steps_per_epoch),
                factor=self.plateau_factor,
                patience=self.plateau_patience,
            )
        return super().create_scheduler(num_training_steps, optimizer)


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
    output_dir = training_args.output_dir
    checkpoints = sorted(
        (int(match.group(1)), entry.path)
        for entry in (os.scandir(output_dir) if os.path.isdir(output_dir) else ())
        if entry.is_dir() and (match := re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", entry.name))
    )
    for _, checkpoint in reversed(checkpoints):
        missing = checkpoint_missing_files(checkpoint, needs_optimizer)
        if not missing:
            return checkpoint
        logger.warning(f"Skipping the incomplete checkpoint {checkpoint}: it lacks {missing} (killed while saving?).")
    if checkpoints:
        raise ValueError(f"--resume_from_checkpoint {value}: no complete checkpoint-* directory in {output_dir}.")
    raise ValueError(f"--resume_from_checkpoint {value}: no checkpoint-* directory in {output_dir}.")


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


def check_distributed_launch(training_args: TrainingArguments) -> None:
    """Refuse a multi-process launch (`WORLD_SIZE` > 1) that `Trainer` would run as independent single-process
    trainings: on a machine without GPUs, `accelerate launch --multi_gpu` or `torchrun` start the processes, but
    without `--use_cpu true` transformers does not set up distributed CPU training, so every process would train on
    the whole dataset alone and write the same output directory."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:
        raise ValueError(
            f"launched as {launched} processes (WORLD_SIZE={launched}) but set up for single-process training, so each "
            f"process would train alone and write the same {training_args.output_dir}. Without GPUs, add "
            "--use_cpu true for distributed CPU training (gloo); with GPUs, check that they are visible."
        )


def decode_images_naming_the_file(dataset: Dataset) -> Dataset:
    """The split with its `image` column decoded by `load_image` as examples are read, so that a corrupt, truncated
    or missing image stops training with an error naming the file (Pillow's errors through `datasets` may not)."""
    if not isinstance(dataset.features.get("image"), ImageFeature):
        return dataset
    return dataset.cast_column("image", ImageFeature(decode=False)).with_transform(_decode_image_column)


def _decode_image_column(batch: dict) -> dict:  # module-level: data-loader workers may have to pickle it
    return {**batch, "image": [load_dataset_image(value) for value in batch["image"]]}


def evaluate_predictions(logits: np.ndarray, label_ids: np.ndarray, threshold: float = 0.5, top_k: int = 3) -> dict:
    """All multi-label metrics (with per-class AP) of logits against 1/0/-1 labels."""
    return multilabel_metrics(sigmoid(logits), label_ids, threshold=threshold, top_k=top_k)


def train(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    """Train, evaluate the best model on the evaluation split, print the metric table and save a complete
    remote-code checkpoint (model, image processor, label names, metrics, model card) in `output_dir`."""
    check_distributed_launch(training_args)
    preset = resolve_preset(model_args, data_args)
    resume_checkpoint = resolve_resume_checkpoint(training_args)
    splits = load_training_data(data_args, seed=training_args.seed)
    class_names = hsvlt_data.get_class_names(splits["train"])
    if hsvlt_data.get_class_names(splits["eval"]) != class_names:
        raise ValueError("The training and evaluation splits have different class names or class orders.")
    set_seed(training_args.seed)  # `Trainer` seeds when it is created, after the model's random initialisation
    model = build_model(model_args, preset, class_names, seed=training_args.seed)
    image_size = model.config.image_size
    image_processor = HSVLTImageProcessor(size={"height": image_size, "width": image_size})
    augment = data_args.augment if data_args.augment is not None else data_args.dataset != "digits"
    augmentation = hsvlt_data.TrainAugmentation(image_size) if augment else None
    # Early stopping watches the evaluations: without any (`--eval_strategy no`) there is nothing to stop on, and
    # `EarlyStoppingCallback` would fail an assertion when training starts.
    evaluates = training_args.eval_strategy != IntervalStrategy.NO
    early_stopping = model_args.early_stopping_patience > 0 and evaluates
    callbacks = [EarlyStoppingCallback(model_args.early_stopping_patience)] if early_stopping else []
    if training_args.activation_checkpointing and training_args.ddp_find_unused_parameters is None:
        # The label gate of the last block gets no gradient (its output is not used by the logits), so DDP must look
        # for unused parameters; `Trainer` turns that off with activation checkpointing, and DDP then fails.
        training_args.ddp_find_unused_parameters = True
    trainer = HSVLTTrainer(
        model=model,
        args=training_args,
        train_dataset=decode_images_naming_the_file(splits["train"]),
        eval_dataset=decode_images_naming_the_file(splits["eval"]),
        data_collator=hsvlt_data.MultiLabelCollator(image_processor, len(class_names)),
        processing_class=image_processor,
        compute_metrics=compute_metrics_fn(),
        callbacks=callbacks,
        train_augmentation=augmentation,
        warmup_epochs=model_args.warmup_epochs,
        plateau_factor=model_args.plateau_factor,
        plateau_patience=model_args.plateau_patience,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint)
    prediction = trainer.predict(trainer.eval_dataset, metric_key_prefix="eval")
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    results = evaluate_predictions(logits, prediction.label_ids)
    results["chance_mAP"] = hsvlt_data.chance_level_map(splits["eval"])
    if trainer.is_world_process_zero():
        trainer.save_model(training_args.output_dir)
        save_results(training_args.output_dir, results, class_names)
        if data_args.dataset == "digits":
            save_examples(training_args.output_dir, splits["eval"])
        overall, per_class_ap = per_class_by_name(results, class_names)
        save_model_card(
            training_args.output_dir,
            model=trainer.model,
            base_model=model_args.backbone or model_args.model_name_or_path,
            dataset_name=data_args.dataset if data_args.dataset != "hub" else data_args.data_dir,
            metrics=overall,
            per_class_ap=per_class_ap,
            training_args=training_args,
            repo_id=training_args.hub_model_id,
        )
        if training_args.push_to_hub:
            repo_id = training_args.hub_model_id or Path(training_args.output_dir).name
            push_checkpoint_to_hub(training_args.output_dir, repo_id, token=training_args.hub_token)
        print(format_metric_table(results, class_names))
        print(f"\nchance-level mAP of this split: {results['chance_mAP']:.2f}")
        print(f"checkpoint saved to {training_args.output_dir}")
    return results


def save_examples(output_dir: str, dataset, count: int = 6) -> list[Path]:
    """Save the first `count` evaluation images as PNGs in `output_dir/examples/`, named after their true labels, so
    that `hsvlt-predict` has real held-out images to run on (`examples/03_five-seven.png`)."""
    directory = Path(output_dir, "examples")
    directory.mkdir(parents=True, exist_ok=True)
    names = hsvlt_data.get_class_names(dataset)
    paths = []
    for index, example in enumerate(dataset.select(range(min(count, len(dataset))))):
        path = directory / f"{index:02d}_{'-'.join(names[label] for label in example['labels']) or 'none'}.png"
        example["image"].convert("RGB").save(path)
        paths.append(path)
    return paths


def save_results(output_dir: str, results: dict, class_names: list[str]) -> None:
    """Write `eval_results.json`: the overall metrics and the per-class AP by class name."""
    payload, per_class_ap = per_class_by_name(results, class_names)
    payload["per_class_AP"] = per_class_ap
    Path(output_dir, "eval_results.json").write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
