"""Weights: the one state-dict layer (`state_dict`) and the CLIP towers' weights shared by PatchCT and PVLR
(`clip`). Each architecture's own backbone weights and the conversion of its authors' checkpoints live in its folder
(`hsvlt/backbone.py`, `hsvlt/conversion.py`, `msrn/conversion.py`)."""

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
