"""MSRN model configuration."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_family import FamilyConfigMixin


RESNET_101 = {
    "embedding_size": 64,
    "hidden_sizes": [256, 512, 1024, 2048],
    "depths": [3, 4, 23, 3],
    "layer_type": "bottleneck",
    "hidden_act": "relu",
    "downsample_in_first_stage": False,
    "downsample_in_bottleneck": False,
}
"""`ResNetConfig` values of torchvision's ResNet-101 (v1.5: the stride of a downsampling bottleneck is in its 3x3
convolution, which transformers' ResNet does with `downsample_in_bottleneck=False`)."""


@strict
class MSRNConfig(FamilyConfigMixin, PreTrainedConfig):
    r"""
    Configuration of an MSRN model (Multi-layered Semantic Representation Network, Qu et al., arXiv 2106.11596). The
    defaults build the paper's model: a ResNet-101 whose layer2, layer3 and layer4 outputs are tapped (1x1 "buffer"
    convolutions on the first two, 2x2 max-pooling on all three), label-name vectors refined by two graph attention
    layers over the label co-occurrence graph (local semantics), one DiffPool layer grouping the labels into
    `num_groups` global semantics, a per-channel semantic attention of every label and group over every tapped level,
    and a two-layer head over all of them.

    Args:
        backbone_config (`dict` or [`ResNetConfig`], *optional*):
            The ResNet. Defaults to ResNet-101 v1.5 (`RESNET_101`). It must have four stages; stages 2, 3 and 4
            (torchvision's layer2, layer3, layer4) are the three semantic levels.
        label_embedding_size (`int`, *optional*, defaults to 300):
            Width of the label-name vectors (300 for the authors' GloVe vectors; any width works).
        label_projection_size (`int`, *optional*, defaults to 256):
            Output width of `fc_label`, the linear map applied to the label-name vectors.
        graph_hidden_size (`int`, *optional*, defaults to 300):
            Output width of the first graph attention layer.
        semantic_size (`int`, *optional*, defaults to 512):
            Width of the label and group semantics and of the three projected visual levels (the per-channel
            attention multiplies them element-wise).
        pool_ratio (`float`, *optional*, defaults to 0.05):
            The authors' group-count rule: `num_groups = max(1, int(pool_ratio * num_labels))` when `num_groups` is
            not given (0.05 for COCO and NUS-WIDE, 0.2 for VOC: 4 groups each).
        num_groups (`int`, *optional*):
            Number of label groups K of the DiffPool layer (the global semantics). Computed from `pool_ratio` when
            `None` and stored, so that a saved checkpoint keeps its head size.
        adjacency_threshold (`float`, *optional*, defaults to 0.4):
            `t`: a conditional probability `P(j | i)` of at least `t` makes an edge i -> j.
        adjacency_reweight (`float`, *optional*, defaults to 0.25):
            `p`: the weight shared by the neighbours of a label in the adjacency (its own weight being 1).
        graph_negative_slope (`float`, *optional*, defaults to 0.2):
            LeakyReLU slope of the graph attention scores.
        graph_init_gain (`float`, *optional*, defaults to 1.414):
            Xavier-uniform gain of the graph attention weights.
        head_hidden_size (`int`, *optional*, defaults to 2048):
            Width of `fc1`, the hidden layer of the head.
        head_negative_slope (`float`, *optional*, defaults to 0.01):
            LeakyReLU slope after `fc1`.
        attention_label_chunk_size (`int`, *optional*, defaults to 16):
            The per-channel attention of a level holds `(batch, height*width, labels, semantic_size)` values (128 MB
            per image at level 1 for 80 labels at 448x448). It is computed for this many labels at a time (exact), and
            when training each chunk is recomputed in the backward pass instead of being kept. `None` computes all
            labels at once, as the authors.
        group_loss_weight (`float`, *optional*, defaults to 1e-4):
            Weight of the group loss `sum_i ||E_i - G[argmax_k S_ik]||_2` added to the classification loss.
        multilabel_loss (`str`, *optional*, defaults to `"bce"`):
            Classification loss: `"bce"` (the authors' `MultiLabelSoftMarginLoss`, i.e. binary cross-entropy averaged
            over labels and images) or `"asl"` (Asymmetric Loss).
        image_size, asl_gamma_negative, asl_gamma_positive, asl_clip, problem_type:
            The fields of the whole family, documented in [`FamilyConfigMixin`] (the paper's image size: 448).

    Example:

    ```python
    >>> from transformers_hsvlt import MSRNConfig, MSRNForMultiLabelClassification

    >>> config = MSRNConfig(id2label=dict(enumerate(["cat", "dog", "person", "car", "tree"])), num_groups=2)
    >>> model = MSRNForMultiLabelClassification(config)
    ```"""

    model_type = "msrn"
    sub_configs_defaults: ClassVar[dict] = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet", init_kwargs=RESNET_101)
    }

    backbone_config: dict | PreTrainedConfig | None = None
    label_embedding_size: int = 300
    label_projection_size: int = 256
    graph_hidden_size: int = 300
    semantic_size: int = 512
    pool_ratio: float = 0.05
    num_groups: int | None = None
    adjacency_threshold: float = 0.4
    adjacency_reweight: float = 0.25
    graph_negative_slope: float = 0.2
    graph_init_gain: float = 1.414
    head_hidden_size: int = 2048
    head_negative_slope: float = 0.01
    attention_label_chunk_size: int | None = 16
    group_loss_weight: float = 1e-4

    def derive_fields(self):
        """`num_groups` from `pool_ratio` when it is not given."""
        if self.num_groups is None:
            self.num_groups = max(1, int(self.pool_ratio * self.num_labels))

    @property
    def level_channels(self) -> list[int]:
        """Channels of the three tapped ResNet stages (512, 1024, 2048 for ResNet-101)."""
        return list(self.backbone_config.hidden_sizes[1:])

    def validate_architecture(self):
        """Raise a `ValueError` naming the field when the model cannot be built from this configuration."""
        super().validate_architecture()
        backbone = self.backbone_config
        if getattr(backbone, "model_type", None) != "resnet":
            raise ValueError(
                f"MSRNConfig.backbone_config must be a ResNetConfig, got model_type {getattr(backbone, 'model_type', None)!r}."
            )
        if len(backbone.hidden_sizes) != 4 or len(backbone.depths) != 4:
            raise ValueError(
                f"MSRNConfig.backbone_config must have 4 stages (stages 2-4 are the semantic levels), got hidden_sizes "
                f"{backbone.hidden_sizes} and depths {backbone.depths}."
            )
        for name in (
            "label_embedding_size",
            "label_projection_size",
            "graph_hidden_size",
            "semantic_size",
            "head_hidden_size",
            "num_groups",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"MSRNConfig.{name} must be positive, got {getattr(self, name)}.")
        if self.attention_label_chunk_size is not None and self.attention_label_chunk_size < 1:
            raise ValueError(
                f"MSRNConfig.attention_label_chunk_size must be positive or None, got {self.attention_label_chunk_size}."
            )


__all__ = ["MSRNConfig"]
