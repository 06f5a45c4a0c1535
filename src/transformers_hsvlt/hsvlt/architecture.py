"""HSVLT's entry in the architecture registry: presets and recipes, model building, conversion, heatmaps, paper."""

import torch

from ..configuration_hsvlt import HSVLTConfig
from ..data.augmentation import TrainAugmentation
from ..modeling_hsvlt import HSVLTForMultiLabelClassification, HSVLTModel
from ..registry import Architecture, LabelSide, Paper, Preset
from .backbone import CONVNEXT_DEFINED_FIELDS, build_hsvlt_from_convnext
from .conversion import convert_authors_checkpoint


PRESETS = {
    "hsvlt-s": Preset(
        config={},
        recipe=dict(
            learning_rate=1e-5,
            weight_decay=1e-4,
            per_device_train_batch_size=4,
            per_device_eval_batch_size=16,
            num_train_epochs=100,
            dataloader_num_workers=4,
        ),
        lr_schedule="warmup_plateau",
        warmup_epochs=2.0,
        early_stopping_patience=4,
        backbone="facebook/convnext-small-384-22k-1k",
    ),
    "tiny": Preset(
        config=dict(depths=[1, 1, 3, 1], hidden_sizes=[48, 96, 144, 192], image_size=64, initializer_range=0.05),
        recipe=dict(
            learning_rate=1e-3,
            weight_decay=1e-4,
            per_device_train_batch_size=16,
            per_device_eval_batch_size=64,
            num_train_epochs=20,
            dataloader_num_workers=0,
        ),
        lr_schedule="warmup_plateau",
        warmup_epochs=0.5,
        early_stopping_patience=4,
    ),
}
"""`hsvlt-s` is the paper's model (the `HSVLTConfig` defaults) with the authors' MS-COCO recipe (AdamW lr 1e-5, weight
decay 1e-4, batch 4, 2 warm-up epochs, x0.1 on a validation-mAP plateau, early stopping after 4 evaluations, at most
100 epochs; seed 1, the toolkit's default); `tiny` (2.1 M parameters, 64 px) trains on 2 CPU cores in minutes."""

BIBTEX = """@inproceedings{ouyang2023hsvlt,
  title         = {{HSVLT}: Hierarchical Scale-Aware Vision-Language Transformer for Multi-Label Image Classification},
  author        = {Ouyang, Shuyi and Wang, Hongyi and Niu, Ziwei and Bai, Zhenjia and Xie, Shiao and Xu, Yingying and
                   Tong, Ruofeng and Chen, Yen-Wei and Lin, Lanfen},
  booktitle     = {Proceedings of the 31st ACM International Conference on Multimedia (MM '23)},
  year          = {2023},
  eprint        = {2407.16244},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV}
}"""


def build(config_values: dict, label_side: LabelSide, backbone: str | None) -> HSVLTForMultiLabelClassification:
    """A new HSVLT classifier for the label side; with `backbone`, the visual hierarchy is that ConvNeXt (its depths,
    widths and weights win over the preset's)."""
    if backbone:
        overrides = {key: value for key, value in config_values.items() if key not in CONVNEXT_DEFINED_FIELDS}
        return build_hsvlt_from_convnext(backbone, label_side.names, label_side.embeddings, **overrides)
    config = HSVLTConfig(
        id2label=dict(enumerate(label_side.names)),
        label_embedding_size=label_side.embeddings.shape[1],
        **config_values,
    )
    model = HSVLTForMultiLabelClassification(config)
    model.set_label_embeddings(label_side.embeddings, label_side.names)
    return model


def attention_maps(outputs, config: HSVLTConfig, stage: int) -> torch.Tensor:
    """IVLA attention of the last block of `stage`, averaged over heads: `(batch, num_labels, height, width)`."""
    height, width = outputs.hidden_states[stage + 1].shape[-2:]
    last_block = sum(config.depths[: stage + 1]) - 1
    attention = outputs.attentions[last_block].float().mean(dim=1)
    return attention.reshape(*attention.shape[:2], height, width)


def feature_maps(outputs, config: HSVLTConfig) -> tuple[torch.Tensor, ...]:
    """The visual feature map of every stage, `(batch, hidden_sizes[i], height_i, width_i)`."""
    return tuple(outputs.hidden_states[1:])


def describe(config: HSVLTConfig) -> list[tuple[str, object]]:
    return [
        (
            "Visual hierarchy",
            f"ConvNeXt, depths {config.depths}, widths {config.hidden_sizes}, patch {config.patch_size}",
        ),
        ("IVLA attention heads", config.num_attention_heads),
        ("Label embeddings", f"{config.num_labels} x {config.label_embedding_size} (stored in the checkpoint)"),
        ("Head", f"per-label linear over the {sum(config.hidden_sizes)}-d Cross-Scale Aggregation feature"),
        ("Input", f"{config.image_size} x {config.image_size} RGB in [0, 1], no mean/std normalisation"),
        ("Loss", config.multilabel_loss),
    ]


ARCHITECTURE = Architecture(
    name="hsvlt",
    config_class=HSVLTConfig,
    base_model_class=HSVLTModel,
    model_class=HSVLTForMultiLabelClassification,
    presets=PRESETS,
    default_preset="hsvlt-s",
    small_preset="tiny",
    build=build,
    label_inputs=("embeddings",),
    relabelling="label_embeddings",
    augmentation=TrainAugmentation,
    convert=convert_authors_checkpoint,
    onnx_export=True,
    attention_maps=attention_maps,
    feature_maps=feature_maps,
    heatmap_stages=lambda config: len(config.depths),
    describe=describe,
    paper=Paper(
        title="HSVLT",
        url="https://arxiv.org/abs/2407.16244",
        bibtex=BIBTEX,
        summary=(
            "Hierarchical Scale-Aware Vision-Language Transformer (ACM MM 2023): a ConvNeXt visual hierarchy in "
            "which every block is followed by Interactive Visual-Linguistic Attention from the label-name embeddings "
            "to the visual tokens, Cross-Scale Aggregation of the per-label multi-modal features of every stage, and "
            "one logit per label (sigmoid probabilities)."
        ),
    ),
)
