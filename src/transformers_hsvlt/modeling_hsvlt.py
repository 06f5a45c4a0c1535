"""PyTorch HSVLT model (Hierarchical Scale-Aware Vision-Language Transformer, ACM MM 2023).

A ConvNeXt visual hierarchy in which every block is followed by Interactive Visual-Linguistic Attention (IVLA): the
label embeddings (one vector per class) query the block's visual tokens, the label features are updated with a gated
residual, and a per-label multi-modal feature is produced. Cross-Scale Aggregation concatenates the multi-modal
features of the last block of every stage, and a per-label linear head gives one logit per class.

Parameter names follow transformers' ConvNeXt (`embeddings.*`, `encoder.stages.{i}.downsampling_layer.*`,
`encoder.stages.{i}.layers.{j}.{dwconv,layernorm,pwconv1,pwconv2,layer_scale_parameter}`) so that ConvNeXt weights
map onto the visual hierarchy one to one. The visual parts are transformers' own ConvNeXt modules (`ConvNextEmbeddings`,
`ConvNextLayer`, `ConvNextLayerNorm`, its drop path), so the visual hierarchy computes exactly what `ConvNextModel`
computes.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.models.convnext.modeling_convnext import ConvNextEmbeddings
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_hsvlt import HSVLTConfig
from .modeling_family import FamilyPreTrainedModel, check_finite_pixels
from .modeling_hsvlt_attention import HSVLTVisualLinguisticAttention
from .modeling_hsvlt_encoder import HSVLTEncoder, HSVLTLayer, HSVLTModelOutput
from .multilabel_losses import multilabel_loss


@dataclass
class HSVLTMultiLabelClassifierOutput(ModelOutput):
    r"""
    Output of [`HSVLTForMultiLabelClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            The classification loss named by `config.multilabel_loss` (binary cross-entropy with logits averaged over
            the label entries that are not ignored, `labels == -1`, by default).
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            One logit per label; `sigmoid(logits)` are the multi-label probabilities.
        multimodal_features (`tuple(torch.FloatTensor)`):
            As in [`HSVLTModelOutput`].
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            As in [`HSVLTModelOutput`].
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            As in [`HSVLTModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    multimodal_features: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class HSVLTEmbeddings(ConvNextEmbeddings):
    """ConvNeXt's stem: `Conv2d(num_channels, hidden_sizes[0], patch_size, stride=patch_size)` + channels-first
    LayerNorm, with the config's `layer_norm_eps` (transformers' ConvNeXt fixes it at 1e-6, the default)."""

    def __init__(self, config: HSVLTConfig):
        super().__init__(config)
        self.layernorm.eps = config.layer_norm_eps


class HSVLTLabelEmbeddings(nn.Module):
    """The fixed label-name embeddings `(num_labels, label_embedding_size)`, one per class (e.g. BERT vectors of the
    class names). A persistent buffer, not a parameter: it is saved with the checkpoint but never trained."""

    def __init__(self, config: HSVLTConfig):
        super().__init__()
        self.register_buffer("weight", torch.zeros(config.num_labels, config.label_embedding_size), persistent=True)

    def forward(self, batch_size: int) -> torch.Tensor:
        """Returns the embeddings broadcast to `(batch_size, num_labels, label_embedding_size)`."""
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)


class HSVLTPreTrainedModel(FamilyPreTrainedModel):
    """Weight initialisation and the common interface of HSVLT models.

    Checkpoints saved before the model's last block lost its label gate (its output reached nothing) still load: the
    gate's weights are ignored without a warning."""

    config_class = HSVLTConfig
    config: HSVLTConfig
    base_model_prefix = "hsvlt"
    remote_code_auto_map = {
        "AutoConfig": "configuration_hsvlt.HSVLTConfig",
        "AutoModel": "modeling_hsvlt.HSVLTModel",
        "AutoModelForImageClassification": "modeling_hsvlt.HSVLTForMultiLabelClassification",
    }
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["HSVLTLayer"]
    _keys_to_ignore_on_load_unexpected = [r"encoder\.stages\.\d+\.layers\.\d+\.label_gate\."]
    accepts_loss_kwargs = False
    """The loss is a mean over the batch and forward takes no loss keyword arguments (`num_items_in_batch`): a plain
    `Trainer` divides it by the gradient-accumulation steps, so that accumulating equals one larger batch."""

    @torch.no_grad()
    def _init_weights(self, module):
        """ConvNeXt's initialisation (normal, std `initializer_range`, zero bias) for convolutions and linear layers,
        except the two per-label projections of IVLA (Conv1d in the authors' code) and the head, which keep PyTorch's
        default `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` as in the authors' model."""
        if isinstance(module, HSVLTVisualLinguisticAttention):
            for projection in (module.vis_project, module.project_mm):
                _init_uniform_fan_in(projection.weight, projection.bias)
        elif isinstance(module, HSVLTLabelwiseHead):
            _init_uniform_fan_in(module.weight, module.bias)
        elif isinstance(module, HSVLTLabelEmbeddings):
            init.normal_(module.weight, mean=0.0, std=1.0)
        else:
            super()._init_weights(module)
        if isinstance(module, HSVLTLayer) and module.layer_scale_parameter is not None:
            init.constant_(module.layer_scale_parameter, self.config.layer_scale_init_value)


def _init_uniform_fan_in(weight: torch.Tensor, bias: torch.Tensor) -> None:
    """PyTorch's default Linear/Conv1d initialisation: weight and bias uniform in +-1/sqrt(fan_in)."""
    bound = weight.shape[-1] ** -0.5
    init.uniform_(weight, -bound, bound)
    init.uniform_(bias, -bound, bound)


class HSVLTModel(HSVLTPreTrainedModel):
    """The HSVLT hierarchy without the head: per-stage visual maps, label features and multi-modal label features."""

    def __init__(self, config: HSVLTConfig):
        super().__init__(config)
        self.embeddings = HSVLTEmbeddings(config)
        self.label_embeddings = HSVLTLabelEmbeddings(config)
        self.encoder = HSVLTEncoder(config)
        self.post_init()

    def _checked_pixel_values(self, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """`pixel_values` in the dtype of the model's weights, after checking their shape and type."""
        if pixel_values is None:
            raise ValueError("HSVLT needs `pixel_values`, a float tensor (batch_size, num_channels, height, width).")
        if not torch.is_floating_point(pixel_values):
            raise ValueError(
                f"`pixel_values` must be a floating-point tensor (images preprocessed by MultiLabelImageProcessor, values "
                f"in [0, 1]), got {pixel_values.dtype}; raw uint8 images must go through the image processor first."
            )
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"`pixel_values` must have shape (batch_size, {self.config.num_channels}, height, width), "
                f"got {tuple(pixel_values.shape)}."
            )
        min_size = self.config.patch_size * 2 ** (self.config.num_stages - 1)
        if min(pixel_values.shape[-2:]) < min_size:
            raise ValueError(
                f"`pixel_values` height and width must be at least {min_size} for this configuration "
                f"(patch_size {self.config.patch_size}, {self.config.num_stages} stages), got {tuple(pixel_values.shape[-2:])}."
            )
        check_finite_pixels(pixel_values)
        return pixel_values.to(self.embeddings.patch_embeddings.weight.dtype)

    def _label_features(self, class_embeddings: torch.Tensor | None, batch_size: int, dtype: torch.dtype):
        if class_embeddings is None:
            return self.label_embeddings(batch_size).to(dtype)
        expected = (self.config.num_labels, self.config.label_embedding_size)
        if class_embeddings.shape[-2:] != expected or class_embeddings.ndim not in (2, 3):
            raise ValueError(
                f"`class_embeddings` must have shape {expected} or (batch_size, *{expected}), got {tuple(class_embeddings.shape)}."
            )
        return class_embeddings.to(dtype).expand(batch_size, *expected)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        class_embeddings: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> HSVLTModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images, as produced by [`MultiLabelImageProcessor`] (values in [0, 1] with the authors' preprocessing).
                Floating-point images of another dtype than the model's weights (float64 from NumPy, half, bfloat16)
                are converted to the weights' dtype; integer images (e.g. raw uint8 pixels) are refused with a
                `ValueError`, as they have not been preprocessed.
            class_embeddings (`torch.FloatTensor` of shape `(num_labels, label_embedding_size)`, *optional*):
                Label-name embeddings to use instead of the model's own `label_embeddings` buffer (also
                `(batch_size, num_labels, label_embedding_size)`). Not called `label_*`: `Trainer` treats every forward
                argument whose name contains "label" as a target.
            output_attentions (`bool`, *optional*):
                Return the IVLA attention map of every block.
            output_hidden_states (`bool`, *optional*):
                Return the visual feature map of the stem and of every stage.
        """
        pixel_values = self._checked_pixel_values(pixel_values)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        hidden_states = self.embeddings(pixel_values)
        label_features = self._label_features(class_embeddings, pixel_values.shape[0], hidden_states.dtype)
        return self.encoder(hidden_states, label_features, output_attentions, output_hidden_states)


class HSVLTLabelwiseHead(nn.Module):
    """One weight vector and bias per label (the authors' `TextHead`): `logit_k = <features_k, W_k> + b_k`."""

    def __init__(self, num_labels: int, in_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_labels, in_features))
        self.bias = nn.Parameter(torch.empty(num_labels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, K, D) -> (B, K)"""
        return (features * self.weight).sum(dim=-1) + self.bias


class HSVLTForMultiLabelClassification(HSVLTPreTrainedModel):
    """HSVLT with Cross-Scale Aggregation (the multi-modal features of every stage concatenated per label) and a
    per-label linear head: one logit per class, for multi-label classification (sigmoid)."""

    def __init__(self, config: HSVLTConfig):
        super().__init__(config)
        self.hsvlt = HSVLTModel(config)
        self.classifier = HSVLTLabelwiseHead(config.num_labels, sum(config.hidden_sizes))
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_embeddings: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> HSVLTMultiLabelClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images, as produced by [`MultiLabelImageProcessor`].
            labels (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
                1 for a present label, 0 for an absent one, -1 to leave the entry out of the loss (e.g. VOC
                "difficult" objects). Soft targets in [0, 1] are accepted; any other value raises a `ValueError`.
                The loss is `config.multilabel_loss` (BCE by default, or ASL), a mean over the batch.
            class_embeddings, output_attentions, output_hidden_states:
                As in [`HSVLTModel`].

        Forward takes no other keyword arguments: an unknown one raises a `TypeError` naming it (`return_dict` is
        handled by `can_return_tuple`).
        """
        outputs = self.hsvlt(
            pixel_values,
            class_embeddings=class_embeddings,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(torch.cat(outputs.multimodal_features, dim=-1))
        loss = multilabel_loss(logits, labels, self.config) if labels is not None else None
        return HSVLTMultiLabelClassifierOutput(
            loss=loss,
            logits=logits,
            multimodal_features=outputs.multimodal_features,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    @torch.no_grad()
    def set_label_embeddings(self, label_embeddings: torch.Tensor, id2label: dict[int, str] | list[str]) -> None:
        """
        Replace the label set: the label-name embeddings `(num_labels, label_embedding_size)` and the label names.
        Head rows of labels whose name was already in the model are kept; the others are initialised anew.
        """
        names = list(id2label.values()) if isinstance(id2label, dict) else list(id2label)
        label_embeddings = torch.as_tensor(label_embeddings)
        width = self.config.label_embedding_size
        if label_embeddings.ndim != 2 or label_embeddings.shape[1] != width:
            raise ValueError(
                f"label_embeddings must have shape (num_labels, {width}) (the model's label_embedding_size), got "
                f"{tuple(label_embeddings.shape)}; embed the label names with a text encoder of width {width}."
            )
        if label_embeddings.shape[0] != len(names) or not names:
            raise ValueError(
                f"Got {label_embeddings.shape[0]} label embeddings for {len(names)} label names; they must match and be non-zero."
            )
        if len(set(names)) != len(names):
            raise ValueError(
                f"Label names must be unique, got duplicates: {sorted({n for n in names if names.count(n) > 1})}."
            )
        if not torch.isfinite(label_embeddings).all():
            raise ValueError("label_embeddings contain NaN or infinite values.")
        old_rows = {name: index for index, name in self.config.id2label.items()}
        new_head = HSVLTLabelwiseHead(len(names), self.classifier.weight.shape[1]).to(self.classifier.weight)
        self._init_weights(new_head)
        for index, name in enumerate(names):
            if name in old_rows:
                new_head.weight[index] = self.classifier.weight[old_rows[name]]
                new_head.bias[index] = self.classifier.bias[old_rows[name]]
        self.classifier = new_head
        buffer = self.hsvlt.label_embeddings.weight
        self.hsvlt.label_embeddings.weight = label_embeddings.to(device=buffer.device, dtype=buffer.dtype).clone()
        self.config.id2label = dict(enumerate(names))
        self.config.label2id = {name: index for index, name in enumerate(names)}


HSVLTConfig.register_for_auto_class()
HSVLTModel.register_for_auto_class("AutoModel")
HSVLTForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "HSVLTForMultiLabelClassification",
    "HSVLTModel",
    "HSVLTModelOutput",
    "HSVLTMultiLabelClassifierOutput",
    "HSVLTPreTrainedModel",
]
