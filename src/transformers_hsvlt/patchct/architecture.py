"""PatchCT's registry entry (reconstruction from the abstract and figure; not checked against the paper)."""

import torch

from ..configuration_patchct import PatchCTConfig
from ..data.augmentation import TrainAugmentation
from ..modeling_patchct import PatchCTForMultiLabelClassification, PatchCTModel
from ..registry import Architecture, Paper, Preset
from ..weights.clip import (
    CLIP_IMAGE_PROCESSOR_DEFAULTS,
    DEFAULT_BACKBONE,
    TINY_PROMPT_TEMPLATE,
    TINY_TEXT_CONFIG,
    TINY_VISION_CONFIG,
    clip_classifier_builder,
    describe_clip_towers,
    patch_token_map,
)


PAPER_RECIPE = {
    "learning_rate": 1e-4,
    "weight_decay": 1e-4,
    "per_device_train_batch_size": 32,
    "num_train_epochs": 20,
    "warmup_steps": 0.05,
}
"""The paper-size recipe (reconstructed): AdamW, lr 1e-4 (the image tower at 0.1x through `lr_multipliers`, the text
tower frozen), weight decay 1e-4, batch 32, 5% linear warm-up then cosine decay over 20 epochs, 448-px input."""


def attention_maps(outputs, config: PatchCTConfig, stage: int) -> torch.Tensor:
    """The backward navigator pi(n | k) of CT layer `stage` (an index into `config.ct_layers`),
    `(batch, num_labels, h, w)`."""
    return outputs.attentions[stage]


def feature_maps(outputs, config: PatchCTConfig) -> tuple[torch.Tensor, ...]:
    """The image tower's patch tokens at every CT layer, `(batch, vision hidden_size, h, w)` each."""
    return tuple(patch_token_map(outputs.hidden_states[layer]) for layer in config.ct_layers)


def describe(config: PatchCTConfig) -> list[tuple[str, object]]:
    """The rows of the model card's architecture table."""
    return [
        *describe_clip_towers(config),
        (
            "Conditional transport",
            f"image layers {config.ct_layers}, beta {config.ct_beta}, tau {config.ct_temperature}, weight {config.ct_weight}",
        ),
        ("Adaptive layer", f"alpha {config.adapter_ratio}, reduction {config.adapter_reduction}"),
    ]


ARCHITECTURE = Architecture(
    name="patchct",
    config_class=PatchCTConfig,
    base_model_class=PatchCTModel,
    model_class=PatchCTForMultiLabelClassification,
    presets={
        "patchct": Preset(
            config={"image_size": 448}, recipe=PAPER_RECIPE, lr_schedule="cosine", backbone=DEFAULT_BACKBONE
        ),
        "tiny": Preset(
            config={
                "vision_config": TINY_VISION_CONFIG,
                "text_config": TINY_TEXT_CONFIG,
                "projection_dim": 32,
                "image_size": 64,
                "initializer_range": 0.2,
                "prompt_template": TINY_PROMPT_TEMPLATE,
            },
            recipe={
                "learning_rate": 2e-3,
                "weight_decay": 1e-4,
                "per_device_train_batch_size": 32,
                "num_train_epochs": 20,
                "warmup_steps": 0.05,
            },
            lr_schedule="cosine",
        ),
    },
    build=clip_classifier_builder(PatchCTForMultiLabelClassification),
    paper=Paper(
        title="PatchCT: Aligning Patch Set and Label Set with Conditional Transport for Multi-Label Image Classification",
        url="https://arxiv.org/abs/2307.09066",
        bibtex="""@inproceedings{li2023patchct,
  title     = {PatchCT: Aligning Patch Set and Label Set with Conditional Transport for Multi-Label Image
               Classification},
  author    = {Li, Miaoge and Wang, Dongsheng and Liu, Xinyang and Zeng, Zequn and Lu, Ruiying and Chen, Bo and
               Zhou, Mingyuan},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {15348--15358},
  year      = {2023}
}""",
        summary=(
            "PatchCT views an image as a set of patch embeddings and its labels as a set of label embeddings (CLIP's "
            "image and text towers, prompts 'A photo of a {}.') and aligns the two sets with a bidirectional "
            "conditional-transport cost, used as a regulariser of cosine-similarity classification from the adapted "
            "[CLS] embedding; the backward transport plan is a per-label heatmap. Any label names work at inference. "
            "The authors released no code: reconstruction from the abstract and figure; not checked against the paper."
        ),
        reconstruction=True,
    ),
    image_processor_defaults=CLIP_IMAGE_PROCESSOR_DEFAULTS,
    default_preset="patchct",
    small_preset="tiny",
    label_inputs=("names",),
    relabelling="class_names",
    augmentation=TrainAugmentation,
    lr_multipliers={"patchct.towers.vision_model.": 0.1, "patchct.towers.visual_projection.": 0.1},
    describe=describe,
    attention_maps=attention_maps,
    feature_maps=feature_maps,
    # the feature maps are patch tokens reshaped after the forward, outside the logits' graph: the gradient methods
    # over them cannot run; gradient x input (on the pixels) only takes their grid
    heatmap_methods=("gradxinput", "attention"),
    heatmap_stages=lambda config: len(config.ct_layers),
    onnx_export=True,
)
