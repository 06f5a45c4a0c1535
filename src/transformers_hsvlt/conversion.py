"""Conversion of the authors' HSVLT checkpoints (github.com/NaturalKnight/HSVLT, `models/hsvlt.py`) to ours.

The authors' state dict uses ConvNeXt's original names (`downsample_layers`, `stages.{s}.{b}`) plus `attn`, `res_gate`,
`langs` and `text_head2`; see `../shared/reference/hsvlt.md`. Keys their forward never uses are dropped.
"""

import re

import torch

from .configuration_hsvlt import HSVLTConfig

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


def _rename(key: str) -> str | None:
    """Our name for one of the authors' keys, or None if the key is not part of their architecture."""
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
    for key, tensor in state_dict.items():
        if UNUSED_KEY_PATTERN.match(key):
            continue
        new_key = _rename(key)
        if new_key is None:
            unexpected.append(key)
            continue
        if new_key.endswith(("vis_project.weight", "project_mm.weight")) and tensor.ndim == 3:
            tensor = tensor.squeeze(-1)  # Conv1d with kernel 1 == Linear
        converted[new_key] = tensor
    return converted, unexpected


def infer_config_from_authors_state_dict(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int = 1, **config_kwargs
) -> HSVLTConfig:
    """Read depths, widths, label-embedding width and number of labels off an authors'-format state dict."""
    stage_blocks: dict[int, set[int]] = {}
    for key in state_dict:
        if match := _GAMMA_KEY.match(key):
            stage_blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    missing = [key for key in ("downsample_layers.0.0.weight", "langs.0.weight", "text_head2.weight") if key not in state_dict]
    if missing or not stage_blocks:
        raise ValueError(
            "Not an HSVLT checkpoint in the authors' format: "
            + (f"missing {missing}" if missing else "no `stages.{s}.{b}.gamma` keys")
            + "."
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
