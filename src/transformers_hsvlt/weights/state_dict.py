"""The one state-dict layer of the toolkit: safe reading of weight files and named differences between state dicts.

Every loader of ours (backbone initialisation, the authors' checkpoint conversions, checkpoint loading) reads files
with `load_state_dict_file` (`.pth`/`.pt`/`.bin` through `torch.load(weights_only=True)`, never unpickling code;
`.safetensors` through safetensors) and compares what it found with what the model expects through
`state_dict_differences` / `check_state_dict`, so that a missing, unexpected or mis-shaped tensor is an error naming it.
"""

import os
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors_file


STATE_DICT_WRAPPER_KEYS = ("model", "state_dict")
"""Keys under which training scripts commonly nest the state dict in a `.pth` file (`{'model': state_dict}`)."""

_MAX_LISTED_KEYS = 8


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """
    Load a state dict from a `.safetensors` file or a PyTorch `.pth` checkpoint (a state dict, or a dict wrapping it
    under `"model"` or `"state_dict"`).

    The file is read with `torch.load(path, map_location="cpu", weights_only=True)` only: a file holding anything
    else than tensors and plain containers (e.g. pickled code) is refused, never executed.

    Raises:
        `FileNotFoundError`: `path` does not exist.
        `ValueError`: the file is not a PyTorch checkpoint, holds pickled objects, or is not a mapping of names to
            tensors. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file {path} does not exist.")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(error)
        if refused is None:
            raise ValueError(
                f"{path} is not a PyTorch checkpoint readable by torch.load(weights_only=True)."
            ) from error
        raise ValueError(
            f"{path} was refused by torch.load(weights_only=True): it holds pickled objects other than tensors "
            f"({refused}). Only plain state dicts are loaded, so no code from the file was run."
        ) from error
    except (RuntimeError, EOFError, OSError, IndexError, KeyError, ValueError) as error:  # what garbage bytes raise
        raise ValueError(f"{path} is not a PyTorch checkpoint readable by torch.load: {error}") from error
    return _unwrap_state_dict(loaded, path)


def _refused_global(error: pickle.UnpicklingError) -> str | None:
    """The first sentence of the line of torch's weights-only error naming the refused global (without its advice
    to allow-list it), or None when the error is not about a global."""
    line = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), None)
    return None if line is None else line.split(". ")[0].rstrip(".")


def _unwrap_state_dict(loaded, path: Path) -> dict[str, torch.Tensor]:
    """The state dict, unwrapped from `{"model": ...}` or `{"state_dict": ...}`; checked to map str to tensors."""
    if isinstance(loaded, dict):
        for key in STATE_DICT_WRAPPER_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(
            f"{path} does not hold a state dict: expected a non-empty dict of tensors (optionally under "
            f"{' or '.join(map(repr, STATE_DICT_WRAPPER_KEYS))}), got {type(loaded).__name__}"
            + (" (empty)" if isinstance(loaded, dict) else "")
            + "."
        )
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(key, str) or not torch.is_tensor(value)]
    if not_tensors:
        raise ValueError(
            f"{path} is not a state dict: these entries are not named tensors: {listed_keys(not_tensors)}."
        )
    return loaded


def listed_keys(keys) -> str:
    """A short, sorted listing of keys for an error message."""
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f", ... ({len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else "")


def check_pretrained_name(name: str | os.PathLike, what: str) -> None:
    """Refuse a name of pretrained weights that is meant as a local path (absolute, relative with `./`, `~`, more
    than one `/`, or a file extension) but does not exist, with a one-line error, instead of letting it be tried as a
    Hub repository id ("Repo id must be in the form ...")."""
    text = os.fspath(name)
    if os.path.exists(os.path.expanduser(text)):
        return
    looks_local = (
        os.path.isabs(text)
        or text.startswith((".", "~"))
        or text.count("/") > 1
        or Path(text).suffix in (".pth", ".pt", ".bin", ".safetensors", ".npy", ".npz", ".pkl", ".tar")
    )
    if looks_local:
        raise ValueError(f"{what} {text}: no such file or directory.")


@contextmanager
def refusing_unsafe_pickles(name: str | os.PathLike) -> Iterator[None]:
    """Around `from_pretrained` of a backbone (a directory or Hub id whose weights may be a pickled
    `pytorch_model.bin`): the refusal of `torch.load(weights_only=True)` becomes a one-line `ValueError` naming the
    checkpoint instead of an `UnpicklingError` suggesting `weights_only=False`."""
    try:
        yield
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{os.fspath(name)}: its pickled weights (pytorch_model.bin) hold objects other than tensors, which are "
            "never unpickled (that could run code); use a checkpoint with model.safetensors."
        ) from error


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a `.safetensors` file; a truncated or corrupt file is a `ValueError` naming it."""
    try:
        return load_safetensors_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error


@dataclass
class StateDictDifferences:
    """How a found state dict differs from the expected one: the names the model has but the source lacks
    (`missing`), the source's names the model lacks (`unexpected`) and `"name: found (shape) vs expected (shape)"`
    entries for tensors present in both with different shapes (`mismatched`)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """`missing: a, b; unexpected: c; wrong shape: d (1, 2) vs (2, 2)` (only the non-empty parts)."""
        parts = (("missing", self.missing), ("unexpected", self.unexpected), ("wrong shape", self.mismatched))
        return "; ".join(f"{title}: {listed_keys(keys)}" for title, keys in parts if keys)


def state_dict_differences(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    found: Mapping[str, torch.Tensor | torch.Size | tuple[int, ...]],
    source_names: Mapping[str, str] | None = None,
) -> StateDictDifferences:
    """Compare the expected tensor shapes (our names) with the found tensors or shapes (our names too);
    `source_names` maps our names to the source's names, used in the `unexpected` and `mismatched` entries."""
    source_names = source_names or {}

    def shape(value) -> tuple[int, ...]:
        return tuple(value.shape) if hasattr(value, "shape") else tuple(value)

    return StateDictDifferences(
        missing=sorted(set(expected) - set(found)),
        unexpected=sorted(source_names.get(name, name) for name in set(found) - set(expected)),
        mismatched=[
            f"{source_names.get(name, name)} {shape(found[name])} vs expected {shape(expected[name])}"
            for name in sorted(set(found) & set(expected))
            if shape(found[name]) != shape(expected[name])
        ],
    )


def check_state_dict(
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    found: Mapping[str, torch.Tensor | torch.Size | tuple[int, ...]],
    description: str,
    source_names: Mapping[str, str] | None = None,
) -> None:
    """Raise a one-line `ValueError` starting with `description` unless `found` has exactly the expected tensors with
    the expected shapes, and every floating-point tensor is finite."""
    differences = state_dict_differences(expected, found, source_names)
    if differences:
        raise ValueError(f"{description}: {differences.describe()}.")
    non_finite = sorted(
        (source_names or {}).get(name, name)
        for name, value in found.items()
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    )
    if non_finite:
        raise ValueError(f"{description}: NaN or infinite values in {listed_keys(non_finite)}.")
