"""
The model card of a family checkpoint (`README.md`): metadata for the Hub (library, pipeline tag, tags, license, base
model, datasets, evaluation results) and the sections labels, model, training, evaluation, thresholds, figures, usage
and citation. The paper, summary and citation come from the architecture's registry entry (`registry.Paper`);
`hsvlt-calibrate` replaces the thresholds section of an existing card (`with_thresholds_section`).
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import PreTrainedConfig, PreTrainedModel

from .evaluation.thresholds import describe_calibration
from .registry import get_architecture


CARD_TAGS = ["image-classification", "multi-label-classification", "transformers-hsvlt"]

TRAINING_ARGUMENTS_IN_CARD = (
    "learning_rate",
    "weight_decay",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "optim",
    "seed",
    "bf16",
    "fp16",
)
"""The `TrainingArguments` fields listed in the card (all entries of a plain mapping are listed)."""

_TRAINER_BOOKKEEPING_SUFFIXES = ("runtime", "samples_per_second", "steps_per_second", "epoch")


def create_model_card(
    model: PreTrainedModel | PreTrainedConfig,
    *,
    base_model: str | None = None,
    dataset_name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    per_class_ap: Mapping[str, float] | Sequence[float] | None = None,
    training_args=None,
    repo_id: str | None = None,
    provenance: str | None = None,
    figures: Sequence[str] = (),
) -> ModelCard:
    r"""
    The model card of a family checkpoint: metadata (library, pipeline tag, tags, license, base model, datasets and
    evaluation results), labels, architecture, training data and procedure, metrics, usage and citation.

    Args:
        model (`PreTrainedModel` or `PreTrainedConfig` of a registered architecture):
            The model (its configuration is enough; the parameter count is added when a model is given).
        base_model (`str`, *optional*):
            The backbone it was initialised from, e.g. `"facebook/convnext-small-384-22k-1k"` (a Hub id goes into the
            metadata as `base_model`).
        dataset_name (`str`, *optional*):
            The training dataset, e.g. `"voc2007"` or `"coco2014"`.
        metrics (`Mapping[str, float]`, *optional*):
            Evaluation results, e.g. the dict returned by `Trainer.evaluate()`: the `eval_` / `test_` prefixes are
            dropped and Trainer's bookkeeping entries (runtime, throughput, epoch) are skipped. With `dataset_name`,
            they also go into the metadata (`model-index`), where the Hub shows them.
        per_class_ap (`Mapping[str, float]` or `Sequence[float]`, *optional*):
            Average precision of every label, by name or in label order.
        training_args (`TrainingArguments` or `Mapping`, *optional*):
            Training hyper-parameters: the fields of `TRAINING_ARGUMENTS_IN_CARD` of a `TrainingArguments`, or every
            entry of a mapping.
        repo_id (`str`, *optional*):
            The Hub repository, used as the title and in the usage snippet.
        provenance (`str`, *optional*):
            A Markdown sentence saying where the weights come from (e.g. a conversion from the authors' checkpoint).
        figures (`Sequence[str]`, *optional*):
            Image files of the checkpoint folder (relative paths, e.g. `plots/per_class_ap.png`) to embed.

    Returns:
        `huggingface_hub.ModelCard`
    """
    config = model if isinstance(model, PreTrainedConfig) else model.config
    architecture = get_architecture(config.model_type)
    title = repo_id.split("/")[-1] if repo_id else f"{architecture.paper.title} multi-label image classifier"
    metric_values = _card_metrics(metrics)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=[*CARD_TAGS, architecture.name],
        base_model=base_model if base_model and _is_hub_repo_id(base_model) else None,
        datasets=[dataset_name] if dataset_name else None,
        model_name=title,
        eval_results=_eval_results(metric_values, dataset_name) if dataset_name else None,
    )
    sections = [
        f"# {title}",
        _introduction(architecture.paper, base_model, dataset_name, provenance),
        _labels_section(config),
        _architecture_section(model, architecture),
        _training_section(dataset_name, training_args),
        _evaluation_section(metric_values, per_class_ap, config),
        thresholds_section(config),
        _figures_section(figures),
        _usage_section(repo_id),
        _citation_and_license(architecture.paper.bibtex),
    ]
    body = "\n\n".join(section for section in sections if section)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")


def save_model_card(output_dir: str | os.PathLike, model: PreTrainedModel | None = None, **card_kwargs) -> Path:
    """
    Write the model card of the checkpoint in `output_dir` to `output_dir/README.md` (replacing e.g. the one
    `Trainer` wrote) and return its path.

    Args:
        output_dir (`str` or `os.PathLike`):
            The checkpoint directory.
        model (`PreTrainedModel`, *optional*):
            The model; by default its configuration is read from `output_dir/config.json`.
        card_kwargs:
            The keyword arguments of [`create_model_card`] (`base_model`, `dataset_name`, `metrics`, `per_class_ap`,
            `training_args`, `repo_id`, `provenance`).
    """
    output_dir = Path(output_dir)
    if model is None:
        config_dict, _ = PreTrainedConfig.get_config_dict(str(output_dir))
        model = get_architecture(config_dict.get("model_type")).config_class.from_pretrained(output_dir)
    card = create_model_card(model, **card_kwargs)
    path = output_dir / "README.md"
    card.save(path)
    return path


def _is_hub_repo_id(name: str) -> bool:
    """Whether `name` can be a Hub repository id (and is not a local path)."""
    if os.path.exists(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _card_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    """The metrics to show: `eval_`/`test_` prefixes dropped, Trainer's bookkeeping entries skipped."""
    shown = {}
    for name, value in (metrics or {}).items():
        name = name.removeprefix("eval_").removeprefix("test_")
        if not name.endswith(_TRAINER_BOOKKEEPING_SUFFIXES):
            shown[name] = value
    return shown


def _eval_results(metrics: dict[str, float], dataset_name: str) -> list[EvalResult] | None:
    """The metrics as Hub `model-index` entries."""
    results = [
        EvalResult(
            task_type="image-classification",
            task_name="Multi-label image classification",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            metric_type=name.lower(),
            metric_name=name,
            metric_value=value,
        )
        for name, value in metrics.items()
    ]
    return results or None


def _format_value(value) -> str:
    """A metric or hyper-parameter for a Markdown table (floats with 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(header: tuple[str, str], rows) -> str:
    """A two-column Markdown table."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {name} | {_format_value(value)} |" for name, value in rows]
    return "\n".join(lines)


def _introduction(paper, base_model: str | None, dataset_name: str | None, provenance: str | None) -> str:
    text = f"A multi-label image classifier with the architecture of **{paper.title}** ([paper]({paper.url})): {paper.summary}"
    if paper.reconstruction:
        text += (
            "\n\n**Reconstruction.** No code of the authors is public and the full paper was not available: this "
            "model is a reconstruction from the abstract and figures, not checked against the paper."
        )
    details = []
    if dataset_name:
        details.append(f"Trained on **{dataset_name}**.")
    if base_model:
        link = f"[{base_model}](https://huggingface.co/{base_model})" if _is_hub_repo_id(base_model) else base_model
        details.append(f"The pretrained parts were initialised from {link}.")
    if provenance:
        details.append(provenance)
    return "\n\n".join([text, " ".join(details)]) if details else text


def _labels_section(config: PreTrainedConfig) -> str:
    names = [config.id2label[index] for index in range(config.num_labels)]
    return f"## Labels\n\n{len(names)} labels, in output order: " + ", ".join(f"`{name}`" for name in names) + "."


def _architecture_section(model, architecture) -> str:
    config = model if isinstance(model, PreTrainedConfig) else model.config
    rows = list(architecture.describe(config)) if architecture.describe else []
    if isinstance(model, PreTrainedModel):
        rows.append(("Parameters", f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"))
    return "## Model\n\n" + _table(("Property", "Value"), rows)


def _training_section(dataset_name: str | None, training_args) -> str | None:
    if training_args is None:
        return None
    if hasattr(training_args, "to_dict"):
        values = training_args.to_dict()
        rows = [(name, values[name]) for name in TRAINING_ARGUMENTS_IN_CARD if name in values]
    else:
        rows = list(dict(training_args).items())
    data = f"Training data: {dataset_name}.\n\n" if dataset_name else ""
    return "## Training\n\n" + data + _table(("Hyper-parameter", "Value"), rows)


def _evaluation_section(metrics: dict[str, float], per_class_ap, config: PreTrainedConfig) -> str | None:
    parts = []
    if metrics:
        parts.append(_table(("Metric", "Value"), metrics.items()))
    if per_class_ap is not None:
        if not isinstance(per_class_ap, Mapping):
            per_class_ap = {config.id2label[index]: value for index, value in enumerate(per_class_ap)}
        parts.append("Average precision per label:\n\n" + _table(("Label", "AP"), per_class_ap.items()))
    return "## Evaluation\n\n" + "\n\n".join(parts) if parts else None


def thresholds_section(config: PreTrainedConfig) -> str | None:
    """The card's "Thresholds" section: the calibrated threshold of every label and the split it was chosen on
    (`config.label_thresholds`, written by `hsvlt-calibrate`); `None` without calibrated thresholds."""
    thresholds = getattr(config, "label_thresholds", None)
    if not thresholds:
        return None
    text = (
        f"Decision thresholds, {describe_calibration(config.label_thresholds_source)}. The pipeline, "
        "`post_process_multi_label`, `hsvlt-predict` and the demo predict a label when its score reaches its "
        "threshold."
    )
    fallbacks = (config.label_thresholds_source or {}).get("labels_with_the_global_threshold") or {}
    if fallbacks:
        listed = "; ".join(f"`{name}` ({reason})" for name, reason in fallbacks.items())
        text += f" These labels have the global threshold: {listed}."
    rows = [(config.id2label[index], round(float(value), 4)) for index, value in enumerate(thresholds)]
    return f"{THRESHOLDS_HEADING}\n\n{text}\n\n" + _table(("Label", "Threshold"), rows)


THRESHOLDS_HEADING = "## Thresholds"


def with_thresholds_section(card_text: str, config: PreTrainedConfig) -> str:
    """`card_text` (a model card) with its "Thresholds" section replaced by the one of `config` (inserted before
    "## Usage", or at the end), the rest unchanged."""
    before, found, after = card_text.partition(f"\n{THRESHOLDS_HEADING}\n")
    if found:
        rest = after.split("\n## ", 1)
        card_text = before.rstrip("\n") + ("\n\n## " + rest[1] if len(rest) > 1 else "\n")
    section = thresholds_section(config)
    if section is None:
        return card_text
    before, found, after = card_text.partition("\n## Usage\n")
    if found:
        return f"{before.rstrip()}\n\n{section}\n\n## Usage\n{after}"
    return f"{card_text.rstrip()}\n\n{section}\n"


def _figures_section(figures: Sequence[str]) -> str | None:
    if not figures:
        return None
    return "## Figures\n\n" + "\n\n".join(f"![{Path(figure).stem.replace('_', ' ')}]({figure})" for figure in figures)


def _usage_section(repo_id: str | None) -> str:
    repo = repo_id or "path/to/this/checkpoint"
    return f"""## Usage

The model code is in this repository (remote code): load it with `trust_remote_code=True`.

```python
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

processor = AutoImageProcessor.from_pretrained("{repo}", trust_remote_code=True)
model = AutoModelForImageClassification.from_pretrained("{repo}", trust_remote_code=True)

inputs = processor(images=Image.open("image.jpg"), return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
print(processor.post_process_multi_label(logits, config=model.config))  # calibrated thresholds, else 0.5

# or with the pipeline: every label at or above its threshold, each with its own sigmoid score (top_k=5: the 5 most
# likely labels; threshold=0.3 or {{"label": 0.3}}: other thresholds)
classifier = pipeline("image-classification", model="{repo}", trust_remote_code=True)
print(classifier("image.jpg"))
```"""


def _citation_and_license(bibtex: str) -> str:
    return f"""## Citation

```bibtex
{bibtex}
```

## License

The model code in this repository is released under the Apache-2.0 license. The weights also carry the terms of the
data and of the backbone they were trained from."""


__all__ = [
    "create_model_card",
    "save_model_card",
    "thresholds_section",
    "with_thresholds_section",
]
