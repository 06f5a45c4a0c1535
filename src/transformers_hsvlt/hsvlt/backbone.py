"""
Initialising HSVLT's visual hierarchy from a pretrained ConvNeXt, as the paper does (ImageNet-22k→1k ConvNeXt-S).

HSVLT's visual hierarchy is a ConvNeXt: same stem, downsampling layers and blocks, with the parameter names of
transformers' `ConvNextModel`. IVLA reads the visual map of every block but never changes it, so once the ConvNeXt
weights are loaded, HSVLT's `hidden_states` equal the ConvNeXt ones for the same pixels. Only the vision-language
parts start anew: the label projections (`label_projection`), IVLA (`label_attention`, `label_gate`) and the head
(`classifier`). ConvNeXt's final LayerNorm (`layernorm` / `norm`, applied to the pooled feature) and its ImageNet
classifier (`classifier` / `head`) have no counterpart in HSVLT and are not used.

Sources:

- a transformers ConvNeXt checkpoint, by Hub id (`facebook/convnext-small-384-22k-1k`) or local directory, saved
  from `ConvNextModel` or `ConvNextForImageClassification`;
- an in-memory `ConvNextModel` / `ConvNextForImageClassification`;
- a `.pth` file in the original ConvNeXt format (`convnext_small_22k_1k_384.pth`, keys `downsample_layers.*`,
  `stages.*`, `norm.*`, `head.*`, optionally under `"model"`), read with `torch.load(weights_only=True)` only;
- a state dict in either format.

```python
>>> from transformers_hsvlt.hsvlt.backbone import build_hsvlt_from_convnext

>>> model = build_hsvlt_from_convnext(
...     "facebook/convnext-small-384-22k-1k", "data/voc2007/label.txt", "data/voc2007/bert.npy"
... )
```
"""

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, ConvNextConfig, ConvNextForImageClassification, ConvNextModel
from transformers.models.convnext.modeling_convnext import ConvNextPreTrainedModel
from transformers.utils import logging

from ..configuration_hsvlt import HSVLTConfig
from ..data.label_files import read_label_names
from ..label_embeddings import load_label_embeddings
from ..modeling_hsvlt import HSVLTForMultiLabelClassification, HSVLTModel
from ..weights.state_dict import (
    check_pretrained_name,
    load_state_dict_file,
    refusing_unsafe_pickles,
    state_dict_differences,
)
from .conversion import UNUSED_KEY_PATTERN, rename_authors_key


logger = logging.get_logger(__name__)

CONVNEXT_LAYER_NORM_EPS = 1e-6

CONVNEXT_DEFINED_FIELDS = frozenset(
    {"num_channels", "patch_size", "depths", "hidden_sizes", "layer_norm_eps", "layer_scale_init_value", "hidden_act"}
)
"""The `HSVLTConfig` fields a pretrained ConvNeXt determines (see `build_hsvlt_from_convnext`)."""
"""Epsilon of ConvNeXt's stem, downsampling and block LayerNorms, fixed in both the original code and transformers.
(`ConvNextConfig.layer_norm_eps`, 1e-12 by default, only sets the final LayerNorm of the pooled feature.)"""

VISUAL_PARAMETER_PATTERN = re.compile(
    r"^embeddings\.|^encoder\.stages\.\d+\.(downsampling_layer\.|layers\.\d+\.(dwconv|layernorm|pwconv1|pwconv2)\.|"
    r"layers\.\d+\.layer_scale_parameter$)"
)
"""Names of the visual-hierarchy parameters of [`HSVLTModel`], the ones ConvNeXt weights initialise."""

_STAGE_BLOCK = re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.dwconv\.weight$")
_STEM = "embeddings.patch_embeddings.weight"


@dataclass
class ConvNextLoadingInfo:
    """
    What [`load_convnext_weights`] did. Parameter names are those of the model it was given (with the `hsvlt.`
    prefix for [`HSVLTForMultiLabelClassification`]).

    Attributes:
        loaded_keys: HSVLT parameters copied from the ConvNeXt.
        newly_initialized_keys: HSVLT parameters left as initialised: the label projections, IVLA and the head (and,
            with `strict_shapes=False`, visual parameters the ConvNeXt lacks or has with another shape).
        unused_keys: ConvNeXt tensors HSVLT has no use for: the final LayerNorm and the classifier (and, with
            `strict_shapes=False`, tensors that have no counterpart in the HSVLT model).
        mismatched_keys: with `strict_shapes=False`, `"name: ConvNeXt (shape) vs HSVLT (shape)"` of the tensors
            left out because of their shape.
    """

    loaded_keys: list[str] = field(default_factory=list)
    newly_initialized_keys: list[str] = field(default_factory=list)
    unused_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[str] = field(default_factory=list)


@dataclass
class _ConvNextWeights:
    """
    ConvNeXt visual weights named as [`HSVLTModel`]'s parameters (`visual`, with the key of every tensor in the
    source in `source_keys`), and the source keys left out of them: `unused_keys` (parts of a ConvNeXt HSVLT has no
    use for) and `unexpected_keys` (not parts of a ConvNeXt).
    """

    description: str
    visual: dict[str, torch.Tensor] = field(default_factory=dict)
    source_keys: dict[str, str] = field(default_factory=dict)
    unused_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    hidden_act: str | None = None

    def add_visual(self, name: str, tensor: torch.Tensor, source_key: str) -> None:
        self.visual[name] = tensor
        self.source_keys[name] = source_key


def load_convnext_weights(
    model: HSVLTModel | HSVLTForMultiLabelClassification, source, strict_shapes: bool = True
) -> ConvNextLoadingInfo:
    r"""
    Copy a pretrained ConvNeXt into the visual hierarchy of an HSVLT model (in place).

    Args:
        model ([`HSVLTModel`] or [`HSVLTForMultiLabelClassification`]):
            The model to initialise. Its `config.layer_norm_eps` must be ConvNeXt's 1e-6 and its `hidden_act` the
            ConvNeXt's, so that the loaded hierarchy computes exactly what the ConvNeXt computes.
        source (`str`, `os.PathLike`, `ConvNextModel`, `ConvNextForImageClassification` or `Mapping`):
            A Hub id or local directory of a transformers ConvNeXt checkpoint, a `.pth` file in the original ConvNeXt
            format, a ConvNeXt model, or a state dict in either format (see the module docstring).
        strict_shapes (`bool`, *optional*, defaults to `True`):
            Raise a `ValueError` unless the ConvNeXt has exactly the stages, blocks, widths, stem and tensors of the
            HSVLT model. With `False`, load the tensors whose names and shapes match and leave the others newly
            initialised (listed in the returned info).

    Returns:
        [`ConvNextLoadingInfo`]: the loaded, newly initialised, unused and mismatched tensors.

    Raises:
        `ValueError`: the source is not a ConvNeXt, or (with `strict_shapes`) does not fit the model: the message
            names the stage or tensor with the expected and found values.
    """
    return _load_weights(model, _resolve(source), strict_shapes)


def build_hsvlt_from_convnext(
    convnext_source,
    label_names: Sequence[str] | str | os.PathLike,
    label_embeddings: np.ndarray | torch.Tensor | str | os.PathLike,
    **config_overrides,
) -> HSVLTForMultiLabelClassification:
    r"""
    A new [`HSVLTForMultiLabelClassification`] whose visual hierarchy is a pretrained ConvNeXt: depths, widths, stem,
    layer scale and activation are read from the ConvNeXt, its weights are loaded, and the label side is set up from
    the label names and their embeddings. The vision-language parts are newly initialised, ready for training.

    Args:
        convnext_source:
            The ConvNeXt, as for [`load_convnext_weights`].
        label_names (`Sequence[str]` or path):
            The class names in label-id order, or a `label.txt` with one name per line.
        label_embeddings (`np.ndarray`, `torch.Tensor` or path):
            The `(num_labels, width)` label-name embeddings, or a `.npy` file holding them (see
            `transformers_hsvlt.label_embeddings`); `width` becomes `config.label_embedding_size`.
        config_overrides:
            Other [`HSVLTConfig`] arguments (e.g. `image_size`, `drop_path_rate`, `num_attention_heads`). Values read
            from the ConvNeXt may be given too; they must then agree with it.

    Returns:
        [`HSVLTForMultiLabelClassification`]
    """
    weights = _resolve(convnext_source)
    if isinstance(label_names, (str, os.PathLike)):
        label_names = read_label_names(label_names)
    if isinstance(label_embeddings, (str, os.PathLike)):
        label_embeddings = load_label_embeddings(label_embeddings)
    label_embeddings = torch.as_tensor(label_embeddings, dtype=torch.float32)
    config = HSVLTConfig(
        **{
            **_config_values(weights),
            "label_embedding_size": label_embeddings.shape[-1],
            "id2label": dict(enumerate(label_names)),
            **config_overrides,
        }
    )
    model = HSVLTForMultiLabelClassification(config)
    model.set_label_embeddings(label_embeddings, list(label_names))
    _load_weights(model, weights, strict_shapes=True)
    return model


def _resolve(source) -> _ConvNextWeights:
    """Read the ConvNeXt visual weights out of any supported source."""
    if isinstance(source, ConvNextPreTrainedModel):
        name = f"the given {type(source).__name__}"
        return _from_transformers_state_dict(source.state_dict(), name, source.config.hidden_act)
    if isinstance(source, Mapping):
        return _from_state_dict(source, "the given state dict")
    if isinstance(source, (str, os.PathLike)):
        check_pretrained_name(source, "The ConvNeXt backbone")
        if Path(source).is_file():
            return _from_state_dict(load_state_dict_file(source), str(source))
        return _from_pretrained(str(source))
    raise TypeError(
        "The ConvNeXt source must be a Hub id, a directory, a .pth file, a ConvNextModel / "
        f"ConvNextForImageClassification or a state dict, got {type(source).__name__}."
    )


def _from_pretrained(name: str) -> _ConvNextWeights:
    """A transformers ConvNeXt checkpoint (Hub id or directory), loaded with the class it was saved from."""
    config = AutoConfig.from_pretrained(name, trust_remote_code=False)
    if not isinstance(config, ConvNextConfig):
        raise ValueError(
            f"{name} is a {config.model_type!r} checkpoint; HSVLT's visual hierarchy needs a ConvNeXt (model_type "
            "'convnext', e.g. facebook/convnext-small-384-22k-1k)."
        )
    with_head = "ConvNextForImageClassification" in (config.architectures or [])
    model_class = ConvNextForImageClassification if with_head else ConvNextModel
    with refusing_unsafe_pickles(name):
        model = model_class.from_pretrained(name, config=config)
    return _from_transformers_state_dict(model.state_dict(), name, config.hidden_act)


def _from_state_dict(state_dict: Mapping[str, torch.Tensor], description: str) -> _ConvNextWeights:
    """A state dict in the original ConvNeXt format (`downsample_layers.*`) or in transformers' one."""
    if not any(key.startswith("downsample_layers.") for key in state_dict):
        return _from_transformers_state_dict(state_dict, description)
    weights = _ConvNextWeights(description)
    for key, tensor in state_dict.items():
        name = rename_authors_key(key)
        if name is not None and VISUAL_PARAMETER_PATTERN.match(name.removeprefix("hsvlt.")):
            weights.add_visual(name.removeprefix("hsvlt."), tensor, key)
        elif name is not None or UNUSED_KEY_PATTERN.match(key):  # `norm`, `head`, or HSVLT's vision-language part
            weights.unused_keys.append(key)
        else:
            weights.unexpected_keys.append(key)
    return weights


def _from_transformers_state_dict(
    state_dict: Mapping[str, torch.Tensor], description: str, hidden_act: str | None = None
) -> _ConvNextWeights:
    """A transformers ConvNeXt state dict (keys with or without the `convnext.` prefix)."""
    weights = _ConvNextWeights(description, hidden_act=hidden_act)
    for key, tensor in state_dict.items():
        name = key.removeprefix("convnext.")
        if VISUAL_PARAMETER_PATTERN.match(name):
            weights.add_visual(name, tensor, key)
        elif name.startswith(("embeddings.", "encoder.")):
            weights.unexpected_keys.append(key)
        else:  # the final `layernorm` and the `classifier`
            weights.unused_keys.append(key)
    return weights


def _architecture(weights: _ConvNextWeights) -> dict:
    """Stem, depths, widths and layer scale of the ConvNeXt, read from its tensors."""
    stem = weights.visual.get(_STEM)
    if stem is None:
        keys = sorted([*weights.source_keys.values(), *weights.unused_keys, *weights.unexpected_keys])
        raise ValueError(
            f"{weights.description} holds no ConvNeXt weights: it has no stem convolution ({_STEM} or "
            f"downsample_layers.0.0.weight) among its {len(keys)} keys (e.g. {keys[:3]})."
        )
    blocks: dict[int, int] = {}
    for key in weights.visual:
        if match := _STAGE_BLOCK.match(key):
            stage, block = map(int, match.groups())
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    depths = [blocks.get(stage, 0) for stage in range(max(blocks, default=-1) + 1)]
    if not depths or 0 in depths:
        raise ValueError(f"{weights.description}: found no blocks in some stages (blocks per stage: {depths}).")
    return {
        "num_channels": stem.shape[1],
        "patch_size": stem.shape[-1],
        "depths": depths,
        "hidden_sizes": [
            weights.visual[f"encoder.stages.{stage}.layers.0.dwconv.weight"].shape[0] for stage in range(len(depths))
        ],
        "layer_scale": any(key.endswith("layer_scale_parameter") for key in weights.visual),
    }


def _config_values(weights: _ConvNextWeights) -> dict:
    """The [`HSVLTConfig`] arguments that make an HSVLT model fit the ConvNeXt."""
    architecture = _architecture(weights)
    values = {key: architecture[key] for key in ("num_channels", "patch_size", "depths", "hidden_sizes")}
    values["layer_norm_eps"] = CONVNEXT_LAYER_NORM_EPS
    if not architecture["layer_scale"]:
        values["layer_scale_init_value"] = 0.0
    if weights.hidden_act is not None:
        values["hidden_act"] = weights.hidden_act
    return values


def _check_computation(config: HSVLTConfig, weights: _ConvNextWeights) -> None:
    """Raise unless the HSVLT model computes what the ConvNeXt computes (LayerNorm epsilon and activation)."""
    if config.layer_norm_eps != CONVNEXT_LAYER_NORM_EPS:
        raise ValueError(
            f"The HSVLT config has layer_norm_eps={config.layer_norm_eps}, but ConvNeXt's stem, downsampling and "
            f"block LayerNorms use {CONVNEXT_LAYER_NORM_EPS} (ConvNextConfig.layer_norm_eps only sets its final "
            f"LayerNorm, which HSVLT does not use): build the model with layer_norm_eps={CONVNEXT_LAYER_NORM_EPS}."
        )
    if weights.hidden_act is not None and weights.hidden_act != config.hidden_act:
        raise ValueError(
            f"{weights.description} uses hidden_act={weights.hidden_act!r} but the HSVLT config has "
            f"hidden_act={config.hidden_act!r}."
        )


def _check_architecture(config: HSVLTConfig, found: dict, description: str) -> None:
    """Raise a `ValueError` naming every stage or stem property in which the ConvNeXt (`found`, see `_architecture`)
    and the HSVLT config differ."""
    problems = []
    for name in ("num_channels", "patch_size"):
        if found[name] != getattr(config, name):
            problems.append(f"stem {name}: ConvNeXt {found[name]}, HSVLT config {getattr(config, name)}")
    if len(found["depths"]) != config.num_stages:
        problems.append(f"ConvNeXt has {len(found['depths'])} stages, HSVLT config {config.num_stages}")
    for stage, (depth, width) in enumerate(zip(found["depths"], found["hidden_sizes"], strict=True)):
        if stage < config.num_stages and (depth, width) != (config.depths[stage], config.hidden_sizes[stage]):
            problems.append(
                f"stage {stage}: ConvNeXt {depth} blocks of width {width}, HSVLT config {config.depths[stage]} "
                f"blocks of width {config.hidden_sizes[stage]}"
            )
    if found["layer_scale"] != (config.layer_scale_init_value > 0):
        state = "has" if found["layer_scale"] else "has no"
        problems.append(
            f"ConvNeXt {state} layer scale, HSVLT config layer_scale_init_value={config.layer_scale_init_value}"
        )
    if problems:
        raise ValueError(
            f"{description} does not fit the HSVLT model (config.depths {config.depths}, hidden_sizes "
            f"{config.hidden_sizes}): " + "; ".join(problems) + ". build_hsvlt_from_convnext reads the architecture "
            "from the ConvNeXt."
        )


def _load_weights(
    model: HSVLTModel | HSVLTForMultiLabelClassification, weights: _ConvNextWeights, strict_shapes: bool
) -> ConvNextLoadingInfo:
    """Copy the matching ConvNeXt tensors into the model's visual hierarchy and report what was done."""
    base = model.base_model
    prefix = "" if base is model else f"{model.base_model_prefix}."
    architecture = _architecture(weights)  # raises unless the source is a ConvNeXt, whatever strict_shapes
    _check_computation(model.config, weights)
    if strict_shapes:
        _check_architecture(model.config, architecture, weights.description)
    expected = {
        name: tensor.shape for name, tensor in base.state_dict().items() if VISUAL_PARAMETER_PATTERN.match(name)
    }
    differences = state_dict_differences(
        {prefix + name: shape for name, shape in expected.items()},
        {prefix + name: tensor for name, tensor in weights.visual.items()},
        {prefix + name: source for name, source in weights.source_keys.items()},
    )
    differences.unexpected = sorted(differences.unexpected + weights.unexpected_keys)
    if strict_shapes and differences:
        raise ValueError(
            f"{weights.description} does not match the visual hierarchy of the HSVLT model: {differences.describe()}."
        )
    to_load = {key: tensor for key, tensor in weights.visual.items() if expected.get(key) == tensor.shape}
    base.load_state_dict(to_load, strict=False)
    info = ConvNextLoadingInfo(
        loaded_keys=sorted(prefix + key for key in to_load),
        newly_initialized_keys=[
            name for name, _ in model.named_parameters() if name.removeprefix(prefix) not in to_load
        ],
        unused_keys=sorted(weights.unused_keys + differences.unexpected),
        mismatched_keys=differences.mismatched,
    )
    logger.info(
        f"Loaded {len(info.loaded_keys)} ConvNeXt tensors from {weights.description} into the HSVLT visual hierarchy; "
        f"{len(info.newly_initialized_keys)} parameters (label projections, IVLA, head) keep their initialisation; "
        f"not used: {', '.join(info.unused_keys) or 'nothing'}."
    )
    return info


__all__ = [
    "CONVNEXT_DEFINED_FIELDS",
    "CONVNEXT_LAYER_NORM_EPS",
    "ConvNextLoadingInfo",
    "build_hsvlt_from_convnext",
    "load_convnext_weights",
]
