"""MSRN's entry in the architecture registry (`transformers_hsvlt.msrn.architecture:ARCHITECTURE`): presets and
recipes, model building, conversion of the authors' checkpoints, heatmaps, paper."""

import torch

from ..configuration_msrn import MSRNConfig
from ..modeling_msrn import NUM_LEVELS, MSRNForMultiLabelClassification, MSRNModel
from ..registry import Architecture, LabelSide, Paper, Preset
from .augmentation import MultiScaleCropAugmentation
from .conversion import IMAGE_PROCESSOR_DEFAULTS, convert_msrn_checkpoint, load_resnet_weights, resnet_config_values


AUTHORS_SGD = dict(
    optim="sgd",
    optim_args="momentum=0.9",
    learning_rate=0.1,
    weight_decay=1e-4,
    max_grad_norm=0.0,
    per_device_train_batch_size=16,
)
"""The authors' optimiser, shared by both presets: SGD with momentum 0.9, lr 0.1, weight decay 1e-4, batch 16, no
gradient clipping."""

PRESETS = {
    "msrn": Preset(
        config={},
        recipe=dict(
            **AUTHORS_SGD,
            per_device_eval_batch_size=16,
            num_train_epochs=50,
            dataloader_num_workers=4,
        ),
        lr_schedule="multistep",
        lr_milestones=(30,),
        lr_gamma=0.1,
        backbone="microsoft/resnet-101",
    ),
    "tiny": Preset(
        config=dict(
            backbone_config={
                "model_type": "resnet",
                "embedding_size": 16,
                "hidden_sizes": [16, 32, 64, 128],
                "depths": [1, 1, 1, 1],
            },
            label_projection_size=32,
            graph_hidden_size=48,
            semantic_size=64,
            head_hidden_size=256,
            pool_ratio=0.2,
            image_size=64,
        ),
        recipe=dict(
            **AUTHORS_SGD,
            per_device_eval_batch_size=64,
            num_train_epochs=10,
            dataloader_num_workers=0,
        ),
        lr_schedule="multistep",
        lr_milestones=(8,),
        lr_gamma=0.1,
    ),
}
"""`msrn` is the paper's model (the `MSRNConfig` defaults: ResNet-101, 448x448, 300-d label vectors, K = int(0.05 C)
groups) with the authors' recipe: SGD (momentum 0.9), learning rate 0.1 with the ResNet and its buffer convolutions at
0.1x (`lr_multipliers`), weight decay 1e-4, batch 16, learning rate x0.1 after epoch 30, no gradient clipping (the
authors' clipping runs before `backward` and has no effect). The authors' loop runs 200 epochs and keeps the best test
mAP; 50 epochs (20 after the drop) is this recipe's default budget.

`tiny` (0.67 M parameters for 10 labels: a 4-stage ResNet of widths 16-128, 64x64 input, semantic width 64, K =
int(0.2 C) groups) with the same optimiser, 10 epochs, x0.1 after epoch 8: on the embedded digits (4,000 training
canvases, 300-d random label vectors) it reached 95.7 test mAP (chance 28.2) in 5.5 minutes of training on one CPU
thread; with 2,000 canvases (half the steps) 75.7."""

LR_MULTIPLIERS = {"msrn.backbone.": 0.1, "msrn.level_buffers.": 0.1}
"""The authors' `get_config_optim`: every parameter of their `resnet_101` module (the ResNet and its buffer
convolutions) at 0.1x the learning rate."""

BIBTEX = """@article{qu2023msrn,
  title         = {Multi-layered Semantic Representation Network for Multi-label Image Classification},
  author        = {Qu, Xiwen and Che, Hao and Huang, Jun and Xu, Linchuan and Zheng, Xiao},
  journal       = {International Journal of Machine Learning and Cybernetics},
  year          = {2023},
  eprint        = {2106.11596},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV}
}"""


def build(config_values: dict, label_side: LabelSide, backbone=None) -> MSRNForMultiLabelClassification:
    """A new MSRN classifier for the label side (label-name vectors and training-split label statistics); with
    `backbone` (a transformers ResNet Hub id or directory, or a torchvision-layout `.pth`), the ResNet's weights are
    loaded, and for a transformers ResNet its architecture replaces the preset's."""
    if label_side.embeddings is None or label_side.cooccurrence is None:
        raise ValueError("MSRN needs label-name embeddings and the label co-occurrence of the training split.")
    values = dict(config_values)
    if backbone and (backbone_values := resnet_config_values(backbone)) is not None:
        values["backbone_config"] = backbone_values
    config = MSRNConfig(
        id2label=dict(enumerate(label_side.names)), label_embedding_size=label_side.embeddings.shape[1], **values
    )
    model = MSRNForMultiLabelClassification(config)
    model.set_label_graph(label_side.embeddings, label_side.cooccurrence, label_side.names)
    if backbone:
        load_resnet_weights(model, backbone)
    return model


def attention_maps(outputs, config: MSRNConfig, stage: int) -> torch.Tensor:
    """Each label's semantic attention at level `stage` (0-2), averaged over channels: `(batch, num_labels, height,
    width)`."""
    return outputs.attentions[stage].float()


def feature_maps(outputs, config: MSRNConfig) -> tuple[torch.Tensor, ...]:
    """The three projected visual levels (what the semantic attention reads), `(batch, semantic_size, h, w)`."""
    return tuple(outputs.hidden_states)


def describe(config: MSRNConfig) -> list[tuple[str, object]]:
    backbone = config.backbone_config
    return [
        ("Backbone", f"ResNet, depths {backbone.depths}, widths {backbone.hidden_sizes} (levels: stages 2-4)"),
        ("Label semantics", f"{config.num_labels} labels, 2 graph attention layers to {config.semantic_size}-d"),
        ("Global semantics", f"{config.num_groups} label groups (DiffPool)"),
        (
            "Label inputs",
            f"{config.label_embedding_size}-d label-name vectors and label co-occurrence (in the checkpoint)",
        ),
        ("Head", f"MLP over {config.num_labels + config.num_groups} x {NUM_LEVELS * config.semantic_size} features"),
        ("Input", f"{config.image_size} x {config.image_size} RGB, ImageNet mean/std"),
        ("Loss", f"{config.multilabel_loss} + {config.group_loss_weight} x group loss"),
    ]


ARCHITECTURE = Architecture(
    name="msrn",
    config_class=MSRNConfig,
    base_model_class=MSRNModel,
    model_class=MSRNForMultiLabelClassification,
    presets=PRESETS,
    default_preset="msrn",
    small_preset="tiny",
    build=build,
    image_processor_defaults=IMAGE_PROCESSOR_DEFAULTS,
    label_inputs=("embeddings", "cooccurrence"),
    augmentation=MultiScaleCropAugmentation,
    lr_multipliers=LR_MULTIPLIERS,
    convert=convert_msrn_checkpoint,
    attention_maps=attention_maps,
    feature_maps=feature_maps,
    heatmap_stages=lambda config: NUM_LEVELS,
    onnx_export=True,
    describe=describe,
    paper=Paper(
        title="MSRN",
        url="https://arxiv.org/abs/2106.11596",
        bibtex=BIBTEX,
        summary=(
            "Multi-layered Semantic Representation Network (Qu et al., 2023): label-name vectors refined by graph "
            "attention over the label co-occurrence graph (local semantics) and pooled into label groups (global "
            "semantics, DiffPool); both attend, channel by channel, to three levels of a ResNet-101, and an MLP over "
            "all of them gives one logit per label (sigmoid probabilities)."
        ),
    ),
)
