"""Weights for MSRN (toolkit code): ImageNet ResNet weights for a new model, and the authors' trained checkpoints.

Two key renamings, each written once:

- `torchvision_resnet_key`: torchvision's ResNet names (`conv1`, `bn1`, `layer{1-4}.{i}.{conv,bn}{1-3}`,
  `layer{1-4}.0.downsample.{0,1}`, the authors' `resnet_101.*` without the prefix) -> transformers' `ResNetModel`
  names (`embedder.embedder.*`, `encoder.stages.{s}.layers.{i}.layer.{0-2}.*`, `...shortcut.*`). Both are ResNet
  v1.5 (stride in the 3x3 convolution), so the weights compute the same maps.
- `authors_key`: the authors' `MSGDN` names -> ours (`resnet_101.*` -> `msrn.backbone.*`, `conv_buffer{1,2}` ->
  `msrn.level_buffers.{0,1}`, `label_embed.layers.{i}.{W,a}` -> `msrn.label_semantics.{i}.{weight,attention_weight}`,
  `group_embed.layers.0.{embed,assign_mat}` -> `msrn.group_pooling.{embed,assign}`, `ProjectM` ->
  `msrn.level_projections`, `fc_label` -> `msrn.label_projection`, `fc1`/`fc2` -> `head.hidden`/`head.output`).
  `W`, `B` (a commented-out head) and `resnet_101.conv_buffer0` are never used by their forward and are dropped.

```python
>>> from transformers_hsvlt.msrn.conversion import convert_msrn_checkpoint

>>> model = convert_msrn_checkpoint(
...     "model_best.pth.tar", "data/coco/category.json", "data/coco/coco_glove_word2vec.pkl",
...     "data/coco/coco_adj.pkl", "msrn-coco"
... )
```
"""

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import ResNetConfig, ResNetModel
from transformers.models.resnet.modeling_resnet import ResNetPreTrainedModel

from ..configuration_msrn import MSRNConfig
from ..data.label_files import read_label_names
from ..modeling_msrn import MSRNForMultiLabelClassification, MSRNModel
from ..registry import LabelCooccurrence
from ..weights.state_dict import check_state_dict, listed_keys, load_state_dict_file, refusing_unsafe_pickles
from .label_graph import load_cooccurrence, load_word_vectors


IMAGE_PROCESSOR_DEFAULTS = {
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}
"""`MultiLabelImageProcessor` arguments of the authors' evaluation preprocessing, with `size` the config's `image_size`
(448): squash to a square (bilinear), ImageNet mean/std."""

RESNET_ARCHITECTURE_FIELDS = (
    "num_channels",
    "embedding_size",
    "hidden_sizes",
    "depths",
    "layer_type",
    "hidden_act",
    "downsample_in_first_stage",
    "downsample_in_bottleneck",
)
"""The `ResNetConfig` fields that shape the network (the rest are task or output settings)."""

_STEM = re.compile(r"^(conv1|bn1)\.(.+)$")
_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)$")
_SHORTCUT = re.compile(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(.+)$")
_UNUSED_AUTHORS_KEY = re.compile(r"^(W|B|resnet_101\.conv_buffer0\..+)$")
_AUTHORS_RENAMES = (
    (
        re.compile(r"^resnet_101\.conv_buffer([12])\.(weight|bias)$"),
        lambda m: f"msrn.level_buffers.{int(m[1]) - 1}.{m[2]}",
    ),
    (re.compile(r"^label_embed\.layers\.(\d+)\.([Wa])$"), lambda m: f"msrn.label_semantics.{m[1]}.{_GAT_NAMES[m[2]]}"),
    (
        re.compile(r"^group_embed\.layers\.0\.(embed|assign_mat)\.([Wa])$"),
        lambda m: f"msrn.group_pooling.{'embed' if m[1] == 'embed' else 'assign'}.{_GAT_NAMES[m[2]]}",
    ),
    (re.compile(r"^ProjectM\.(\d)\.(weight|bias)$"), lambda m: f"msrn.level_projections.{m[1]}.{m[2]}"),
    (re.compile(r"^fc_label\.(weight|bias)$"), lambda m: f"msrn.label_projection.{m[1]}"),
    (re.compile(r"^fc1\.(weight|bias)$"), lambda m: f"head.hidden.{m[1]}"),
    (re.compile(r"^fc2\.(weight|bias)$"), lambda m: f"head.output.{m[1]}"),
)
_GAT_NAMES = {"W": "weight", "a": "attention_weight"}


def torchvision_resnet_key(key: str) -> str | None:
    """transformers' `ResNetModel` name of a torchvision ResNet key, or None (`fc.*` and anything else)."""
    if match := _STEM.match(key):
        module = "convolution" if match[1] == "conv1" else "normalization"
        return f"embedder.embedder.{module}.{match[2]}"
    if match := _BLOCK.match(key):
        stage, block, kind, index, rest = match.groups()
        module = "convolution" if kind == "conv" else "normalization"
        return f"encoder.stages.{int(stage) - 1}.layers.{block}.layer.{int(index) - 1}.{module}.{rest}"
    if match := _SHORTCUT.match(key):
        stage, block, index, rest = match.groups()
        module = "convolution" if index == "0" else "normalization"
        return f"encoder.stages.{int(stage) - 1}.layers.{block}.shortcut.{module}.{rest}"
    return None


def authors_key(key: str) -> str | None:
    """Our [`MSRNForMultiLabelClassification`] name of one of the authors' `MSGDN` keys, or None when it is not one
    of theirs that their forward uses (`is_unused_authors_key` tells the dropped ones from unknown ones)."""
    for pattern, rename in _AUTHORS_RENAMES:
        if match := pattern.match(key):
            return rename(match)
    if key.startswith("resnet_101.") and (backbone_key := torchvision_resnet_key(key.removeprefix("resnet_101."))):
        return f"msrn.backbone.{backbone_key}"
    return None


def is_unused_authors_key(key: str) -> bool:
    """`W`, `B` and `resnet_101.conv_buffer0.*`: in the authors' module but never used by its forward."""
    return bool(_UNUSED_AUTHORS_KEY.match(key))


# ----------------------------------------------------------------------------------------------- ResNet weights


def resnet_weights(source) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """
    The weights of a ResNet with transformers' `ResNetModel` names, and the source's name of each (for messages).

    `source`: a transformers ResNet (`ResNetModel`, `ResNetForImageClassification`, `ResNetBackbone`) or its Hub id /
    directory (e.g. `microsoft/resnet-101`), a `.pth` / `.safetensors` file or a state dict in torchvision's layout
    (`resnet101-5d3b4d8f.pth`, read with `torch.load(weights_only=True)`) or in transformers' one. The classifier
    (`fc.*`, `classifier.*`) is left out.
    """
    if isinstance(source, ResNetPreTrainedModel):
        return _renamed_resnet_state_dict(source.state_dict(), type(source).__name__)
    if isinstance(source, Mapping):
        return _renamed_resnet_state_dict(source, "the given state dict")
    path = Path(source)
    if path.is_file():
        return _renamed_resnet_state_dict(load_state_dict_file(path), str(path))
    with refusing_unsafe_pickles(source):
        return resnet_weights(ResNetModel.from_pretrained(str(source)))


def _renamed_resnet_state_dict(
    state_dict: Mapping[str, torch.Tensor], description: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A torchvision- or transformers-layout ResNet state dict with `ResNetModel` names (classifier left out), and
    the source's name of each tensor."""
    renamed, source_names, unknown = {}, {}, []
    for key, tensor in state_dict.items():
        unprefixed = key.removeprefix("resnet.")
        if unprefixed.startswith(("embedder.", "encoder.")):
            new_key = unprefixed
        elif not (new_key := torchvision_resnet_key(unprefixed)):
            if not unprefixed.startswith(("fc.", "classifier.")):
                unknown.append(key)
            continue
        renamed[new_key] = tensor
        source_names[new_key] = key
    if unknown or not renamed:
        raise ValueError(f"{description} is not a ResNet state dict: unknown keys {listed_keys(unknown) or '(none)'}.")
    return renamed, source_names


def load_resnet_weights(model: MSRNModel | MSRNForMultiLabelClassification, source) -> None:
    """Copy an ImageNet ResNet into the model's backbone (see `resnet_weights` for the sources). Its architecture must
    be the model's: a missing, unexpected or mis-shaped tensor is a `ValueError` naming it."""
    backbone = (model.msrn if isinstance(model, MSRNForMultiLabelClassification) else model).backbone
    state_dict, source_names = resnet_weights(source)
    expected = {name: tensor.shape for name, tensor in backbone.state_dict().items()}
    check_state_dict(expected, state_dict, f"The ResNet {_describe(source)} does not fit MSRN's backbone", source_names)
    backbone.load_state_dict(state_dict, strict=True)


def resnet_config_values(source) -> dict | None:
    """The architecture fields of the source's `ResNetConfig` (None for a torchvision-layout file or state dict)."""
    if isinstance(source, ResNetPreTrainedModel):
        config = source.config
    elif isinstance(source, Mapping) or Path(source).is_file():
        return None
    else:
        config = ResNetConfig.from_pretrained(str(source))
    return {"model_type": "resnet", **{name: getattr(config, name) for name in RESNET_ARCHITECTURE_FIELDS}}


def _describe(source) -> str:
    if isinstance(source, Mapping):
        return "state dict"
    return type(source).__name__ if isinstance(source, torch.nn.Module) else str(source)


# ------------------------------------------------------------------------------------------ authors' checkpoints


def infer_config_from_authors_state_dict(state_dict: Mapping[str, torch.Tensor], **config_values) -> MSRNConfig:
    """The `MSRNConfig` of an authors' state dict: labels C (`fc2` rows), groups K (`assign_mat.W` columns), widths
    and the ResNet's depths and widths, all read off the tensors."""
    required = (
        "resnet_101.conv1.weight",
        "fc_label.weight",
        "label_embed.layers.0.W",
        "label_embed.layers.1.W",
        "group_embed.layers.0.assign_mat.W",
        "fc1.weight",
        "fc2.weight",
    )
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise ValueError(f"not an MSRN checkpoint of the authors' code: missing {listed_keys(missing)}.")
    blocks: dict[int, set[int]] = {}
    for key in state_dict:
        if match := re.match(r"^resnet_101\.layer(\d)\.(\d+)\.conv3\.weight$", key):
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    if sorted(blocks) != [1, 2, 3, 4]:
        raise ValueError(f"not an MSRN checkpoint of the authors' code: ResNet layers {sorted(blocks)} instead of 1-4.")
    backbone = {
        "model_type": "resnet",
        "embedding_size": state_dict["resnet_101.conv1.weight"].shape[0],
        "num_channels": state_dict["resnet_101.conv1.weight"].shape[1],
        "depths": [len(blocks[stage]) for stage in range(1, 5)],
        "hidden_sizes": [state_dict[f"resnet_101.layer{stage}.0.conv3.weight"].shape[0] for stage in range(1, 5)],
        "layer_type": "bottleneck",
        "downsample_in_bottleneck": False,
    }
    num_labels = state_dict["fc2.weight"].shape[0]
    return MSRNConfig(
        backbone_config=backbone,
        id2label={index: str(index) for index in range(num_labels)},
        num_groups=state_dict["group_embed.layers.0.assign_mat.W"].shape[1],
        label_embedding_size=state_dict["fc_label.weight"].shape[1],
        label_projection_size=state_dict["fc_label.weight"].shape[0],
        graph_hidden_size=state_dict["label_embed.layers.0.W"].shape[1],
        semantic_size=state_dict["label_embed.layers.1.W"].shape[1],
        head_hidden_size=state_dict["fc1.weight"].shape[0],
        **config_values,
    )


def convert_authors_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Our state dict (without the label-graph buffers) from the authors' one, and the authors' keys that are neither
    renamed nor known-unused."""
    converted, unexpected = {}, []
    for key, tensor in state_dict.items():
        if is_unused_authors_key(key):
            continue
        new_key = authors_key(key)
        if new_key is None:
            unexpected.append(key)
        else:
            converted[new_key] = tensor
    return converted, unexpected


def read_labels(labels: Sequence[str] | str | os.PathLike) -> list[str]:
    """Class names: a list, a `label.txt` (one name per line), or a JSON mapping name -> index (the authors'
    `category.json`) or list of names."""
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if path.suffix != ".json":
            return read_label_names(path)
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            if sorted(loaded.values()) != list(range(len(loaded))):
                raise ValueError(f"{path}: expected a mapping of label names to the indices 0..{len(loaded) - 1}.")
            return sorted(loaded, key=loaded.get)
        labels = loaded
    return [str(name) for name in labels]


def convert_msrn_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
    labels: Sequence[str] | str | os.PathLike,
    label_embeddings: np.ndarray | torch.Tensor | str | os.PathLike,
    cooccurrence: LabelCooccurrence | str | os.PathLike,
    **config_values,
) -> MSRNForMultiLabelClassification:
    r"""
    Convert a checkpoint of the authors' code (github.com/chehao2628/MSRN) into ours (write it with
    `transformers_hsvlt.checkpoints.convert_checkpoint` or `hsvlt-convert --architecture msrn`).

    Args:
        checkpoint: Their `checkpoint.pth.tar` / `model_best.pth.tar` (a dict holding `state_dict`, read with
            `torch.load(weights_only=True)`), or the state dict itself.
        labels: The class names in the order of the head's rows: a list, a `label.txt`, or their `category.json`.
        label_embeddings: The `(C, 300)` label-name vectors: their `*_glove_word2vec.pkl`, a `.npy`, or an array.
        cooccurrence: The label statistics: their `*_adj.pkl`, a `.npz`, or a `LabelCooccurrence`.
        config_values: Other `MSRNConfig` fields (e.g. `attention_label_chunk_size`).

    Returns:
        The converted [`MSRNForMultiLabelClassification`], in eval mode.

    Raises:
        `ValueError`: the checkpoint is refused or not the authors' MSRN (the message names the missing, unexpected
            and mis-shaped keys), or the labels, head, vectors and statistics disagree on the number of labels.
    """
    description = _describe(checkpoint)
    state_dict = checkpoint if isinstance(checkpoint, Mapping) else load_state_dict_file(checkpoint)
    try:
        config = infer_config_from_authors_state_dict(state_dict, **config_values)
    except ValueError as error:
        raise ValueError(f"{description}: {error}") from error
    names = read_labels(labels)
    if not isinstance(label_embeddings, (np.ndarray, torch.Tensor)):
        label_embeddings = load_word_vectors(label_embeddings)
    if not isinstance(cooccurrence, LabelCooccurrence):
        cooccurrence = load_cooccurrence(cooccurrence)
    counts = {
        "label names": len(names),
        f"{description} (rows of fc2.weight)": config.num_labels,
        "label embeddings": len(label_embeddings),
        "label counts": len(cooccurrence.counts),
    }
    if len(set(counts.values())) > 1:
        raise ValueError(
            "The number of labels disagrees: " + "; ".join(f"{key} {value}" for key, value in counts.items())
        )
    if label_embeddings.shape[1] != config.label_embedding_size:
        raise ValueError(
            f"The label embeddings are {label_embeddings.shape[1]} wide but fc_label.weight of {description} expects "
            f"{config.label_embedding_size}."
        )
    model = MSRNForMultiLabelClassification(config)
    converted, unexpected = convert_authors_state_dict(state_dict)
    graph_buffers = {name for name in model.state_dict() if name.startswith("msrn.label_graph.")}
    expected = {name: tensor.shape for name, tensor in model.state_dict().items() if name not in graph_buffers}
    check_state_dict(
        expected,
        {**converted, **dict.fromkeys(unexpected, ())},
        f"{description} does not match the MSRN architecture read from it ({config.num_labels} labels, "
        f"{config.num_groups} groups, ResNet depths {config.backbone_config.depths})",
    )
    model.load_state_dict(converted, strict=False)
    model.set_label_graph(torch.as_tensor(label_embeddings), cooccurrence, names)
    return model.eval()
