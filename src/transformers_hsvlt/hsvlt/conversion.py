"""Conversion of the authors' HSVLT checkpoints (github.com/NaturalKnight/HSVLT, `models/hsvlt.py`) to ours.

The authors' state dict uses ConvNeXt's original names (`downsample_layers`, `stages.{s}.{b}`) plus `attn`, `res_gate`,
`langs` and `text_head2`; see `docs/hsvlt.md`. Keys their forward never uses are dropped, and so is the last block's
`res_gate`, whose output reaches no logit. The same
renaming serves the original ConvNeXt `.pth` format (see `hsvlt/backbone.py`), whose keys are the visual part of theirs.

```bash
hsvlt-convert best_model.pth --labels data/coco/label.txt --label-embeddings data/coco/bert.npy --output hsvlt-s-coco
```
"""

import os
import re

import torch

from ..configuration_hsvlt import HSVLTConfig
from ..data.label_files import read_label_names
from ..label_embeddings import load_label_embeddings
from ..modeling_hsvlt import HSVLTForMultiLabelClassification
from ..weights.state_dict import check_state_dict, listed_keys, load_state_dict_file


_CONVNEXT_HINT = (
    ". It looks like a plain ConvNeXt checkpoint (no label projections or head): start a new HSVLT from it with "
    "`transformers_hsvlt.hsvlt.backbone.build_hsvlt_from_convnext` and train it."
)

UNUSED_KEY_PATTERN = re.compile(r"^(norm|head|attn|fuse)\.|^stages\.\d+\.\d+\.(mlp|norm2)\.")

_BLOCK_RENAMES = {
    "dwconv": "dwconv",
    "norm": "layernorm",
    "pwconv1": "pwconv1",
    "pwconv2": "pwconv2",
    "attn.query": "label_attention.query",
    "attn.key": "label_attention.key",
    "attn.value": "label_attention.value",
    "attn.proj": "label_attention.proj",
    "attn.vis_project.0": "label_attention.vis_project",
    "attn.project_mm.0": "label_attention.project_mm",
    "res_gate.0": "label_gate.hidden",
    "res_gate.2": "label_gate.output",
}
_BLOCK_KEY = re.compile(r"^stages\.(\d+)\.(\d+)\.(.+)\.(weight|bias)$")
_GAMMA_KEY = re.compile(r"^stages\.(\d+)\.(\d+)\.gamma$")
_DOWNSAMPLE_KEY = re.compile(r"^downsample_layers\.(\d+)\.([01])\.(weight|bias)$")
_LANGS_KEY = re.compile(r"^langs\.(\d+)\.(weight|bias)$")
_HEAD_KEY = re.compile(r"^text_head2\.(weight|bias)$")


def rename_authors_key(key: str) -> str | None:
    """
    Our name for one of the authors' keys (the name in [`HSVLTForMultiLabelClassification`]), or None if the key is
    not part of their architecture. ConvNeXt's original keys get the names of HSVLT's visual hierarchy.
    """
    if match := _BLOCK_KEY.match(key):
        stage, block, module, kind = match.groups()
        if module in _BLOCK_RENAMES:
            return f"hsvlt.encoder.stages.{stage}.layers.{block}.{_BLOCK_RENAMES[module]}.{kind}"
        return None
    if match := _GAMMA_KEY.match(key):
        stage, block = match.groups()
        return f"hsvlt.encoder.stages.{stage}.layers.{block}.layer_scale_parameter"
    if match := _DOWNSAMPLE_KEY.match(key):
        stage, index, kind = match.groups()
        if stage == "0":
            return f"hsvlt.embeddings.{('patch_embeddings', 'layernorm')[int(index)]}.{kind}"
        return f"hsvlt.encoder.stages.{stage}.downsampling_layer.{index}.{kind}"
    if match := _LANGS_KEY.match(key):
        stage, kind = match.groups()
        return f"hsvlt.encoder.stages.{stage}.label_projection.{kind}"
    if match := _HEAD_KEY.match(key):
        return f"classifier.{match.group(1)}"
    return None


def convert_authors_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """
    Rename an authors'-format HSVLT state dict to ours, dropping the keys their forward never uses.

    Returns:
        `(converted, unexpected)`: our state dict (without the label-embedding buffer, which the authors keep in a
        separate `.npy`), and the authors' keys that are neither part of the architecture nor known-unused.
    """
    converted, unexpected = {}, []
    last_gate = _last_block_gate_prefix(state_dict)
    for key, tensor in state_dict.items():
        if UNUSED_KEY_PATTERN.match(key) or key.startswith(last_gate):
            continue
        new_key = rename_authors_key(key)
        if new_key is None:
            unexpected.append(key)
            continue
        if new_key.endswith(("vis_project.weight", "project_mm.weight")) and tensor.ndim == 3:
            tensor = tensor.squeeze(-1)  # Conv1d with kernel 1 == Linear
        converted[new_key] = tensor
    return converted, unexpected


def _last_block_gate_prefix(state_dict: dict[str, torch.Tensor]) -> str:
    """The key prefix of the model's last block's `res_gate`: its output reaches no logit, so ours has no such gate."""
    blocks = [tuple(map(int, match.groups())) for key in state_dict if (match := _GAMMA_KEY.match(key))]
    if not blocks:
        return "stages.-"
    stage = max(stage for stage, _ in blocks)
    return f"stages.{stage}.{max(block for block_stage, block in blocks if block_stage == stage)}.res_gate."


def infer_config_from_authors_state_dict(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int = 1, **config_kwargs
) -> HSVLTConfig:
    """Read depths, widths, label-embedding width and number of labels off an authors'-format state dict."""
    stage_blocks: dict[int, set[int]] = {}
    for key in state_dict:
        if match := _GAMMA_KEY.match(key):
            stage_blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    missing = [
        key for key in ("downsample_layers.0.0.weight", "langs.0.weight", "text_head2.weight") if key not in state_dict
    ]
    if missing or not stage_blocks:
        _, unexpected = convert_authors_state_dict(state_dict)
        raise ValueError(
            "Not an HSVLT checkpoint in the authors' format: "
            + (f"missing {missing}" if missing else "no `stages.{s}.{b}.gamma` keys")
            + (f"; unexpected keys: {listed_keys(unexpected)}" if unexpected else "")
            + (_CONVNEXT_HINT if "downsample_layers.0.0.weight" in state_dict and "langs.0.weight" in missing else ".")
        )
    num_stages = max(stage_blocks) + 1
    depths = [len(stage_blocks.get(stage, ())) for stage in range(num_stages)]
    hidden_sizes = [state_dict[f"stages.{stage}.0.gamma"].shape[0] for stage in range(num_stages) if depths[stage]]
    if len(hidden_sizes) != num_stages:
        raise ValueError(f"Not an HSVLT checkpoint in the authors' format: stage blocks per stage are {depths}.")
    return HSVLTConfig(
        depths=depths,
        hidden_sizes=hidden_sizes,
        num_channels=state_dict["downsample_layers.0.0.weight"].shape[1],
        patch_size=state_dict["downsample_layers.0.0.weight"].shape[-1],
        label_embedding_size=state_dict["langs.0.weight"].shape[1],
        num_labels=state_dict["text_head2.weight"].shape[0],
        num_attention_heads=num_attention_heads,
        **config_kwargs,
    )


def convert_authors_checkpoint(
    checkpoint: str | os.PathLike,
    labels: str | os.PathLike,
    label_embeddings: str | os.PathLike,
    num_attention_heads: int = 1,
) -> HSVLTForMultiLabelClassification:
    r"""
    Convert a checkpoint of the authors' code (github.com/NaturalKnight/HSVLT) to an
    [`HSVLTForMultiLabelClassification`] (write it with `transformers_hsvlt.checkpoints.convert_checkpoint` or
    `hsvlt-convert`).

    Args:
        checkpoint (`str` or `os.PathLike`):
            The authors' `.pth` (their `best_model.pth`): a state dict, or a dict holding it under `"model"` or
            `"state_dict"`. Read with `torch.load(weights_only=True)`; files holding pickled code are refused.
        labels (`str` or `os.PathLike`):
            Their `label.txt`: one class name per line, in the order of the head's rows.
        label_embeddings (`str` or `os.PathLike`):
            Their label-embedding `.npy` (e.g. `bert.npy`), `(num_labels, 768)`; label embeddings are not in their
            state dict.
        num_attention_heads (`int`, *optional*, defaults to 1):
            IVLA heads of the trained model (1 in the released configuration); the weights do not reveal it.

    Returns:
        The converted [`HSVLTForMultiLabelClassification`], in eval mode.

    Raises:
        `FileNotFoundError`: an input file does not exist.
        `ValueError`: the checkpoint is refused or does not match the HSVLT architecture (the message names the
            missing, unexpected and mis-shaped keys), holds NaN or infinite weights, or the label file, head and
            label embeddings disagree on the number of labels or the embedding width.
    """
    state_dict = load_state_dict_file(checkpoint)
    try:
        config = infer_config_from_authors_state_dict(state_dict, num_attention_heads=num_attention_heads)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from error
    names = read_label_names(labels)
    embeddings = load_label_embeddings(label_embeddings, expected_width=config.label_embedding_size)
    _check_label_counts(
        {
            f"{labels} (label names)": len(names),
            f"{checkpoint} (rows of text_head2.weight)": config.num_labels,
            f"{label_embeddings} (label embeddings)": embeddings.shape[0],
        }
    )
    config.id2label = dict(enumerate(names))
    config.label2id = {name: index for index, name in enumerate(names)}

    model = HSVLTForMultiLabelClassification(config)
    converted = _checked_conversion(state_dict, model, checkpoint)
    converted["hsvlt.label_embeddings.weight"] = torch.from_numpy(embeddings)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def _check_label_counts(counts: dict[str, int]) -> None:
    """Raise a `ValueError` listing every source and its count unless all the label counts agree."""
    if len(set(counts.values())) > 1:
        listed = "; ".join(f"{source}: {count}" for source, count in counts.items())
        raise ValueError(f"The number of labels disagrees between the inputs: {listed}.")


def _checked_conversion(
    state_dict: dict[str, torch.Tensor], model: HSVLTForMultiLabelClassification, checkpoint_path
) -> dict[str, torch.Tensor]:
    """
    Our state dict (without the label-embedding buffer) from the authors' one, after checking it has exactly the
    tensors of `model`, with the right shapes, and finite values.
    """
    converted, unexpected = convert_authors_state_dict(state_dict)
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    expected.pop("hsvlt.label_embeddings.weight")
    config = model.config
    check_state_dict(
        expected,
        {**converted, **dict.fromkeys(unexpected, ())},
        f"{checkpoint_path} does not match the HSVLT architecture read from it (depths {config.depths}, widths "
        f"{config.hidden_sizes}, {config.num_labels} labels)",
    )
    return converted
