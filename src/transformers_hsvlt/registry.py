"""The architecture registry: what the toolkit (data, training, evaluation, weights, cli) needs to know of each model.

Every command works through an [`Architecture`]: `hsvlt-train --model NAME` builds a model with its `build` function
from a preset of its `presets` and trains it with that preset's recipe; `hsvlt-eval`, `hsvlt-predict` and
`hsvlt-embed-labels` find the architecture of a checkpoint from its `config.json` `model_type`; `hsvlt-convert
--architecture NAME` calls its `convert` function. Adding an architecture means its own folder (remote-code config
and model, its entry) plus one line in `_BUILTIN_ENTRIES`; tests may `register` a toy architecture of their own.
"""

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedConfig, PreTrainedModel


LABEL_INPUTS = ("embeddings", "cooccurrence", "names")
"""The label-side inputs an architecture can ask for: `embeddings`, one vector per class name (a `.npy`, a text
encoder or seeded random vectors); `cooccurrence`, label counts of the training split (see `LabelCooccurrence`);
`names`, the class names alone (models that read them through their own text encoder)."""

RELABELLING = ("label_embeddings", "class_names")
"""How a trained model can take another label set (`Architecture.relabelling`): `label_embeddings`, through
`model.set_label_embeddings(embeddings, names)` (new label-name vectors; the head rows of names it knows are kept, the
others start untrained); `class_names`, through `model.set_class_names(names, tokenizer)` (any names, read by the
model's own text tower: open vocabulary)."""

GRADIENT_HEATMAP_METHODS = ("gradcam", "gradcam++", "gradxact", "gradxinput")
"""The heatmap methods computed from gradients over `Architecture.feature_maps`; `attention` reads
`Architecture.attention_maps`."""


@dataclass(frozen=True)
class Preset:
    """A model size and its training recipe (the fields after `recipe` are those of `training.Recipe`, each
    overridden by the `hsvlt-train` flag of the same name).

    Attributes:
        config: Keyword arguments of the architecture's config class (e.g. depths and widths).
        recipe: `TrainingArguments` defaults for this preset (flags given on the command line win).
        lr_schedule: `warmup_plateau` (linear warm-up, then the learning rate times `plateau_factor` when the
            validation mAP stops improving) or any `transformers` `lr_scheduler_type` (e.g. `linear`, `cosine`,
            `constant`, `constant_with_warmup`, `step` via `--lr_scheduler_type`).
        warmup_epochs: Warm-up length of `warmup_plateau`, in epochs.
        lr_milestones: For `lr_schedule="multistep"`: epochs after which the learning rate is multiplied by
            `lr_gamma` (e.g. `(30,)` for MSRN).
        lr_gamma: The multiplier of `multistep`.
        plateau_factor, plateau_patience: `warmup_plateau`'s learning-rate factor when the validation mAP stops
            improving, and the evaluations it waits.
        early_stopping_patience: Evaluations without improvement before training stops (0: never).
        backbone: The pretrained weights the preset starts from when `--backbone` is not given (a Hub id, e.g. the
            paper's ImageNet or CLIP checkpoint; `None`: random initialisation). `--backbone none` trains from scratch.
    """

    config: Mapping = field(default_factory=dict)
    recipe: Mapping = field(default_factory=dict)
    lr_schedule: str = "warmup_plateau"
    warmup_epochs: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    early_stopping_patience: int = 0
    backbone: str | None = None


@dataclass(frozen=True)
class Paper:
    """What the model card and README say of the method."""

    title: str
    url: str
    bibtex: str
    summary: str
    reconstruction: bool = False
    """True when no code of the authors exists and the model is a reconstruction from the paper's public parts."""


@dataclass
class LabelCooccurrence:
    """Label statistics of a training split: `counts[i]` images hold label i, `pair_counts[i, j]` hold i and j
    (diagonal 0). The authors of ML-GCN and MSRN call them `nums` and `adj`."""

    counts: np.ndarray
    pair_counts: np.ndarray


@dataclass
class LabelSide:
    """The label-side inputs given to `Architecture.build`: the class names, and what `label_inputs` asked for."""

    names: list[str]
    embeddings: torch.Tensor | None = None
    cooccurrence: LabelCooccurrence | None = None


@dataclass(frozen=True)
class Architecture:
    """One member of the family, as the toolkit sees it.

    Attributes:
        name: The `--model` / `--architecture` value, and the config's `model_type`.
        config_class, base_model_class, model_class: The remote-code classes (`AutoConfig`, `AutoModel`,
            `AutoModelForImageClassification`).
        image_processor_defaults: Keyword arguments of `MultiLabelImageProcessor` for this architecture (resize mode,
            normalisation); `size` is taken from the config's `image_size`.
        presets: Named [`Preset`]s; `default_preset` is used for real datasets and `small_preset` for the embedded
            digits default.
        label_inputs: Which of `LABEL_INPUTS` the `build` function needs.
        build: `build(config_values, label_side, backbone) -> model`: a new classifier for the label side, its
            pretrained parts loaded from `backbone` (a Hub id, directory or file; `None` for random initialisation).
        augmentation: `augmentation(image_size, mean=..., std=...) -> nn.Module`, the recipe's batch augmentation on
            the training device (`mean`/`std`: the processor's normalisation, `None` when it does not normalise);
            `None` for no augmentation.
        lr_multipliers: Parameter-name prefix -> learning-rate multiplier (e.g. `{"msrn.backbone.": 0.1}`), for the
            optimizer's parameter groups (the longest matching prefix wins). They apply to pretrained parts: only
            when training starts from a backbone or a checkpoint, not from scratch. The optimizer itself is a recipe entry
            (`optim="sgd", optim_args="momentum=0.9"` for MSRN's authors' SGD; AdamW by default).
        relabelling: Which of `RELABELLING` a trained model supports (`None`: its label set is fixed, as MSRN's, whose
            label graph and head are sized by its labels): decides whether `hsvlt-train --model_name_or_path` can
            fine-tune it on other labels, `hsvlt-embed-labels --model` relabel it, and `hsvlt-predict --labels`,
            `hsvlt-eval` and the demo score names it was not trained on (`class_names` only).
        convert: `convert(checkpoint, output_dir, **options) -> model`, the authors' checkpoint converter, if any
            (`None`: `hsvlt-convert --architecture NAME` is refused).
        onnx_export: Whether `export.export_onnx` can export the classifier (`pixel_values` in, `logits` out).
        attention_maps: `attention_maps(outputs, config, stage) -> (batch, num_labels, height, width)`, the
            architecture's own per-label attention (for heatmaps), or `None`.
        feature_maps: `feature_maps(outputs, config) -> tuple of (batch, channels, height, width)`, one visual
            feature map per stage from the classifier's outputs with `output_hidden_states=True` (for Grad-CAM).
        heatmap_methods: The heatmap methods it supports (see `visualization.gradcam`); `None` (default): every method
            its maps allow, `attention` with `attention_maps` and the gradient methods with `feature_maps`. Declare
            fewer when the logits' gradients cannot reach a feature map (e.g. one reshaped from the hidden states
            after the forward, as PatchCT's and PVLR's patch-token maps: only `gradxinput` runs over them).
        heatmap_stages: Number of stages `attention_maps` and `feature_maps` give.
        describe: `describe(config) -> [(property, value)]`, the rows of the model card's architecture table.
        paper: Card and README facts.
    """

    name: str
    config_class: type[PreTrainedConfig]
    base_model_class: type[PreTrainedModel]
    model_class: type[PreTrainedModel]
    presets: Mapping[str, Preset]
    build: Callable[..., PreTrainedModel]
    paper: Paper
    image_processor_defaults: Mapping = field(default_factory=dict)
    default_preset: str = "base"
    small_preset: str = "tiny"
    label_inputs: tuple[str, ...] = ("embeddings",)
    augmentation: Callable[..., torch.nn.Module] | None = None
    lr_multipliers: Mapping[str, float] = field(default_factory=dict)
    relabelling: str | None = None
    convert: Callable[..., PreTrainedModel] | None = None
    onnx_export: bool = False
    attention_maps: Callable[..., torch.Tensor] | None = None
    feature_maps: Callable[..., tuple[torch.Tensor, ...]] | None = None
    heatmap_methods: tuple[str, ...] | None = None
    heatmap_stages: Callable[[PreTrainedConfig], int] = lambda config: 1
    describe: Callable[[PreTrainedConfig], list[tuple[str, object]]] | None = None

    def __post_init__(self):
        unknown = set(self.label_inputs) - set(LABEL_INPUTS)
        if unknown:
            raise ValueError(f"Architecture {self.name!r}: unknown label_inputs {sorted(unknown)}; use {LABEL_INPUTS}.")
        possible = self._heatmap_methods_of_the_maps()
        if self.heatmap_methods is None:
            object.__setattr__(self, "heatmap_methods", possible)
        elif set(self.heatmap_methods) - set(possible):
            raise ValueError(
                f"Architecture {self.name!r}: heatmap_methods {sorted(set(self.heatmap_methods) - set(possible))} "
                f"need maps it does not give; its maps allow {list(possible)}."
            )
        if self.relabelling not in (None, *RELABELLING):
            raise ValueError(
                f"Architecture {self.name!r}: unknown relabelling {self.relabelling!r}; use one of {RELABELLING} or None."
            )
        for preset in (self.default_preset, self.small_preset):
            if preset not in self.presets:
                raise ValueError(f"Architecture {self.name!r}: preset {preset!r} is not among {sorted(self.presets)}.")

    @property
    def open_vocabulary(self) -> bool:
        """Whether a trained model scores any class names (its text tower reads them): `relabelling="class_names"`."""
        return self.relabelling == "class_names"

    def _heatmap_methods_of_the_maps(self) -> tuple[str, ...]:
        """`attention` with `attention_maps`, the gradient methods with `feature_maps`."""
        return ("attention",) * (self.attention_maps is not None) + GRADIENT_HEATMAP_METHODS * (
            self.feature_maps is not None
        )

    def refuse_unless(self, supported: bool, request: str, reason: str) -> None:
        """Raise the one-line `ValueError` of a command refusing `request` (e.g. `--labels`) when this architecture
        does not declare the capability: `"{request}: {name} {reason}"`."""
        if not supported:
            raise ValueError(f"{request}: {self.name} {reason}")

    def preset_for(self, preset: str | None, dataset: str) -> str:
        """The preset name asked for, or the default one for `dataset` (`small_preset` for the digits default)."""
        if preset in (None, "auto"):
            return self.small_preset if dataset == "digits" else self.default_preset
        if preset not in self.presets:
            raise ValueError(f"--preset {preset}: {self.name} has the presets {sorted(self.presets)}.")
        return preset


_BUILTIN_ENTRIES = {
    "hsvlt": "transformers_hsvlt.hsvlt.architecture:ARCHITECTURE",
    "msrn": "transformers_hsvlt.msrn.architecture:ARCHITECTURE",
    "patchct": "transformers_hsvlt.patchct.architecture:ARCHITECTURE",
    "pvlr": "transformers_hsvlt.pvlr.architecture:ARCHITECTURE",
}
"""Architecture name -> `module:attribute` of its entry, imported on first use."""

_REGISTRY: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    """Add (or replace) an architecture; returns it."""
    _REGISTRY[architecture.name] = architecture
    return architecture


def architecture_names() -> list[str]:
    """Every registered architecture name, built-in ones first."""
    return list(dict.fromkeys([*_BUILTIN_ENTRIES, *_REGISTRY]))


def architectures_that(capability: Callable[[Architecture], bool]) -> list[str]:
    """The names of the registered architectures with a capability, e.g. `architectures_that(lambda entry:
    entry.open_vocabulary)`, for messages that say which architectures would do."""
    return [name for name in architecture_names() if capability(get_architecture(name))]


def get_architecture(name: str) -> Architecture:
    """The architecture called `name` (a `--model`, `--architecture` or `config.model_type` value)."""
    if name not in _REGISTRY and name in _BUILTIN_ENTRIES:
        module_name, attribute = _BUILTIN_ENTRIES[name].split(":")
        register(getattr(importlib.import_module(module_name), attribute))
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; the registered ones are {architecture_names()}.")
    return _REGISTRY[name]
