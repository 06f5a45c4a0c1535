"""Checkpoint directories of every family architecture: loading them honestly and writing them completely.

`load_checkpoint` finds the architecture from `config.json`'s `model_type` (see `registry`), reads the weights from
safetensors only and refuses a checkpoint whose tensors do not fit its config (missing, unexpected or mis-shaped
tensors, NaN weights) instead of leaving parts randomly initialised. `write_checkpoint` writes weights, config,
remote code, image processor and model card into a temporary directory inside the target (its own filesystem) and
only then moves them into place, so that a failure (e.g. a full disk) leaves the previous checkpoint intact; it
replaces only what a previous checkpoint wrote, never the user's other files there.
"""

import inspect
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer, PreTrainedConfig, PreTrainedModel

from .hub import prepare_for_push, remote_code_files
from .image_processing_multilabel import MultiLabelImageProcessor
from .images import DEFAULT_MAX_SIDE
from .registry import Architecture, architectures_that, get_architecture
from .weights import check_pretrained_name, check_state_dict, read_safetensors


PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

#: Most labels a checkpoint's config may declare (transformers builds an `id2label` entry for each).
MAX_NUM_LABELS = 100_000

#: Most pixels a side of the model input may have: images are reduced to `images.DEFAULT_MAX_SIDE` when read, so a
#: larger input would only upsample them (and a huge one would exhaust memory in preprocessing).
MAX_INPUT_SIDE = DEFAULT_MAX_SIDE

#: Config fields (at any depth) that count layers, and those that give widths: each layer holds at least one
#: tensor and each width is a dimension of one, so a config asking for more than its weights file holds is refused
#: before the model is built.
_LAYER_COUNT_FIELDS = ("depths", "num_hidden_layers", "num_layers")
_WIDTH_FIELD_SUFFIXES = ("hidden_size", "hidden_sizes", "intermediate_size", "embedding_size")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a `torch.device` that exists on this machine (default: cuda if available, else cpu)."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device {device}: not a device name (use cpu, cuda or cuda:N).") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this PyTorch build or machine has no CUDA device; use --device cpu.")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device}: unsupported device type {resolved.type!r}; use cpu or cuda.")
    return resolved


def checkpoint_architecture(name_or_path: str) -> Architecture:
    """The registered architecture of a checkpoint (directory or Hub id), from its `config.json`."""
    check_pretrained_name(name_or_path, "The checkpoint")
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(name_or_path)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name_or_path}/config.json is not valid JSON: {error}") from error
    except (TypeError, AttributeError) as error:  # transformers reads it as a dict: `null`, a number, ...
        raise ValueError(f"{name_or_path}/config.json must hold a JSON object ({error}).") from error
    if config_dict is None or config_dict == {}:
        raise ValueError(f"{name_or_path} has no config.json: it is not a model checkpoint directory.")
    check_config_dict(config_dict, name_or_path)
    model_type = config_dict["model_type"]
    try:
        architecture = get_architecture(model_type)
    except ValueError as error:
        raise ValueError(f"{name_or_path} is a checkpoint of model_type {model_type!r}: {error}") from error
    check_label_names(config_dict.get("id2label"), name_or_path)
    return architecture


def check_label_names(id2label, name_or_path: str) -> None:
    """Refuse label names in `config.json` that would be read differently from how they are shown: names that are
    not strings, empty, or padded with spaces (`" cat"` is not `"cat"` for `--labels` or a label file)."""
    if not isinstance(id2label, dict):
        return  # no names: the config class gives its defaults or refuses
    for index, name in id2label.items():
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(
                f"{name_or_path}/config.json: id2label[{index}] must be a non-empty label name without surrounding "
                f"spaces, got {name!r}."
            )


def check_config_dict(config_dict, name_or_path: str) -> None:
    """
    Refuse, from `config.json` alone and before anything is built, a config that is not a JSON object, has no
    `model_type`, declares more than `MAX_NUM_LABELS` labels (or a `num_labels` its `id2label` contradicts), an
    `image_size` over `MAX_INPUT_SIDE`, or (for a local checkpoint) more layers or wider layers than its
    `model.safetensors` holds tensors and tensor dimensions.
    """
    where = f"{name_or_path}/config.json"
    if not isinstance(config_dict, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(config_dict).__name__}.")
    if not isinstance(config_dict.get("model_type"), str):
        raise ValueError(f"{where} has no model_type (a string naming the architecture, e.g. 'hsvlt').")
    num_labels, id2label = config_dict.get("num_labels"), config_dict.get("id2label")
    declared = len(id2label) if isinstance(id2label, dict) else num_labels
    if isinstance(declared, int) and not 0 < declared <= MAX_NUM_LABELS:
        raise ValueError(f"{where} declares {declared:,} labels; expected 1 to {MAX_NUM_LABELS:,}.")
    if isinstance(num_labels, int) and isinstance(id2label, dict) and num_labels != len(id2label):
        raise ValueError(f"{where} has num_labels {num_labels:,} but {len(id2label):,} id2label entries.")
    for field, value in _config_integers(config_dict):
        if field == "image_size" and value > MAX_INPUT_SIDE:
            raise ValueError(f"{where}: image_size {value:,} is over the largest input side, {MAX_INPUT_SIDE}.")
    weights_file = Path(name_or_path, "model.safetensors")
    if weights_file.is_file():
        _check_config_fits_weights(config_dict, where, weights_file)


def _config_integers(value, field: str = ""):
    """`(field, integer)` of every integer in a config (nested configs and lists included; not the label maps)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in ("id2label", "label2id"):
                yield from _config_integers(item, str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _config_integers(item, field)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield field, value


def _check_config_fits_weights(config_dict: dict, where: str, weights_file: Path) -> None:
    """Refuse a config with more layers than `weights_file` has tensors, or a width larger than any tensor
    dimension in it (read from the file's header only; an unreadable file is named when the weights are loaded)."""
    try:
        with safe_open(str(weights_file), "pt") as weights:
            shapes = [weights.get_slice(name).get_shape() for name in weights.keys()]
    except (SafetensorError, OSError, ValueError):
        return
    largest_dimension = max((size for shape in shapes for size in shape), default=0)
    layers = 0
    for field, value in _config_integers(config_dict):
        if field in _LAYER_COUNT_FIELDS:
            layers += value
        if field.endswith(_WIDTH_FIELD_SUFFIXES) and value > largest_dimension:
            raise ValueError(
                f"{where}: {field} {value:,} is larger than every tensor dimension of {weights_file.name} (at most "
                f"{largest_dimension:,}): the config does not fit the weights."
            )
    if layers > len(shapes):
        raise ValueError(
            f"{where} asks for {layers:,} layers ({', '.join(_LAYER_COUNT_FIELDS)}), more than the {len(shapes):,} "
            f"tensors of {weights_file.name}: the config does not fit the weights."
        )


def _refuse_pickle_only_directory(path: str) -> None:
    """Say why a local checkpoint with pickled weights but no safetensors is not loaded."""
    if not os.path.isdir(path) or any(name.endswith(".safetensors") for name in os.listdir(path)):
        return
    pickles = [name for name in PICKLE_WEIGHT_FILES if os.path.isfile(os.path.join(path, name))]
    if pickles:
        raise ValueError(
            f"{path} holds its weights only as {pickles[0]}, a pickle, and no model.safetensors: weights are loaded "
            "from safetensors only, because unpickling a file can run arbitrary code. If you trust the file, convert "
            "it once with <ModelClass>.from_pretrained(path, use_safetensors=False).save_pretrained(path)."
        )


def _check_saved_tensors(name_or_path: str, model: PreTrainedModel) -> None:
    """Refuse a local checkpoint whose `model.safetensors` lacks tensors of the model, has others, or has NaN."""
    weights_file = Path(name_or_path, "model.safetensors")
    if not weights_file.is_file():
        return
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    check_state_dict(
        expected, read_safetensors(weights_file), f"{weights_file} does not fit {Path(name_or_path, 'config.json')}"
    )


def load_model(name_or_path: str, architecture: Architecture | None = None) -> PreTrainedModel:
    """The classifier of a family checkpoint, from safetensors only, with every tensor checked (see module doc)."""
    architecture = architecture or checkpoint_architecture(name_or_path)
    _refuse_pickle_only_directory(name_or_path)
    if os.path.isdir(name_or_path):
        config = architecture.config_class.from_pretrained(name_or_path)
        _check_saved_tensors(name_or_path, architecture.model_class(config))
    try:
        model, info = architecture.model_class.from_pretrained(
            name_or_path, use_safetensors=True, output_loading_info=True
        )
    except RuntimeError as error:
        raise ValueError(f"{name_or_path}: the weights do not fit config.json: {error}") from error
    problems = {key: value for key, value in info.items() if value and key != "error_msgs"}
    if problems:
        raise ValueError(f"{name_or_path}: the weights do not fit config.json: {problems}.")
    if is_open_vocabulary(architecture):
        try:
            model.class_name_tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
        except ValueError as error:
            if "trust_remote_code" not in str(error):
                raise
            raise ValueError(
                f"{name_or_path}: its tokenizer_config.json names code to run (auto_map) instead of a tokenizer class "
                "of transformers; the toolkit never runs a checkpoint's code."
            ) from error
    return model


def is_open_vocabulary(architecture: Architecture) -> bool:
    """Whether the architecture reads class names through its own text tower, so any names can be scored."""
    return architecture.open_vocabulary


def open_vocabulary_architectures() -> list[str]:
    """The registered architectures that score any class names (for messages naming them)."""
    return architectures_that(lambda architecture: architecture.open_vocabulary)


def unknown_class_names(names: list[str], tokenizer) -> list[str]:
    """The names made only of words the tokenizer does not know (every token is its unknown token): the text tower
    sees them all as the same text, so they all score alike."""
    unknown_id = getattr(tokenizer, "unk_token_id", None)
    if unknown_id is None:
        return []
    unknown = []
    for name in names:
        ids = tokenizer(name, add_special_tokens=False)["input_ids"]
        if ids and all(token == unknown_id for token in ids):
            unknown.append(name)
    return unknown


def image_processor_for(architecture: Architecture, config: PreTrainedConfig) -> MultiLabelImageProcessor:
    """The architecture's default image processor at the config's `image_size`."""
    size = config.image_size
    return MultiLabelImageProcessor(
        **{**architecture.image_processor_defaults, "size": {"height": size, "width": size}}
    )


def convert_checkpoint(
    architecture_name: str, checkpoint: str, output_dir: str | os.PathLike, **options
) -> PreTrainedModel:
    """Convert an authors' checkpoint with the architecture's converter (`options` are its keyword arguments, e.g.
    `labels`, `label_embeddings`, `cooccurrence`) and write it as a complete remote-code checkpoint."""
    architecture = get_architecture(architecture_name)
    architecture.refuse_unless(
        architecture.convert is not None,
        f"--architecture {architecture_name}",
        "has no converter of its authors' checkpoints (its registry entry declares no `convert`).",
    )
    try:
        inspect.signature(architecture.convert).bind(checkpoint, **options)
    except TypeError as error:
        accepted = list(inspect.signature(architecture.convert).parameters)[1:]
        raise ValueError(
            f"the {architecture_name} converter takes the options {accepted}, got {sorted(options)}: {error}"
        ) from error
    model = architecture.convert(checkpoint, **options).eval()
    write_checkpoint(
        model,
        image_processor_for(architecture, model.config),
        output_dir,
        provenance=f"Converted with `hsvlt-convert` from the authors' checkpoint `{Path(checkpoint).name}`.",
    )
    return model


def load_checkpoint(
    name_or_path: str, device: torch.device | str | None = None
) -> tuple[PreTrainedModel, MultiLabelImageProcessor]:
    """
    Load a family checkpoint (a directory or Hub id) and its image processor, in eval mode on `device`.

    The model classes are this package's (no remote code runs). A checkpoint of an unregistered architecture is
    refused with its `model_type`; a checkpoint without `preprocessor_config.json` gets its architecture's default
    preprocessing at the model's `image_size`; a corrupt `preprocessor_config.json` is an error.
    """
    device = resolve_device(device)
    architecture = checkpoint_architecture(name_or_path)
    model = load_model(name_or_path, architecture).to(device).eval()
    if os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(name_or_path, "preprocessor_config.json")):
        return model, image_processor_for(architecture, model.config)
    try:
        processor = MultiLabelImageProcessor.from_pretrained(name_or_path)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name_or_path}/preprocessor_config.json is not valid JSON: {error}") from error
    except OSError as error:
        if os.path.isdir(name_or_path):  # the file is there (checked above): transformers found it unreadable
            raise ValueError(f"{name_or_path}/preprocessor_config.json cannot be read: {error}") from error
        processor = image_processor_for(architecture, model.config)
    size = dict(processor.size or {})
    if not all(isinstance(size.get(side), int) and 0 < size[side] <= MAX_INPUT_SIDE for side in ("height", "width")):
        raise ValueError(
            f"{name_or_path}/preprocessor_config.json: size must be {{'height', 'width'}} of 1 to {MAX_INPUT_SIDE} "
            f"pixels, got {size}."
        )
    return model, processor


def check_output_directory(output_dir: str | os.PathLike, overwrite: bool, flag: str = "--output_dir") -> None:
    """Refuse, before any work, an output directory that is a file, cannot be written, or already holds files
    (unless `overwrite`: `write_checkpoint` then replaces its content)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {output_dir} is a file, not a directory.")
    existing = path if path.is_dir() else next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise ValueError(f"{flag} {output_dir}: {existing} is a file, not a directory.")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"{flag} {output_dir}: permission denied.")
    check_empty_directory(output_dir, overwrite, flag)


def check_empty_directory(directory: str | os.PathLike, overwrite: bool, flag: str) -> None:
    """Refuse a `directory` that already holds files, unless `overwrite`: a command never writes over another run's
    output unasked."""
    path = Path(directory)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        names = sorted(entry.name for entry in path.iterdir())
        raise ValueError(
            f"{flag} {directory} is not empty (it holds {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}): "
            "pass --overwrite_output_dir to replace it, or choose another directory."
        )


CHECKPOINT_ENTRIES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
    "README.md",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "eval_results.json",
    "plots",
    "examples",
)
"""The entries a checkpoint written by the toolkit may hold besides its remote-code modules (named in `config.json`)
and weight shards: what `write_checkpoint` may remove when it replaces a previous checkpoint."""

STAGING_PREFIX = ".hsvlt-writing-"


def previous_checkpoint_entries(output_dir: Path) -> set[str]:
    """The entries of `output_dir` that a previous toolkit checkpoint wrote: the fixed names, the weight shards and
    the remote-code modules its `config.json` refers to. Any other file (the user's) is not one of them."""
    names = {entry.name for entry in output_dir.iterdir()}
    entries = {
        name for name in names if name in CHECKPOINT_ENTRIES or re.fullmatch(r"model-\d+-of-\d+\.safetensors", name)
    }
    try:
        config = json.loads((output_dir / "config.json").read_text())
        pipelines = {task: entry["impl"] for task, entry in (config.get("custom_pipelines") or {}).items()}
        entries.update(
            name for name in remote_code_files({**(config.get("auto_map") or {}), **pipelines}) if name in names
        )
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        pass  # no readable config of a previous checkpoint: no remote code of its to remove
    return entries


def remove_entry(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def write_checkpoint(
    model: PreTrainedModel,
    image_processor: MultiLabelImageProcessor,
    output_dir: str | os.PathLike,
    write_extras: Callable[[Path], None] | None = None,
    keep: Collection[str] = (),
    **card_kwargs,
) -> Path:
    """
    Write a complete remote-code checkpoint (weights, config, remote code, image processor, model card) to
    `output_dir` atomically: everything is written to a temporary directory inside `output_dir` (so in its own
    filesystem, even when it is a mounted volume) first, then moved into place. The entries of a previous checkpoint
    that the new one does not write are removed (see `previous_checkpoint_entries`); every other entry of
    `output_dir` (a training run's `checkpoint-*` directories and record, the user's files) is left alone.
    `write_extras(directory)` adds files of the caller's (results, examples, plots) to the staged checkpoint; entries
    named in `keep` are left as they are when the new checkpoint does not write them (`hsvlt-calibrate` keeps a
    trained checkpoint's results, examples and plots). On failure `output_dir` is untouched.
    """
    output_dir = Path(output_dir)
    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output_dir))
    try:
        prepare_for_push(model, image_processor, staging, **card_kwargs)
        if write_extras is not None:
            write_extras(staging)
        written = {entry.name for entry in staging.iterdir()}
        for name in sorted(previous_checkpoint_entries(output_dir) - written - set(keep)):
            remove_entry(output_dir / name)
        for entry in staging.iterdir():
            target = output_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(output_dir.iterdir()):
            output_dir.rmdir()
    return output_dir
