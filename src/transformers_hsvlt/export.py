"""ONNX export of a classifier of the family (HSVLT, MSRN, PatchCT, PVLR): `pixel_values` in, `logits` out."""

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from .registry import get_architecture


class ClassifierLogits(nn.Module):
    """The classifier's forward reduced to `pixel_values (B, C, H, W) -> logits (B, num_labels)`, with the label-side
    inputs of the model's buffers (label embeddings, label graph, tokenized class names: the exported graph holds
    them as constants)."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values).logits


def image_channels(config: PreTrainedConfig) -> int:
    """The channels of the images a family config reads: its own `num_channels`, else its image tower's
    (`vision_config` of the CLIP-based models, `backbone_config` of MSRN); 3 when none says."""
    for candidate in (config, getattr(config, "vision_config", None), getattr(config, "backbone_config", None)):
        if getattr(candidate, "num_channels", None):
            return candidate.num_channels
    return 3


def export_onnx(
    model: PreTrainedModel,
    output_path: str | Path,
    image_size: int | None = None,
    batch_size: int = 1,
    dynamic_batch: bool = True,
    opset: int | None = None,
) -> Path:
    """
    Export the classifier to ONNX with `torch.onnx.export(..., dynamo=True)`: one input `pixel_values` (float32,
    `(batch_size, num_channels, image_size, image_size)`, preprocessed as for the PyTorch model) and one output
    `logits` (`(batch_size, num_labels)`; apply a sigmoid for probabilities). The graph is traced in eval mode,
    without gradients, on the model's device and dtype; the weights and label-side buffers are stored in the file
    (about 390 MB for HSVLT-S). HSVLT's graph computes IVLA in its inference form (see `HSVLTWeightProducts`), and
    the text tower of PatchCT and PVLR runs on the stored class names: operations on weights and buffers alone,
    which ONNX Runtime folds into constants when it creates a session (its default graph optimisations), so they
    cost nothing per image.

    Args:
        model: The classifier to export; left in the train/eval mode it was in.
        output_path: Where to write the `.onnx` file (parent directories are created).
        image_size: Height and width of the exported input; defaults to `model.config.image_size`.
        batch_size: The batch size of the exported input when `dynamic_batch=False`; with `dynamic_batch=True` it
            is only the batch traced (at least 2, as a batch of 1 would be specialised).
        dynamic_batch: Whether the batch dimension is symbolic (`batch_size`) in the ONNX graph.
        opset: ONNX opset version; `None` lets `torch.onnx` pick its default.

    Returns:
        The path of the written file.
    """
    architecture = get_architecture(model.config.model_type)
    architecture.refuse_unless(
        architecture.onnx_export, "export_onnx", "models declare no ONNX export (Architecture.onnx_export)."
    )
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    image_size = image_size or model.config.image_size
    traced_batch = max(batch_size, 2) if dynamic_batch else batch_size
    parameter = next(model.parameters())
    pixel_values = torch.rand(
        traced_batch,
        image_channels(model.config),
        image_size,
        image_size,
        device=parameter.device,
        dtype=parameter.dtype,
    )
    dynamic_shapes = {"pixel_values": {0: torch.export.Dim("batch_size")}} if dynamic_batch else None
    was_training = model.training
    try:
        with torch.no_grad():
            torch.onnx.export(
                ClassifierLogits(model).eval(),
                (pixel_values,),
                output_path,
                input_names=["pixel_values"],
                output_names=["logits"],
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
                dynamic_shapes=dynamic_shapes,
            )
    finally:
        model.train(was_training)
    return output_path


__all__ = ["export_onnx"]
