"""Running a trained HSVLT checkpoint: loading it safely, predicting, evaluating a dataset split, attention heatmaps."""

import glob
import os
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import torch
from datasets import Dataset
from datasets import Image as ImageFeature
from tqdm.auto import tqdm
from transformers import PreTrainedConfig

from .data import get_class_names, multi_hot
from .image_processing_hsvlt import HSVLTImageProcessor
from .images import ImageLoadError, load_image
from .metrics import multilabel_metrics, sigmoid
from .modeling_hsvlt import HSVLTForMultiLabelClassification


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_checkpoint(
    name_or_path: str, device: torch.device | str | None = None
) -> tuple[HSVLTForMultiLabelClassification, HSVLTImageProcessor]:
    """
    Load an HSVLT checkpoint (a directory or Hub id) and its image processor, in eval mode on `device`.

    Weights are read from safetensors only and the model classes are this package's (no remote code runs). A checkpoint
    of another architecture is refused with its `model_type`; a checkpoint without `preprocessor_config.json` gets the
    authors' preprocessing at the model's `image_size`.
    """
    config_dict, _ = PreTrainedConfig.get_config_dict(name_or_path)
    if not config_dict:  # a local directory without config.json
        raise ValueError(f"{name_or_path} has no config.json: it is not a model checkpoint directory.")
    model_type = config_dict.get("model_type")
    if model_type != "hsvlt":
        raise ValueError(f"{name_or_path} is a checkpoint of model_type {model_type!r}, not an HSVLT checkpoint ('hsvlt').")
    model = load_pretrained_weights(name_or_path)
    model.to(device or default_device()).eval()
    try:
        processor = HSVLTImageProcessor.from_pretrained(name_or_path)
    except OSError:
        size = model.config.image_size
        processor = HSVLTImageProcessor(size={"height": size, "width": size})
    return model, processor


PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def _refuse_pickle_only_directory(path: str) -> None:
    """Say why a local checkpoint with pickled weights but no safetensors is not loaded."""
    if not os.path.isdir(path) or any(name.endswith(".safetensors") for name in os.listdir(path)):
        return
    pickles = [name for name in PICKLE_WEIGHT_FILES if os.path.isfile(os.path.join(path, name))]
    if pickles:
        raise ValueError(
            f"{path} holds its weights only as {pickles[0]}, a pickle, and no model.safetensors: weights are loaded "
            "from safetensors only, because unpickling a file can run arbitrary code. If you trust the file, convert "
            "it once with HSVLTForMultiLabelClassification.from_pretrained(path, use_safetensors=False)"
            ".save_pretrained(path)."
        )


def load_pretrained_weights(name_or_path: str) -> HSVLTForMultiLabelClassification:
    """`HSVLTForMultiLabelClassification.from_pretrained` from safetensors only, with a `ValueError` naming the
    checkpoint when it holds only pickled weights or when its weights do not fit its `config.json` (e.g. a head or
    label embeddings for another number of labels than `id2label`)."""
    _refuse_pickle_only_directory(name_or_path)
    try:
        return HSVLTForMultiLabelClassification.from_pretrained(name_or_path, use_safetensors=True)
    except RuntimeError as error:
        if "mismatched_sizes" not in str(error) and "size mismatch" not in str(error):
            raise
        raise ValueError(
            f"{name_or_path}: the weights do not fit config.json (the load report above lists the tensors whose "
            f"shape differs, e.g. a head for another number of labels than config.id2label): {error}"
        ) from error


def load_dataset_image(encoded: dict) -> PIL.Image.Image:
    """Load an undecoded `datasets.Image` value (`{"bytes", "path"}`) with `load_image`. Embedded bytes win over the
    path, as in `datasets` (Hub datasets keep only a file name beside the bytes); errors name the path if any."""
    data, path = encoded.get("bytes"), encoded.get("path")
    if data is None:
        return load_image(path)
    try:
        return load_image(data)
    except ImageLoadError as error:
        if not path:
            raise
        raise ImageLoadError(f"{path}: {error}") from error


def expand_image_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """Expand globs in image arguments (URLs are kept). Returns `(sources, errors)`; a glob that matches nothing is an
    error naming it."""
    sources, errors = [], []
    for argument in arguments:
        if argument.startswith(("http://", "https://")) or not glob.has_magic(argument):
            sources.append(argument)
            continue
        matches = sorted(glob.glob(argument, recursive=True))
        sources.extend(matches)
        if not matches:
            errors.append(f"{argument}: no file matches this pattern")
    return sources, errors


@dataclass
class Prediction:
    """The predicted labels of one image: `[{"label", "score", "index"}]` by decreasing score, and optionally the
    attention heatmap of each predicted label `(height, width)` over the feature map of the chosen stage."""

    source: str
    labels: list[dict]
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def predict(
    model: HSVLTForMultiLabelClassification,
    processor: HSVLTImageProcessor,
    images: list[PIL.Image.Image],
    sources: list[str],
    threshold: float | None = 0.5,
    top_k: int | None = None,
    with_heatmaps: bool = False,
    heatmap_stage: int = -1,
) -> list[Prediction]:
    """Predict the labels of a batch of images, with the IVLA attention of each predicted label if asked: the map of
    the last block of stage `heatmap_stage` (default the last stage, as the authors; earlier stages give finer maps),
    averaged over heads."""
    num_stages = len(model.config.depths)
    if not -num_stages <= heatmap_stage < num_stages:
        raise ValueError(f"heatmap_stage must be a stage index in [{-num_stages}, {num_stages - 1}], got {heatmap_stage}.")
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
    outputs = model(pixel_values, output_attentions=with_heatmaps, output_hidden_states=with_heatmaps)
    labels = processor.post_process_multi_label(outputs.logits.float().cpu(), threshold, top_k, model.config.id2label)
    predictions = [Prediction(source, image_labels) for source, image_labels in zip(sources, labels)]
    if with_heatmaps:
        stage = heatmap_stage % num_stages
        height, width = outputs.hidden_states[stage + 1].shape[-2:]
        last_block = sum(model.config.depths[: stage + 1]) - 1
        attention = outputs.attentions[last_block].float().mean(dim=1).cpu().numpy()  # (B, K, H*W)
        for index, prediction in enumerate(predictions):
            for label in prediction.labels:
                prediction.heatmaps[label["label"]] = attention[index, label["index"]].reshape(height, width)
    return predictions


def _colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] `(H, W)` to a blue-green-red colour ramp `(H, W, 3)` uint8."""
    ramp = np.stack([np.clip(1.5 - np.abs(4 * values - position), 0, 1) for position in (3, 2, 1)], axis=-1)
    return (ramp * 255).astype(np.uint8)


def heatmap_overlay(image: PIL.Image.Image, heatmap: np.ndarray, alpha: float = 0.5) -> PIL.Image.Image:
    """Blend an attention map `(h, w)` (resized bilinearly and scaled to [0, 1]) over `image`, at the image's size."""
    span = heatmap.max() - heatmap.min()
    normalised = (heatmap - heatmap.min()) / span if span > 0 else np.zeros_like(heatmap)
    resized = PIL.Image.fromarray(normalised.astype(np.float32), mode="F").resize(image.size, PIL.Image.BILINEAR)
    colours = PIL.Image.fromarray(_colormap(np.clip(np.asarray(resized), 0, 1)))
    return PIL.Image.blend(image.convert("RGB"), colours, alpha)


def heatmap_filename(source: str, label: str) -> str:
    stem = os.path.splitext(os.path.basename(source.rstrip("/")))[0] or "image"
    safe_label = "".join(character if character.isalnum() or character in "-_" else "_" for character in label)
    return f"{stem}_{safe_label}.png"


@dataclass
class EvaluationResult:
    """Metrics of a split (see `multilabel_metrics`), the class names in the dataset's order, and the images skipped
    because they could not be read (`(path, reason)`)."""

    metrics: dict
    class_names: list[str]
    skipped: list[tuple[str, str]]


def _label_permutation(dataset_classes: list[str], model_classes: list[str], source: str) -> list[int]:
    """Index of each dataset class among the model's outputs."""
    missing = [name for name in dataset_classes if name not in model_classes]
    if missing:
        raise ValueError(f"{source}: the model has no output for the dataset classes {missing}; it knows {model_classes}.")
    return [model_classes.index(name) for name in dataset_classes]


@torch.no_grad()
def evaluate_split(
    model: HSVLTForMultiLabelClassification,
    processor: HSVLTImageProcessor,
    dataset: Dataset,
    batch_size: int = 16,
    skip_bad_images: bool = False,
    threshold: float = 0.5,
    top_k: int = 3,
    show_progress: bool = True,
) -> EvaluationResult:
    """
    Evaluate a split in the common multi-label schema. Classes are matched to the model's labels by name. An image
    that cannot be read raises an `ImageLoadError` naming it, or with `skip_bad_images` is left out and reported.
    """
    class_names = get_class_names(dataset)
    permutation = _label_permutation(class_names, list(model.config.id2label.values()), "evaluation split")
    encoded = dataset.cast_column("image", ImageFeature(decode=False))
    all_scores, all_targets, skipped = [], [], []
    for start in tqdm(range(0, len(encoded), batch_size), desc="evaluating", disable=not show_progress):
        batch = encoded[start : start + batch_size]
        images, keep = [], []
        for position, image in enumerate(batch["image"]):
            try:
                images.append(load_dataset_image(image))
                keep.append(position)
            except ImageLoadError as error:
                if not skip_bad_images:
                    raise
                skipped.append((image.get("path") or f"example {start + position}", str(error)))
        if not images:
            continue
        pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
        logits = model(pixel_values).logits.float().cpu().numpy()[:, permutation]
        all_scores.append(sigmoid(logits))
        ignore = batch.get("ignore") or [[] for _ in batch["labels"]]
        all_targets.append(multi_hot([batch["labels"][p] for p in keep], len(class_names), [ignore[p] for p in keep]))
    if not all_scores:
        raise ValueError("No image of the evaluation split could be read.")
    metrics = multilabel_metrics(np.concatenate(all_scores), np.concatenate(all_targets), threshold=threshold, top_k=top_k)
    return EvaluationResult(metrics, class_names, skipped)
