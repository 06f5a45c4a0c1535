"""Per-label heatmaps of any registered classifier, and the pointing game that measures how well they localise.

Methods (all give one non-negative map per image and label, `(batch, num_labels, height, width)`, over the feature
map of the chosen stage):

- `gradcam`: Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391). `A` is the stage's visual feature map
  `(C, H, W)`, `G = d logit_k / d A` the gradient of label k's logit; the map is `ReLU(sum_c w_c A_c)` with
  `w_c = mean_ij G_cij`.
- `gradcam++`: Grad-CAM++ (Chattopadhyay et al., WACV 2018, arXiv:1710.11063): the channel weights are
  `w_c = sum_ij a_cij ReLU(G_cij)` with `a_cij = G^2 / (2 G^2 + sum_ij A_cij G^3)`, the closed form of the paper's
  higher-order terms for an exponential of the score.
- `gradxact`: gradient x activation, `ReLU(sum_c G_cij A_cij)`: Grad-CAM without the spatial averaging of the
  gradients, so it keeps the stage's full resolution.
- `gradxinput`: gradient x input (Shrikumar et al., arXiv:1605.01713; Ancona et al., ICLR 2018), the same product
  on the pixels, `ReLU(sum_c x_c d logit_k / d x_c)`, averaged over the cells of the stage's feature map (the patch
  of stage 0 is 4x4 pixels for HSVLT). It is the default: on the digits quick-start model its maximum falls on the
  right digit far more often than Grad-CAM's at any stage (see benchmarks/pointing_game.md).
- `attention`: the architecture's own per-label attention (`Architecture.attention_maps`; HSVLT: the IVLA
  attention of the stage's last block, averaged over heads).

`stage` is a stage index (negative from the last) or a sequence of them; several stages are combined by scaling
each map to a maximum of 1, upsampling it bilinearly to the finest of them and averaging.

The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016, arXiv:1608.00507)
counts a hit when the maximum of a label's heatmap, upsampled to the image, falls inside a box of that label.
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import GRADIENT_HEATMAP_METHODS, get_architecture


__all__ = [
    "DEFAULT_METHOD",
    "add_label_heatmaps",
    "DEFAULT_STAGE",
    "METHODS",
    "heatmap_peak",
    "label_heatmaps",
    "pointing_game",
    "upsample_heatmaps",
]

METHODS = (*GRADIENT_HEATMAP_METHODS, "attention")
METHOD_NAMES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "gradxact": "gradient x activation",
    "gradxinput": "gradient x input",
    "attention": "the model's own attention",
}
"""How figures and the demo name each method."""

DEFAULT_METHOD = "gradxinput"
DEFAULT_STAGE = 0
"""The default heatmap: gradient x input over the cells of stage 0, the method and stage that localise best in the
pointing game of benchmarks/pointing_game.md."""


def _stage_indices(stage: int | Sequence[int], num_stages: int) -> list[int]:
    stages = [stage] if isinstance(stage, int) else list(stage)
    if not stages or any(not -num_stages <= index < num_stages for index in stages):
        raise ValueError(f"stage must be stage indices in [{-num_stages}, {num_stages - 1}], got {stage}.")
    return [index % num_stages for index in stages]


def _channel_weighted_map(features: torch.Tensor, gradients: torch.Tensor, method: str) -> torch.Tensor:
    """The class activation map `(B, H, W)` of one label from the features and gradients `(B, C, H, W)`."""
    if method == "gradcam":
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        return F.relu((weights * features).sum(dim=1))
    if method == "gradcam++":
        squared = gradients.pow(2)
        denominator = 2 * squared + features.sum(dim=(2, 3), keepdim=True) * squared * gradients
        alpha = torch.where(gradients != 0, squared / denominator.where(denominator != 0, 1.0), 0.0)
        weights = (alpha * F.relu(gradients)).sum(dim=(2, 3), keepdim=True)
        return F.relu((weights * features).sum(dim=1))
    return F.relu((gradients * features).sum(dim=1))  # gradxact


def _gradient_maps(
    model: torch.nn.Module,
    pixel_values: torch.Tensor,
    label_indices: list[int],
    method: str,
    stages: list[int],
    feature_maps: Callable,
) -> list[torch.Tensor]:
    """One `(B, K, H_s, W_s)` map per stage in `stages`, from one forward pass and one backward pass per label."""
    with torch.enable_grad():
        # Pixels that require a gradient put the feature maps in the autograd graph even if the weights are frozen.
        pixels = pixel_values.detach().requires_grad_(True)
        outputs = model(pixels, output_hidden_states=True)
        stage_features = feature_maps(outputs, model.config)
        features = [stage_features[stage] for stage in stages]
        per_label = []
        for position, label in enumerate(label_indices):
            # Images of a batch are independent, so the gradient of the batch sum is each image's own gradient.
            gradients = _gradients(
                outputs.logits[:, label].sum(),
                [pixels] if method == "gradxinput" else features,
                retain_graph=position < len(label_indices) - 1,
            )
            if method == "gradxinput":
                pixel_map = F.relu((gradients[0] * pixels.detach()).float().sum(dim=1, keepdim=True))
                per_label.append([F.adaptive_avg_pool2d(pixel_map, f.shape[-2:])[:, 0] for f in features])
            else:
                per_label.append(
                    [_channel_weighted_map(f.detach().float(), g.float(), method) for f, g in zip(features, gradients)]
                )
    return [torch.stack([maps[index] for maps in per_label], dim=1) for index in range(len(stages))]


def _gradients(output: torch.Tensor, inputs: list[torch.Tensor], retain_graph: bool) -> list[torch.Tensor]:
    """`torch.autograd.grad(output, inputs)`, where an input may be a view taken after the forward pass (HSVLT returns
    its channels-last stage maps as channels-first views): such a view is not in the graph, its base is, so the
    gradient of the base is taken and viewed the same way."""
    targets = [tensor if tensor._base is None else tensor._base for tensor in inputs]
    gradients = torch.autograd.grad(output, targets, retain_graph=retain_graph)
    return [
        gradient
        if tensor._base is None
        else torch.empty_like(target)
        .copy_(gradient)
        .as_strided(tensor.shape, tensor.stride(), tensor.storage_offset() - target.storage_offset())
        for tensor, target, gradient in zip(inputs, targets, gradients)
    ]


@torch.no_grad()
def _attention_maps(
    model: torch.nn.Module, pixel_values: torch.Tensor, label_indices: list[int], stages: list[int], attention_maps
) -> list[torch.Tensor]:
    outputs = model(pixel_values, output_attentions=True, output_hidden_states=True)
    return [attention_maps(outputs, model.config, stage)[:, label_indices].float() for stage in stages]


def _combine(maps: list[torch.Tensor]) -> torch.Tensor:
    """Average maps of several stages, each scaled to a maximum of 1 and upsampled to the finest resolution."""
    if len(maps) == 1:
        return maps[0]
    size = max((m.shape[-2:] for m in maps), key=lambda shape: shape[0] * shape[1])
    scaled = [m / m.amax(dim=(2, 3), keepdim=True).clamp_min(torch.finfo(m.dtype).tiny) for m in maps]
    return torch.stack([F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in scaled]).mean(0)


def label_heatmaps(
    model: torch.nn.Module,
    pixel_values: torch.Tensor,
    label_indices: Sequence[int],
    method: str = DEFAULT_METHOD,
    stage: int | Sequence[int] = DEFAULT_STAGE,
    attention_maps: Callable | None = None,
    feature_maps: Callable | None = None,
) -> torch.Tensor:
    """
    Heatmaps of the labels `label_indices` for every image (see the module docstring for the methods).

    Args:
        model: A classifier of a registered architecture whose forward takes `pixel_values`,
            `output_hidden_states` and `output_attentions` and returns `logits` `(B, num_labels)`.
        pixel_values: The processed images `(B, 3, height, width)`.
        label_indices: The label indices to map, the same for every image.
        method: One of `METHODS`.
        stage: A stage index (negative from the last) or a sequence of them, combined.
        attention_maps, feature_maps: Functions like `Architecture.attention_maps` / `feature_maps`; default to
            those of the model's registered architecture (looked up by `model.config.model_type`), whose
            `heatmap_stages` gives the number of stages.

    Returns:
        `torch.Tensor` `(B, len(label_indices), H, W)`, float32, non-negative, at the (finest) stage's resolution.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    num_labels = model.config.num_labels
    label_indices = [int(index) for index in label_indices]
    if not label_indices or any(not 0 <= index < num_labels for index in label_indices):
        raise ValueError(f"label_indices must be label indices in [0, {num_labels - 1}], got {label_indices}.")
    architecture = get_architecture(model.config.model_type)
    attention_maps = attention_maps or architecture.attention_maps
    feature_maps = feature_maps or architecture.feature_maps
    if method == "attention" and attention_maps is None:
        raise ValueError(f"method='attention': architecture {architecture.name!r} has no attention maps.")
    if method != "attention" and feature_maps is None:
        raise ValueError(f"method={method!r}: architecture {architecture.name!r} gives no feature maps.")
    num_stages = architecture.heatmap_stages(model.config)
    stages = _stage_indices(stage, num_stages)
    if method == "attention":
        maps = _attention_maps(model, pixel_values, label_indices, stages, attention_maps)
    else:
        maps = _gradient_maps(model, pixel_values, label_indices, method, stages, feature_maps)
    return _combine(maps)


def upsample_heatmaps(heatmaps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear upsampling of `(B, K, h, w)` maps to `(B, K, height, width)` (pixel centres aligned, as PIL)."""
    return F.interpolate(heatmaps.float(), size=(height, width), mode="bilinear", align_corners=False)


def heatmap_peak(heatmap: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """`(x, y)` of the maximum of a `(height, width)` map, in pixels; when several pixels share the maximum (the flat
    borders of a bilinearly upsampled map, a map that is all zero), the centroid of those pixels."""
    heatmap = torch.as_tensor(heatmap, dtype=torch.float32)
    ys, xs = torch.nonzero(heatmap >= heatmap.max(), as_tuple=True)
    return float(xs.float().mean()), float(ys.float().mean())


def pointing_game(heatmaps: torch.Tensor, label_boxes: list[dict[int, list[list[int]]]]) -> tuple[int, int]:
    """
    Count the pointing-game hits: `heatmaps` `(B, num_labels, height, width)` are already at the image's size;
    `label_boxes[b]` maps each true label of image b to its boxes `[x0, y0, x1, y1]` (exclusive ends, pixels).
    A hit is a true label whose heatmap peak lies in one of its boxes. Returns `(hits, pairs)`.
    """
    hits = pairs = 0
    for image_maps, boxes_by_label in zip(heatmaps, label_boxes):
        for label, boxes in boxes_by_label.items():
            x, y = heatmap_peak(image_maps[label])
            pairs += 1
            # Pixel (i, j) covers [i, i + 1): a peak at a pixel centre x lies in [x0, x1) when x0 <= x < x1.
            hits += any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in boxes)
    return hits, pairs


def add_label_heatmaps(
    model: torch.nn.Module,
    pixel_values: torch.Tensor,
    predictions: Sequence,
    method: str = DEFAULT_METHOD,
    stage: int | Sequence[int] = DEFAULT_STAGE,
) -> None:
    """Set `prediction.heatmaps[name]` to the `(h, w)` numpy heatmap of every predicted label of each prediction
    (`transformers_hsvlt.inference.Prediction`s of the images `pixel_values`, in order), by `label_heatmaps`."""
    indices = sorted({label["index"] for prediction in predictions for label in prediction.labels})
    if not indices:
        return
    maps = label_heatmaps(model, pixel_values, indices, method=method, stage=stage).cpu().numpy()
    for image_maps, prediction in zip(maps, predictions):
        for label in prediction.labels:
            prediction.heatmaps[label["label"]] = image_maps[indices.index(label["index"])]
