"""`hsvlt-train`'s arguments: which architecture, preset and label side (`ModelArguments`), which data
(`transformers_hsvlt.data.DataArguments`), where the output goes (`OutputArguments`), and `TrainingArguments`, whose
defaults come from the preset's recipe (flags given on the command line win)."""

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments
from transformers.integrations import get_available_reporting_integrations
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from ..cli.common import DefaultOnceHelpFormatter, RuntimeArguments
from ..data import DataArguments
from ..multilabel_losses import MULTILABEL_LOSSES
from ..registry import Architecture, get_architecture


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
    seed=1,  # HSVLT's authors'; also the seed of the digits canvases, which `hsvlt-eval --seed` defaults to
    # deterministic algorithms (`torch.use_deterministic_algorithms`) where they exist for every op: on CPU; CUDA lacks
    # some (e.g. the backward of adaptive pooling), and a GPU run would fail on them
    full_determinism=not torch.cuda.is_available(),
)


@dataclass
class ModelArguments:
    """Which model to train, from what, and with which schedule (the preset's unless given)."""

    model: str = field(default="hsvlt", metadata={"help": "Architecture: hsvlt, msrn, ... (see the registry)."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A family checkpoint (directory or Hub id) to fine-tune instead of building one."},
    )
    preset: str = field(
        default="auto",
        metadata={"help": "Model size and recipe of the architecture (e.g. hsvlt-s, tiny); auto: tiny for digits."},
    )
    backbone: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained weights of the architecture's backbone (Hub id, directory or file). Default: the "
            "preset's (the paper presets start from the paper's pretrained weights, e.g. "
            "facebook/convnext-small-384-22k-1k for HSVLT; tiny presets from scratch); 'none' trains from scratch."
        },
    )
    label_embeddings: str | None = field(
        default=None, metadata={"help": "A (num_labels, width) .npy of label-name embeddings (see hsvlt-embed-labels)."}
    )
    text_encoder: str | None = field(
        default=None, metadata={"help": "Embed the class names with this text encoder (Hub id or directory)."}
    )
    label_pooling: str = field(
        default="authors", metadata={"help": "Pooling of --text_encoder outputs (see hsvlt-embed-labels)."}
    )
    random_label_embedding_size: int = field(
        default=64,
        metadata={
            "help": "Width of seeded random label embeddings, used when no --label_embeddings or --text_encoder is given."
        },
    )
    ignored_labels_count_as: str = field(
        default="present",
        metadata={
            "help": "How an image's ignored labels (e.g. VOC 'difficult') count in the label co-occurrence statistics "
            "(MSRN): present (the authors') or absent.",
            "choices": ["present", "absent"],
        },
    )
    image_size: int | None = field(default=None, metadata={"help": "Training resolution (default: the preset's)."})
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Config fields to override, 'key=value,key=value' (e.g. 'num_attention_heads=2,drop_path_rate=0.1')."
        },
    )
    loss: str | None = field(
        default=None,
        metadata={
            "help": "Classification loss: bce or asl (default: the architecture's).",
            "choices": list(MULTILABEL_LOSSES),
        },
    )
    # The recipe (see `training.recipe`): every field defaults to the preset's.
    lr_schedule: str | None = field(
        default=None,
        metadata={"help": "warmup_plateau, multistep, or any transformers lr_scheduler_type (default: the preset's)."},
    )
    warmup_epochs: float | None = field(
        default=None, metadata={"help": "Warm-up of warmup_plateau, in epochs (default: the preset's)."}
    )
    plateau_factor: float | None = field(
        default=None,
        metadata={"help": "warmup_plateau: LR factor when validation mAP stops improving (default: the preset's)."},
    )
    plateau_patience: int | None = field(
        default=None,
        metadata={
            "help": "warmup_plateau: evaluations without improvement before the LR is reduced (default: the preset's)."
        },
    )
    lr_milestones: str | None = field(
        default=None,
        metadata={
            "help": "multistep: comma-separated epochs after which the LR is multiplied by --lr_gamma, e.g. 30,40 (default: the preset's)."
        },
    )
    lr_gamma: float | None = field(
        default=None, metadata={"help": "multistep: the LR factor at each milestone (default: the preset's)."}
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Evaluations without improvement before stopping (0: never; default: the preset's)."},
    )
    lr_multipliers: str | None = field(
        default=None,
        metadata={
            "help": "LR multipliers of parameter groups, 'prefix=multiplier,...' (e.g. 'msrn.backbone.=0.1'); 'none' "
            "for none. Default: the architecture's when training from pretrained weights, none from scratch."
        },
    )


@dataclass
class OutputArguments(RuntimeArguments):
    """How the run uses this machine (`--threads`, as in `hsvlt-predict` and `hsvlt-eval`), what happens to the
    output directory and the terminal."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a non-empty --output_dir that holds another run (the toolkit's files in it are replaced, "
            "other files stay)."
        },
    )
    quiet: bool = field(default=False, metadata={"help": "No progress bars; print only the results."})
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "The dataset named in the model card (default: the Hub dataset of --dataset hub, the benchmark "
            "of voc2007/coco2014/nuswide/digits; none for local --dataset list/custom data)."
        },
    )


def resolve_preset(model_args: ModelArguments, data_args: DataArguments) -> tuple[Architecture, str]:
    architecture = get_architecture(model_args.model)
    return architecture, architecture.preset_for(model_args.preset, data_args.dataset)


def check_label_arguments(architecture: Architecture, model_args: ModelArguments) -> None:
    """Refuse label-embedding arguments for an architecture that takes no label embeddings (`label_inputs`)."""
    for flag in ("label_embeddings", "text_encoder"):
        architecture.refuse_unless(
            getattr(model_args, flag) is None or "embeddings" in architecture.label_inputs,
            f"--{flag}",
            f"takes no label embeddings (its label inputs: {list(architecture.label_inputs) or 'none'}).",
        )


def parse_config_overrides(text: str | None) -> dict:
    """`'a=1,b=0.5,c=true,d=[1,2]'` -> `{'a': 1, 'b': 0.5, 'c': True, 'd': [1, 2]}` (values read as JSON if they can
    be, strings otherwise)."""
    overrides = {}
    # split at the commas that start a new `key=` (a JSON list value holds commas of its own)
    items = re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", text or "")
    for item in filter(None, (part.strip() for part in items)):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"--config_overrides: expected key=value, got {item!r}.")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def parse_train_arguments(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, OutputArguments, TrainingArguments]:
    """Parse `hsvlt-train` arguments; the preset's recipe gives the `TrainingArguments` defaults."""
    argv = sys.argv[1:] if argv is None else list(argv)
    without_help = [argument for argument in argv if argument not in ("-h", "--help")]
    first_pass = HfArgumentParser((ModelArguments, DataArguments, OutputArguments))
    model_args, data_args, _, _ = first_pass.parse_args_into_dataclasses(without_help, return_remaining_strings=True)
    architecture, preset_name = resolve_preset(model_args, data_args)
    check_label_arguments(architecture, model_args)
    preset = architecture.presets[preset_name]
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, OutputArguments, TrainingArguments),
        prog="hsvlt-train",
        formatter_class=DefaultOnceHelpFormatter,
    )
    output_dir = f"{architecture.name}-{data_args.dataset}"
    parser.set_defaults(output_dir=output_dir, **{**COMMON_TRAINING_DEFAULTS, **preset.recipe})
    model_args, data_args, output_args, training_args = parser.parse_args_into_dataclasses(argv)
    model_args.model, model_args.preset = architecture.name, preset_name
    if model_args.backbone is None and not model_args.model_name_or_path:
        model_args.backbone = preset.backbone
    elif model_args.backbone is not None and model_args.backbone.lower() == "none":
        model_args.backbone = None
    if data_args.dataset == "list" and not data_args.train_list:
        raise ValueError("--dataset list needs --train_list to train (the training split's list file).")
    check_training_arguments(training_args)
    if data_args.streaming:
        use_steps_for_a_stream(training_args)
    image_size = model_args.image_size or preset.config.get("image_size") or architecture.config_class().image_size
    check_memory_for_image_size(image_size, training_args.per_device_train_batch_size)
    return model_args, data_args, output_args, training_args


ACTIVATION_BYTES_PER_INPUT_VALUE = 400
"""A generous bound on the training activations per float of the input batch, measured on HSVLT-S and MSRN at 448
(the largest stage-1 feature maps are kept for backward): used to refuse resolutions that cannot fit in memory."""


def check_memory_for_image_size(image_size: int, batch_size: int) -> None:
    """Refuse, before anything is built, an `--image_size` whose training activations cannot fit in this machine's
    memory (a rough, generous estimate; GPU memory is checked by PyTorch itself)."""
    if image_size < 1:
        raise ValueError(f"--image_size must be positive, got {image_size}.")
    estimate = ACTIVATION_BYTES_PER_INPUT_VALUE * batch_size * 3 * image_size**2
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if estimate > total:
        raise ValueError(
            f"--image_size {image_size} with batch {batch_size}: training would need about {estimate / 2**30:.0f} GiB "
            f"of activations, more than this machine's {total / 2**30:.0f} GiB; lower --image_size or "
            "--per_device_train_batch_size."
        )


def use_steps_for_a_stream(training_args: TrainingArguments) -> None:
    """A stream has no epochs: it needs `--max_steps`, and evaluates and saves every `--eval_steps` (default: at
    the end) instead of every epoch."""
    if training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a streamed dataset has no length to count epochs in.")
    if training_args.eval_strategy == "epoch":
        steps = training_args.eval_steps or training_args.max_steps
        training_args.eval_strategy = training_args.logging_strategy = IntervalStrategy.STEPS
        training_args.save_strategy = SaveStrategy.STEPS
        training_args.eval_steps = training_args.save_steps = training_args.logging_steps = steps


def check_training_arguments(training_args: TrainingArguments) -> None:
    """Refuse runs that cannot train: no epochs or steps, a non-positive batch size, an experiment tracker
    (`--report_to`) that is not installed."""
    epochs, steps = training_args.num_train_epochs, training_args.max_steps
    if steps <= 0 and not (epochs > 0 and math.isfinite(epochs)):
        raise ValueError(f"--num_train_epochs must be positive (or give --max_steps), got {epochs}.")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(training_args, name)}.")
    missing = sorted(set(training_args.report_to) - set(get_available_reporting_integrations()))
    if missing:
        raise ValueError(
            f"--report_to {','.join(missing)}: not installed (pip install {' '.join(missing)}), or use --report_to none."
        )
