"""PVLR's registry entry (reconstruction from the abstract and figure; not checked against the paper)."""

import torch

from ..configuration_pvlr import PVLRConfig
from ..data.augmentation import TrainAugmentation
from ..modeling_pvlr import PVLRForMultiLabelClassification, PVLRModel
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
tower frozen but the context vectors trained), weight decay 1e-4, batch 32, 5% linear warm-up then cosine decay over
20 epochs, 448-px input; the paper's augmentation is a flip and RandAugment."""


def attention_maps(outputs, config: PVLRConfig, stage: int) -> torch.Tensor:
    """The attention of the labels over the visual tokens in the last DMA layer, averaged over the heads,
    `(batch, num_labels, h, w)` (one stage)."""
    return outputs.attentions[-1].mean(dim=1)


def feature_maps(outputs, config: PVLRConfig) -> tuple[torch.Tensor, ...]:
    """The image tower's last patch tokens, `(batch, vision hidden_size, h, w)` (one stage)."""
    return (patch_token_map(outputs.hidden_states[-1]),)


def describe(config: PVLRConfig) -> list[tuple[str, object]]:
    """The rows of the model card's architecture table."""
    return [
        *describe_clip_towers(config),
        ("Context-aware prompt", f"{config.num_context_tokens} learnable context vectors shared by all labels"),
        ("Dual-Modal Attention", f"{config.num_dma_layers} layers, {config.num_attention_heads} heads"),
    ]


ARCHITECTURE = Architecture(
    name="pvlr",
    config_class=PVLRConfig,
    base_model_class=PVLRModel,
    model_class=PVLRForMultiLabelClassification,
    presets={
        "pvlr": Preset(
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
                "num_context_tokens": 4,
                "num_attention_heads": 4,
                "fusion_intermediate_size": 64,
            },
            recipe={
                "learning_rate": 2e-3,
                "weight_decay": 1e-4,
                "per_device_train_batch_size": 32,
                "num_train_epochs": 15,
                "warmup_steps": 0.05,
            },
            lr_schedule="cosine",
        ),
    },
    build=clip_classifier_builder(PVLRForMultiLabelClassification),
    paper=Paper(
        title="PVLR: Prompt-driven Visual-Linguistic Representation Learning for Multi-Label Image Recognition",
        url="https://arxiv.org/abs/2401.17881",
        bibtex="""@article{tan2024pvlr,
  title   = {PVLR: Prompt-driven Visual-Linguistic Representation Learning for Multi-Label Image Recognition},
  author  = {Tan, Hao and Tan, Zichang and Li, Jun and Wan, Jun and Lei, Zhen},
  journal = {arXiv preprint arXiv:2401.17881},
  year    = {2024}
}""",
        summary=(
            "PVLR builds label representations from fixed knowledge-aware prompts and learnable context-aware prompts "
            "through CLIP's text tower, fuses them, and lets labels and visual tokens attend to each other in both "
            "directions (Dual-Modal Attention); predictions are similarities between each label and the visual tokens "
            "pooled for it, with no static classifier, so any label names work at inference. The authors released no "
            "code: reconstruction from the abstract and figure; not checked against the paper."
        ),
        reconstruction=True,
    ),
    image_processor_defaults=CLIP_IMAGE_PROCESSOR_DEFAULTS,
    default_preset="pvlr",
    small_preset="tiny",
    label_inputs=("names",),
    relabelling="class_names",
    augmentation=TrainAugmentation,
    lr_multipliers={"pvlr.towers.vision_model.": 0.1, "pvlr.towers.visual_projection.": 0.1},
    describe=describe,
    attention_maps=attention_maps,
    feature_maps=feature_maps,
    # the feature maps are patch tokens reshaped after the forward, outside the logits' graph: the gradient methods
    # over them cannot run; gradient x input (on the pixels) only takes their grid
    heatmap_methods=("gradxinput", "attention"),
    heatmap_stages=lambda config: 1,
    onnx_export=True,
)
