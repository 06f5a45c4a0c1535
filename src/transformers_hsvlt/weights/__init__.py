"""Weights: the one state-dict layer (`state_dict`), pretrained backbones (`convnext`) and the conversions of the
authors' checkpoints (`hsvlt_authors`; other architectures' converters live in their folders)."""

from .state_dict import (
    StateDictDifferences,
    check_pretrained_name,
    check_state_dict,
    listed_keys,
    load_state_dict_file,
    read_safetensors,
    refusing_unsafe_pickles,
    state_dict_differences,
)


__all__ = [
    "StateDictDifferences",
    "check_pretrained_name",
    "check_state_dict",
    "listed_keys",
    "load_state_dict_file",
    "read_safetensors",
    "refusing_unsafe_pickles",
    "state_dict_differences",
]
