"""Predicting with a family checkpoint: labels and scores of images, with a heatmap per predicted label."""

from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import torch
from transformers import PreTrainedModel

from .image_processing_multilabel import MultiLabelImageProcessor
from .visualization.gradcam import DEFAULT_STAGE, add_label_heatmaps


@dataclass
class Prediction:
    """The predicted labels of one image: `[{"label", "score", "index"}]` by decreasing score, and optionally the
    heatmap of each predicted label `(height, width)` (see `transformers_hsvlt.visualization.gradcam`)."""

    source: str
    labels: list[dict]
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)


def predict(
    model: PreTrainedModel,
    processor: MultiLabelImageProcessor,
    images: list[PIL.Image.Image],
    sources: list[str],
    threshold: float | str | None = "auto",
    top_k: int | None = None,
    heatmap_method: str | None = None,
    heatmap_stage: int = DEFAULT_STAGE,
) -> list[Prediction]:
    """Predict the labels of a batch of images (`threshold` as `post_process_multi_label` takes it: `"auto"` is the
    checkpoint's calibrated thresholds, else 0.5); with `heatmap_method` (`gradxinput`, the default of the commands,
    `attention` for the architecture's own maps, `gradcam`, ...), also the heatmap of each predicted label at stage
    `heatmap_stage`."""
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    labels = processor.post_process_multi_label(logits.float().cpu(), threshold, top_k, config=model.config)
    predictions = [Prediction(source, image_labels) for source, image_labels in zip(sources, labels)]
    if heatmap_method is not None:
        add_label_heatmaps(model, pixel_values, predictions, method=heatmap_method, stage=heatmap_stage)
    return predictions
