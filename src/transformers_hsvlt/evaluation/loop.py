"""The one evaluation loop: a model's scores on a dataset split, used by `hsvlt-eval` and by training's final
evaluation alike, so both report the same numbers for the same model and split."""

from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from datasets import Image as ImageFeature
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..data import chance_level_map, get_class_names, multi_hot
from ..image_processing_multilabel import MultiLabelImageProcessor
from ..images import ImageLoadError, load_dataset_image
from ..registry import get_architecture
from .metrics import multilabel_metrics, seen_and_unseen_map, sigmoid


@dataclass
class EvaluationResult:
    """Metrics of a split (see `multilabel_metrics`), the class names in the dataset's order, the sigmoid scores and
    1/0/-1 targets `(num_images, num_classes)` of the images read, and the images skipped because they could not be
    read (`(path, reason)`)."""

    metrics: dict
    class_names: list[str]
    scores: np.ndarray
    targets: np.ndarray
    skipped: list[tuple[str, str]]


def _label_permutation(dataset_classes: list[str], model_classes: list[str], source: str) -> list[int]:
    """Index of each dataset class among the model's outputs."""
    missing = [name for name in dataset_classes if name not in model_classes]
    if missing:
        raise ValueError(
            f"{source}: the model has no output for the dataset classes {missing}; it knows {model_classes}."
        )
    return [model_classes.index(name) for name in dataset_classes]


class DecodedBatch:
    """Collates rows of an undecoded split into a model batch, in a data-loader worker: images decoded with the
    package's loader and resized by the processor; unreadable images raise, or with `skip_bad_images` are reported
    in `skipped`. Module-level and picklable for worker processes."""

    def __init__(self, processor: MultiLabelImageProcessor, num_classes: int, skip_bad_images: bool):
        self.processor = processor
        self.num_classes = num_classes
        self.skip_bad_images = skip_bad_images

    def __call__(self, rows: list[dict]) -> dict:
        images, kept, skipped = [], [], []
        for row in rows:
            try:
                images.append(load_dataset_image(row["image"]))
                kept.append(row)
            except ImageLoadError as error:
                if not self.skip_bad_images:
                    raise
                skipped.append((row["image"].get("path") or "an embedded image", str(error)))
        pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"] if images else None
        labels = [row["labels"] for row in kept]
        ignore = [row.get("ignore") or [] for row in kept]
        return {
            "pixel_values": pixel_values,
            "targets": multi_hot(labels, self.num_classes, ignore),
            "skipped": skipped,
        }


@torch.no_grad()
def evaluate_split(
    model: PreTrainedModel,
    processor: MultiLabelImageProcessor,
    dataset: Dataset,
    batch_size: int = 16,
    skip_bad_images: bool = False,
    threshold: float = 0.5,
    top_k: int = 3,
    show_progress: bool = True,
    num_workers: int = 0,
) -> EvaluationResult:
    """
    Evaluate a split in the common multi-label schema. Classes are matched to the model's labels by name. Images are
    decoded and resized by `num_workers` data-loader processes (0: in this process) while the model runs on its
    device. An image that cannot be read raises an `ImageLoadError` naming it, or with `skip_bad_images` is left out
    and reported.
    """
    class_names = get_class_names(dataset)
    permutation = _label_permutation(class_names, list(model.config.id2label.values()), "evaluation split")
    was_training = model.training
    model.eval()
    batches = DataLoader(
        dataset.cast_column("image", ImageFeature(decode=False)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=DecodedBatch(processor, len(class_names), skip_bad_images),
        pin_memory=model.device.type == "cuda",
    )
    all_scores, all_targets, skipped = [], [], []
    for batch in tqdm(batches, desc="evaluating", disable=not show_progress):
        skipped += batch["skipped"]
        if batch["pixel_values"] is None:
            continue
        pixel_values = batch["pixel_values"].to(model.device, model.dtype, non_blocking=True)
        logits = model(pixel_values=pixel_values).logits.float().cpu().numpy()[:, permutation]
        all_scores.append(sigmoid(logits))
        all_targets.append(batch["targets"])
    model.train(was_training)
    if not all_scores:
        raise ValueError("No image of the evaluation split could be read.")
    scores, targets = np.concatenate(all_scores), np.concatenate(all_targets)
    metrics = multilabel_metrics(scores, targets, threshold=threshold, top_k=top_k)
    return EvaluationResult(metrics, class_names, scores, targets, skipped)


def evaluate_all_classes(
    model: PreTrainedModel, processor: MultiLabelImageProcessor, dataset: Dataset, **evaluate_kwargs
) -> tuple[EvaluationResult, dict[str, float]]:
    """
    `evaluate_split` on every class of the split. An open-vocabulary model (its architecture's
    `relabelling="class_names"`) whose labels are not the split's scores the split's classes for this evaluation (then
    gets its own labels and calibrated thresholds back), and the mAP
    of the labels it was trained on and of the others is reported apart (`mAP_seen`, `mAP_unseen`: the protocol of
    NUS-WIDE's 925 seen / 81 unseen labels). The extra numbers returned beside the result hold these and the split's
    chance-level mAP (`chance_mAP`).
    """
    trained_names = list(model.config.id2label.values())
    class_names = get_class_names(dataset)
    relabel = get_architecture(model.config.model_type).open_vocabulary and class_names != trained_names
    trained_thresholds = model.config.label_thresholds
    if relabel:
        model.set_class_names(class_names, model.class_name_tokenizer)
    try:
        result = evaluate_split(model, processor, dataset, **evaluate_kwargs)
    finally:
        if relabel:
            model.set_class_names(trained_names, model.class_name_tokenizer)
            model.config.label_thresholds = trained_thresholds
    unseen = set(class_names) - set(trained_names)
    extras = {"chance_mAP": chance_level_map(dataset) if (result.targets == 1).any() else None}  # None: no positive
    return result, {**extras, **(seen_and_unseen_map(result, trained_names) if relabel and unseen else {})}
