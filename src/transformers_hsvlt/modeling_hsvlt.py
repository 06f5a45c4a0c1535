"""PyTorch HSVLT model (Hierarchical Scale-Aware Vision-Language Transformer, ACM MM 2023).

A ConvNeXt visual hierarchy in which every block is followed by Interactive Visual-Linguistic Attention (IVLA): the
label embeddings (one vector per class) query the block's visual tokens, the label features are updated with a gated
residual, and a per-label multi-modal feature is produced. Cross-Scale Aggregation concatenates the multi-modal
features of the last block of every stage, and a per-label linear head gives one logit per class.

Parameter names follow transformers' ConvNeXt (`embeddings.*`, `encoder.stages.{i}.downsampling_layer.*`,
`encoder.stages.{i}.layers.{j}.{dwconv,layernorm,pwconv1,pwconv2,layer_scale_parameter}`) so that ConvNeXt weights
map onto the visual hierarchy one to one.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_hsvlt import HSVLTConfig


@dataclass
class HSVLTModelOutput(ModelOutput):
    r"""
    Output of [`HSVLTModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_sizes[-1], height / 32, width / 32)`):
            Visual feature map of the last stage.
        label_features (`torch.FloatTensor` of shape `(batch_size, num_labels, hidden_sizes[-1])`):
            Label features after the last block.
        multimodal_features (`tuple(torch.FloatTensor)`, one per stage, of shape `(batch_size, num_labels, hidden_sizes[i])`):
            Per-label multi-modal feature of the last block of every stage (the input of Cross-Scale Aggregation).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            Visual feature maps of the stem and of every stage, `(batch_size, hidden_sizes[i], height_i, width_i)`;
            IVLA never changes them, so they equal the ConvNeXt hidden states for the same weights.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            IVLA attention maps of every block, `(batch_size, num_attention_heads, num_labels, height_i * width_i)`:
            for each label, a softmax over the block's visual tokens (row-major over the feature map).
    """

    last_hidden_state: torch.FloatTensor | None = None
    label_features: torch.FloatTensor | None = None
    multimodal_features: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class HSVLTMultiLabelClassifierOutput(ModelOutput):
    r"""
    Output of [`HSVLTForMultiLabelClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Binary cross-entropy with logits, averaged over the label entries that are not ignored (`labels == -1`).
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


class HSVLTLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of `(batch, height, width, channels)` (channels_last) or `(batch, channels, height,
    width)` (channels_first) tensors, as ConvNeXt's."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_last"):
        super().__init__(normalized_shape, eps=eps)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
        self.data_format = data_format

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_first":
            return super().forward(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return super().forward(features)


class HSVLTDropPath(nn.Module):
    """Stochastic depth per sample: drops the whole residual branch of a sample with probability `drop_prob`."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return features
        keep_prob = 1 - self.drop_prob
        shape = (features.shape[0],) + (1,) * (features.ndim - 1)
        keep = torch.floor(keep_prob + torch.rand(shape, dtype=features.dtype, device=features.device))
        return features.div(keep_prob) * keep

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class HSVLTEmbeddings(nn.Module):
    """Stem: `Conv2d(num_channels, hidden_sizes[0], patch_size, stride=patch_size)` + channels-first LayerNorm."""

    def __init__(self, config: HSVLTConfig):
        super().__init__()
        self.patch_embeddings = nn.Conv2d(
            config.num_channels, config.hidden_sizes[0], kernel_size=config.patch_size, stride=config.patch_size
        )
        self.layernorm = HSVLTLayerNorm(config.hidden_sizes[0], eps=config.layer_norm_eps, data_format="channels_first")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.patch_embeddings(pixel_values))


class HSVLTLabelEmbeddings(nn.Module):
    """The fixed label-name embeddings `(num_labels, label_embedding_size)`, one per class (e.g. BERT vectors of the
    class names). A persistent buffer, not a parameter: it is saved with the checkpoint but never trained."""

    def __init__(self, config: HSVLTConfig):
        super().__init__()
        self.register_buffer("weight", torch.zeros(config.num_labels, config.label_embedding_size), persistent=True)

    def forward(self, batch_size: int) -> torch.Tensor:
        """Returns the embeddings broadcast to `(batch_size, num_labels, label_embedding_size)`."""
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)


class HSVLTVisualLinguisticAttention(nn.Module):
    r"""
    Interactive Visual-Linguistic Attention (IVLA) of one block: the label features query the visual tokens.

    With `t` the label features `(B, K, C)` and `v` the visual tokens `(B, H*W, C)`:
    `a = softmax(query(t) key(v)^T / sqrt(C / heads))`, `o = proj(a value(v))`,
    `m = GELU(project_mm(GELU(vis_project(t)) * o))`; `m` is the per-label multi-modal feature.

    Folded form (`config.fold_label_attention`, exact): per head `h`, `query_h(t) key_h(v)^T = (query_h(t) W_key_h) v^T`
    and `a_h (v W_value_h^T) = (a_h v) W_value_h^T`, so the key and value projections are applied to the `K` label-side
    vectors instead of the `H*W` visual tokens (80 instead of 12,544 vectors at stage 1 for 448x448 COCO): HSVLT-S
    at 448x448 needs 40.8 instead of 48.2 GMACs per image. The `heads` folded queries of a label, each `C` wide, are
    stacked as `heads * K` rows attending to the tokens as they are (never expanded per head, split or projected).
    The logits then cost `heads * K * H*W * C` multiply-adds instead of `K * H*W * C`: folding saves work when
    `K * C + (heads - 1) * K * H*W < H*W * C`, always the case for HSVLT-S (one head, 80 labels, H*W >= 196 at
    448x448) but not, e.g., with 4 heads at stage 1 or with more labels than tokens.

    Both forms scale the queries by `(C / heads)^-0.5` before the product with the keys instead of scaling the logits
    (the same values up to float rounding), and compute the attention explicitly (two batched matmuls and a softmax).
    With `K` queries this is as fast on CPU as `scaled_dot_product_attention` when the tokens are contiguous (as in the
    model) and faster when they are a strided view (which SDPA copies); the attention map then comes at no extra cost
    and `output_attentions` does not change the computation.
    """

    def __init__(self, config: HSVLTConfig, dim: int):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.vis_project = nn.Linear(dim, dim)
        self.project_mm = nn.Linear(dim, dim)

    @staticmethod
    def _attend(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention of already scaled `queries` `(..., L, D)` over `keys` and `values` `(..., N, D)`: returns the
        attended values `(..., L, D)` and the attention map `(..., L, N)`."""
        attention_probs = torch.softmax(torch.matmul(queries, keys.transpose(-1, -2)), dim=-1)
        return torch.matmul(attention_probs, values), attention_probs

    def _attention_folded(self, queries: torch.Tensor, visual_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled queries `(B, K, C)` and tokens `(B, H*W, C)` -> context `(B, K, C)` (the input of `proj`) and the
        attention map `(B, heads, K, H*W)`. The reshapes around the two weight products are views when `heads == 1`."""
        batch_size, num_labels, dim = queries.shape
        heads, head_dim = self.num_heads, self.head_dim
        queries = queries.reshape(batch_size * num_labels, heads, head_dim).transpose(0, 1)  # (heads, B*K, d)
        folded_queries = torch.bmm(queries, self.key.weight.view(heads, head_dim, dim))  # (heads, B*K, C)
        folded_queries = folded_queries.view(heads, batch_size, num_labels, dim).transpose(0, 1)
        attended_tokens, attention_probs = self._attend(
            folded_queries.reshape(batch_size, heads * num_labels, dim), visual_tokens, visual_tokens
        )  # (B, heads*K, C), (B, heads*K, H*W)
        attended_tokens = attended_tokens.view(batch_size, heads, num_labels, dim).transpose(0, 1)
        value_weight = self.value.weight.view(heads, head_dim, dim).transpose(1, 2)  # (heads, C, d)
        context = torch.bmm(attended_tokens.reshape(heads, batch_size * num_labels, dim), value_weight)
        context = context.view(heads, batch_size, num_labels, head_dim).permute(1, 2, 0, 3)
        return context.reshape(batch_size, num_labels, dim), attention_probs.unflatten(1, (heads, num_labels))

    def _attention_straightforward(
        self, queries: torch.Tensor, visual_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The authors' form, with the same inputs and outputs as `_attention_folded`."""
        batch_size, num_labels, dim = queries.shape

        def split_heads(features):  # (B, L, C) -> (B, heads, L, d)
            return features.view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

        keys, values = split_heads(self.key(visual_tokens)), split_heads(self.value(visual_tokens))
        context, attention_probs = self._attend(split_heads(queries), keys, values)
        return context.transpose(1, 2).reshape(batch_size, num_labels, dim), attention_probs

    def _fold(self, num_labels: int, num_tokens: int, dim: int) -> bool:
        """Whether to use the folded form: as configured, or (`fold_label_attention=None`) where it saves work."""
        if self.config.fold_label_attention is not None:
            return self.config.fold_label_attention
        return num_labels * dim + (self.num_heads - 1) * num_labels * num_tokens < num_tokens * dim

    def forward(
        self, label_features: torch.Tensor, visual_tokens: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            label_features: `(B, K, C)`.
            visual_tokens: `(B, H*W, C)`, any strides (e.g. a view of a channels-first or channels-last map).
        Returns:
            The multi-modal features `(B, K, C)` and, if `output_attentions`, the attention map `(B, heads, K, H*W)`.
        """
        queries = self.query(label_features) * self.scale
        if self._fold(label_features.shape[1], visual_tokens.shape[1], label_features.shape[2]):
            context, attention_probs = self._attention_folded(queries, visual_tokens)
        else:
            context, attention_probs = self._attention_straightforward(queries, visual_tokens)
        label_gate = F.gelu(self.vis_project(label_features))
        multimodal_features = F.gelu(self.project_mm(label_gate * self.proj(context)))
        return multimodal_features, attention_probs if output_attentions else None


class HSVLTLabelResidualGate(nn.Module):
    """Gated residual of the label features: `t + tanh(W2 relu(W1 t)) * t` (the authors' `res_gate`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.hidden = nn.Linear(dim, dim, bias=False)
        self.output = nn.Linear(dim, dim, bias=False)

    def forward(self, label_features: torch.Tensor) -> torch.Tensor:
        gate = torch.tanh(self.output(F.relu(self.hidden(label_features))))
        return label_features + gate * label_features


class HSVLTLayer(GradientCheckpointingLayer):
    """
    One HSVLT block: a ConvNeXt block on the visual map (dwconv 7x7, LayerNorm, Linear 4x, GELU, Linear, layer
    scale, drop path, residual), then IVLA from the label features to the block's output tokens and the label update
    `t <- t + drop_path(m)`, `t <- t + gate(t) * t`. The visual map is not changed by IVLA.

    Memory layout: the channels-first LayerNorms (stem, downsampling) return maps stored channels-last (NHWC), so from
    the stem on the visual maps are channels-last in memory whatever the layout of the input, and the permutes to
    `(B, H, W, C)` and the visual tokens `(B, H*W, C)` are views, not copies. `model.to(memory_format=torch.channels_last)`
    with channels-last `pixel_values` also removes the copies before the stem LayerNorm and of the downsampling weights.
    """

    def __init__(self, config: HSVLTConfig, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.layernorm = HSVLTLayerNorm(dim, eps=config.layer_norm_eps)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = ACT2FN[config.hidden_act]
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale_parameter = (
            nn.Parameter(config.layer_scale_init_value * torch.ones(dim)) if config.layer_scale_init_value > 0 else None
        )
        self.drop_path = HSVLTDropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.label_attention = HSVLTVisualLinguisticAttention(config, dim)
        self.label_gate = HSVLTLabelResidualGate(dim)

    def _visual_block(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The ConvNeXt block: `(B, C, H, W)` -> `(B, C, H, W)`."""
        features = self.dwconv(hidden_states).permute(0, 2, 3, 1)
        features = self.pwconv2(self.act(self.pwconv1(self.layernorm(features))))
        if self.layer_scale_parameter is not None:
            features = self.layer_scale_parameter * features
        return hidden_states + self.drop_path(features.permute(0, 3, 1, 2))

    def forward(
        self, hidden_states: torch.Tensor, label_features: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        Args:
            hidden_states: visual map `(B, C, H, W)`.
            label_features: `(B, K, C)`.
        Returns:
            `(hidden_states, label_features, multimodal_features, attention_probs)`: the new visual map `(B, C, H, W)`,
            the updated label features and the multi-modal features `(B, K, C)`, and the attention map or `None`.
        """
        hidden_states = self._visual_block(hidden_states)
        visual_tokens = hidden_states.permute(0, 2, 3, 1).flatten(1, 2)
        multimodal_features, attention_probs = self.label_attention(label_features, visual_tokens, output_attentions)
        label_features = self.label_gate(label_features + self.drop_path(multimodal_features))
        return hidden_states, label_features, multimodal_features, attention_probs


class HSVLTStage(nn.Module):
    """A stage: downsampling (LayerNorm + Conv2d k=2 s=2, except for the first stage), the projection of the incoming
    label features to the stage width (the authors' `langs.{i}`), and `depth` [`HSVLTLayer`]s."""

    def __init__(
        self, config: HSVLTConfig, in_channels: int, out_channels: int, in_label_size: int, downsample: bool, drop_path_rates
    ):
        super().__init__()
        self.downsampling_layer = nn.ModuleList(
            [
                HSVLTLayerNorm(in_channels, eps=config.layer_norm_eps, data_format="channels_first"),
                nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2),
            ]
            if downsample
            else []
        )
        self.label_projection = nn.Linear(in_label_size, out_channels)
        self.layers = nn.ModuleList([HSVLTLayer(config, out_channels, rate) for rate in drop_path_rates])

    def forward(self, hidden_states: torch.Tensor, label_features: torch.Tensor, output_attentions: bool = False):
        """Returns `(hidden_states, label_features, multimodal_features of the last block, attention maps per block)`."""
        for layer in self.downsampling_layer:
            hidden_states = layer(hidden_states)
        label_features = self.label_projection(label_features)
        attentions = ()
        for layer in self.layers:
            hidden_states, label_features, multimodal_features, attention_probs = layer(
                hidden_states, label_features, output_attentions
            )
            if output_attentions:
                attentions = attentions + (attention_probs,)
        return hidden_states, label_features, multimodal_features, attentions


class HSVLTEncoder(nn.Module):
    """The four stages of the hierarchy, with stochastic depth rising linearly over all blocks."""

    def __init__(self, config: HSVLTConfig):
        super().__init__()
        drop_path_rates = torch.linspace(0, config.drop_path_rate, sum(config.depths)).split(config.depths)
        in_sizes = [config.hidden_sizes[0]] + list(config.hidden_sizes[:-1])
        in_label_sizes = [config.label_embedding_size] + list(config.hidden_sizes[:-1])
        self.stages = nn.ModuleList(
            HSVLTStage(config, in_size, out_size, label_size, downsample=index > 0, drop_path_rates=rates.tolist())
            for index, (in_size, out_size, label_size, rates) in enumerate(
                zip(in_sizes, config.hidden_sizes, in_label_sizes, drop_path_rates)
            )
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        label_features: torch.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> HSVLTModelOutput:
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        multimodal_features = ()
        for stage in self.stages:
            hidden_states, label_features, stage_multimodal, stage_attentions = stage(
                hidden_states, label_features, output_attentions
            )
            multimodal_features = multimodal_features + (stage_multimodal,)
            if output_hidden_states:
                all_hidden_states = all_hidden_states + (hidden_states,)
            if output_attentions:
                all_attentions = all_attentions + stage_attentions
        return HSVLTModelOutput(
            last_hidden_state=hidden_states,
            label_features=label_features,
            multimodal_features=multimodal_features,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class HSVLTPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the common interface of HSVLT models."""

    config_class = HSVLTConfig
    config: HSVLTConfig
    base_model_prefix = "hsvlt"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["HSVLTLayer"]

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

    def _check_pixel_values(self, pixel_values: torch.Tensor | None):
        if pixel_values is None:
            raise ValueError("HSVLT needs `pixel_values`, a float tensor (batch_size, num_channels, height, width).")
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
        **kwargs,
    ) -> HSVLTModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images, as produced by [`HSVLTImageProcessor`] (values in [0, 1] with the authors' preprocessing).
            class_embeddings (`torch.FloatTensor` of shape `(num_labels, label_embedding_size)`, *optional*):
                Label-name embeddings to use instead of the model's own `label_embeddings` buffer (also
                `(batch_size, num_labels, label_embedding_size)`). Not called `label_*`: `Trainer` treats every forward
                argument whose name contains "label" as a target.
            output_attentions (`bool`, *optional*):
                Return the IVLA attention map of every block.
            output_hidden_states (`bool`, *optional*):
                Return the visual feature map of the stem and of every stage.
        """
        self._check_pixel_values(pixel_values)
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


def masked_binary_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over the entries whose label is not -1 (ignored); 0 when every entry is ignored."""
    if labels.shape != logits.shape:
        raise ValueError(
            f"`labels` must have the shape of the logits (batch_size, num_labels) = {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}."
        )
    labels = labels.to(logits.dtype)
    valid = labels != -1
    losses = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0), reduction="none")
    return (losses * valid).sum() / valid.sum().clamp(min=1)


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
        **kwargs,
    ) -> HSVLTMultiLabelClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images, as produced by [`HSVLTImageProcessor`].
            labels (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
                1 for a present label, 0 for an absent one, -1 to leave the entry out of the loss (e.g. VOC
                "difficult" objects). Soft targets in [0, 1] are accepted.
            class_embeddings, output_attentions, output_hidden_states:
                As in [`HSVLTModel`].
        """
        outputs = self.hsvlt(
            pixel_values,
            class_embeddings=class_embeddings,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(torch.cat(outputs.multimodal_features, dim=-1))
        loss = masked_binary_cross_entropy(logits, labels) if labels is not None else None
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
            raise ValueError(f"Label names must be unique, got duplicates: {sorted({n for n in names if names.count(n) > 1})}.")
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

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as a self-contained remote-code checkpoint (see `AUTO_MAP`)."""
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        super().save_pretrained(save_directory, *args, **kwargs)


AUTO_MAP = {
    "AutoConfig": "configuration_hsvlt.HSVLTConfig",
    "AutoModel": "modeling_hsvlt.HSVLTForMultiLabelClassification",
    "AutoModelForImageClassification": "modeling_hsvlt.HSVLTForMultiLabelClassification",
}

HSVLTConfig.register_for_auto_class()
HSVLTForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "HSVLTForMultiLabelClassification",
    "HSVLTModel",
    "HSVLTModelOutput",
    "HSVLTMultiLabelClassifierOutput",
    "HSVLTPreTrainedModel",
]
