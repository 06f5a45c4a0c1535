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
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.convnext.modeling_convnext import ConvNextEmbeddings, ConvNextLayer, ConvNextLayerNorm
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_hsvlt import HSVLTConfig
from .multilabel_losses import multilabel_loss


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


@dataclass(frozen=True)
class HSVLTWeightProducts:
    r"""
    Weight products of one IVLA module, for eager inference (see [`HSVLTVisualLinguisticAttention`]).

    With `d = C / heads`, `W_q_h`, `W_k_h`, `W_v_h` the `(d, C)` row blocks of head `h` and `W_p_h` the `(C, d)` column
    block of the output projection:

    Args:
        label_input (`torch.Tensor` of shape `(C, heads * C + C)`):
            `[d^-0.5 W_q_1^T W_k_1 | ... | d^-0.5 W_q_heads^T W_k_heads | W_vis^T]`: one product of the label features
            gives the folded, scaled queries of every head and the input of `vis_project`'s GELU.
        label_input_bias (`torch.Tensor` of shape `(heads * C + C,)`):
            Zeros for the queries, `vis_project`'s bias.
        attended_output (`torch.Tensor` of shape `(heads * C, C)`):
            `[(W_p_1 W_v_1)^T; ...; (W_p_heads W_v_heads)^T]`: the attended tokens of all heads to the output of `proj`
            (before its bias).
        sources (`tuple[torch.Tensor]`):
            Detached aliases of the weights the products were computed from (query, key, value, proj, vis_project
            weight and bias). Holding them keeps their storage alive, so no other tensor can take their address.
        versions (`tuple[int]`):
            The in-place version counters (`tensor._version`) of the sources when the products were computed.
    """

    label_input: torch.Tensor
    label_input_bias: torch.Tensor
    attended_output: torch.Tensor
    sources: tuple[torch.Tensor, ...]
    versions: tuple[int, ...]

    @classmethod
    def compute(cls, attention: "HSVLTVisualLinguisticAttention", cache: bool = True) -> "HSVLTWeightProducts":
        """The products of `attention`'s current weights, in their dtype (never under autocast). `cache=False` (when
        exporting a graph) computes them from the weights as graph operations and records no sources."""
        sources = attention.product_sources()
        query, key, value, proj, vis_weight, vis_bias = sources
        heads, head_dim, dim = attention.num_heads, attention.head_dim, query.shape[1]
        with torch.autocast(query.device.type, enabled=False):
            folded_query = torch.bmm(query.view(heads, head_dim, dim).transpose(1, 2), key.view(heads, head_dim, dim))
            folded_query = (folded_query * attention.scale).permute(1, 0, 2).reshape(dim, heads * dim)
            label_input = torch.cat([folded_query, vis_weight.t()], dim=1)
            label_input_bias = torch.cat([vis_bias.new_zeros(heads * dim), vis_bias])
            value_output = torch.bmm(proj.view(dim, heads, head_dim).transpose(0, 1), value.view(heads, head_dim, dim))
            attended_output = value_output.transpose(1, 2).reshape(heads * dim, dim)
        return cls(
            label_input=label_input,
            label_input_bias=label_input_bias,
            attended_output=attended_output,
            sources=tuple(source.detach() for source in sources) if cache else (),
            versions=tuple(source._version for source in sources) if cache else (),
        )

    def is_current(self, sources: tuple[torch.Tensor, ...]) -> bool:
        """Whether `sources` are the very tensors the products were computed from, unchanged since: same storage,
        in-place version, dtype and device."""
        return all(
            source.data_ptr() == cached.data_ptr()
            and source._version == version
            and source.dtype == cached.dtype
            and source.device == cached.device
            for source, cached, version in zip(sources, self.sources, self.versions, strict=True)
        )


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

    Eager inference (`eval()`, gradients disabled, not under `torch.compile`/tracing) with the folded form multiplies
    the weights first and keeps the products ([`HSVLTWeightProducts`]): `query` and `key` become one `C x heads*C`
    map, `value` and `proj` one `heads*C x C` map, and `vis_project`, which reads the same label features as the
    queries, joins the first one, so a block's label side costs six `K x C x C` products instead of eight (HSVLT-S at
    448x448: 39.8 instead of 40.8 GMACs per image). The products are computed on the first such forward (`2 * heads *
    C^3` multiply-adds per block, once) and reused as long as the weights are the same tensors, unchanged: they are
    recomputed after any in-place change (optimizer step, `load_state_dict`, `copy_`), dtype or device move, or new
    parameter tensors, and dropped by `train()` (not by `eval()`). In-place edits through `param.data` bypass the
    version counter: call `model.train()` (then `model.eval()`) after them. They take `(2 * heads + 1) * C^2` values per block (71 MB in float32 for
    HSVLT-S). The logits equal those of the straightforward form to float rounding (1e-5).

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
        self.weight_products: HSVLTWeightProducts | None = None

    def train(self, mode: bool = True):
        """Entering training mode drops the weight products (training never uses them); `eval()` keeps them."""
        if mode:
            self.weight_products = None
        return super().train(mode)

    def product_sources(self) -> tuple[torch.Tensor, ...]:
        """The weights [`HSVLTWeightProducts`] are computed from."""
        return (
            self.query.weight,
            self.key.weight,
            self.value.weight,
            self.proj.weight,
            self.vis_project.weight,
            self.vis_project.bias,
        )

    def _current_weight_products(self) -> HSVLTWeightProducts | None:
        """The cached weight products, recomputed if the weights changed; `None` where they must not be used
        (training mode, gradients enabled, `torch.compile` or tracing). When exporting a graph (`torch.export`,
        `torch.onnx.export(..., dynamo=True)` under `torch.no_grad()`), the products are graph operations on the
        weights alone, which ONNX Runtime folds into constants when it loads the model."""
        if self.training or torch.is_grad_enabled():
            return None
        if torch.compiler.is_exporting():
            return HSVLTWeightProducts.compute(self, cache=False)
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return None
        if self.weight_products is None or not self.weight_products.is_current(self.product_sources()):
            self.weight_products = HSVLTWeightProducts.compute(self)
        return self.weight_products

    @staticmethod
    def _attend(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention of already scaled `queries` `(..., L, D)` over `keys` and `values` `(..., N, D)`: returns the
        attended values `(..., L, D)` and the attention map `(..., L, N)`."""
        attention_probs = torch.softmax(torch.matmul(queries, keys.transpose(-1, -2)), dim=-1)
        return torch.matmul(attention_probs, values), attention_probs

    def _attention_folded(
        self, queries: torch.Tensor, visual_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
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

    def _forward_with_products(
        self, label_features: torch.Tensor, visual_tokens: torch.Tensor, products: HSVLTWeightProducts
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The folded form with the cached weight products: returns `proj(context)` `(B, K, C)` and the attention map
        `(B, heads, K, H*W)`."""
        batch_size, num_labels, dim = label_features.shape
        heads = self.num_heads
        label_input = torch.addmm(products.label_input_bias, label_features.reshape(-1, dim), products.label_input)
        folded_queries, gate_input = label_input.split([heads * dim, dim], dim=-1)
        folded_queries = folded_queries.view(batch_size, num_labels, heads, dim).transpose(1, 2)
        attended_tokens, attention_probs = self._attend(
            folded_queries.reshape(batch_size, heads * num_labels, dim), visual_tokens, visual_tokens
        )  # (B, heads*K, C), (B, heads*K, H*W)
        attended_tokens = attended_tokens.view(batch_size, heads, num_labels, dim).transpose(1, 2)
        output = torch.addmm(self.proj.bias, attended_tokens.reshape(-1, heads * dim), products.attended_output)
        multimodal_input = F.gelu(gate_input).mul_(output)
        return multimodal_input.view(batch_size, num_labels, dim), attention_probs.unflatten(1, (heads, num_labels))

    def _fold(self, num_labels: int, num_tokens: int, dim: int, with_products: bool) -> bool:
        """Whether to use the folded form: as configured, or (`fold_label_attention=None`) where it costs fewer
        multiply-adds. With the weight products, the folded form saves `2 * K * C^2` more (the query and value-side
        products), so it is cheaper when `(heads - 1) * K * (C + H*W) < H*W * C` (always with one head)."""
        if self.config.fold_label_attention is not None:
            return self.config.fold_label_attention
        if with_products:
            return (self.num_heads - 1) * num_labels * (dim + num_tokens) < num_tokens * dim
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
        num_labels, num_tokens, dim = label_features.shape[1], visual_tokens.shape[1], label_features.shape[2]
        products = self._current_weight_products() if self.config.fold_label_attention is not False else None
        if products is not None and self._fold(num_labels, num_tokens, dim, with_products=True):
            multimodal_input, attention_probs = self._forward_with_products(label_features, visual_tokens, products)
        else:
            queries = self.query(label_features) * self.scale
            if self._fold(num_labels, num_tokens, dim, with_products=False):
                context, attention_probs = self._attention_folded(queries, visual_tokens)
            else:
                context, attention_probs = self._attention_straightforward(queries, visual_tokens)
            multimodal_input = F.gelu(self.vis_project(label_features)) * self.proj(context)
        multimodal_features = F.gelu(self.project_mm(multimodal_input))
        return multimodal_features, attention_probs if output_attentions else None


class HSVLTLabelResidualGate(nn.Module):
    """Gated residual of the label features: `t + tanh(W2 relu(W1 t)) * t` (the authors' `res_gate`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.hidden = nn.Linear(dim, dim, bias=False)
        self.output = nn.Linear(dim, dim, bias=False)

    def forward(self, label_features: torch.Tensor) -> torch.Tensor:
        gate = torch.tanh(self.output(F.relu(self.hidden(label_features))))
        return torch.addcmul(label_features, gate, label_features)


class HSVLTLayer(GradientCheckpointingLayer, ConvNextLayer):
    """
    One HSVLT block: transformers' ConvNeXt block on the visual map (`ConvNextLayer`: dwconv 7x7, LayerNorm, Linear
    4x, GELU, Linear, layer scale, drop path, residual), then IVLA from the label features to the block's output
    tokens and the label update `t <- t + drop_path(m)`, `t <- t + gate(t) * t`. The visual map is not changed by IVLA.

    Memory layout: the channels-first LayerNorms (stem, downsampling) return maps stored channels-last (NHWC), so from
    the stem on the visual maps are channels-last in memory whatever the layout of the input, and the permutes to
    `(B, H, W, C)` and the visual tokens `(B, H*W, C)` are views, not copies. `model.to(memory_format=torch.channels_last)`
    with channels-last `pixel_values` also removes the copies before the stem LayerNorm and of the downsampling weights.
    """

    def __init__(self, config: HSVLTConfig, dim: int, drop_path: float = 0.0):
        super().__init__(config, dim, drop_path)
        self.layernorm.eps = config.layer_norm_eps
        self.label_attention = HSVLTVisualLinguisticAttention(config, dim)
        self.label_gate = HSVLTLabelResidualGate(dim)

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
        hidden_states = ConvNextLayer.forward(self, hidden_states)
        visual_tokens = hidden_states.permute(0, 2, 3, 1).flatten(1, 2)
        multimodal_features, attention_probs = self.label_attention(label_features, visual_tokens, output_attentions)
        label_features = self.label_gate(label_features + self.drop_path(multimodal_features))
        return hidden_states, label_features, multimodal_features, attention_probs


class HSVLTStage(nn.Module):
    """A stage: downsampling (LayerNorm + Conv2d k=2 s=2, except for the first stage), the projection of the incoming
    label features to the stage width (the authors' `langs.{i}`), and `depth` [`HSVLTLayer`]s."""

    def __init__(
        self,
        config: HSVLTConfig,
        in_channels: int,
        out_channels: int,
        in_label_size: int,
        downsample: bool,
        drop_path_rates,
    ):
        super().__init__()
        self.downsampling_layer = nn.ModuleList(
            [
                ConvNextLayerNorm(in_channels, eps=config.layer_norm_eps, data_format="channels_first"),
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

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as a self-contained remote-code checkpoint: the config's `auto_map` gets every entry of `AUTO_MAP`
        (`AutoModel` -> [`HSVLTModel`], `AutoModelForImageClassification` -> [`HSVLTForMultiLabelClassification`]),
        whichever of the two is saved."""
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        super().save_pretrained(save_directory, *args, **kwargs)


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
                f"`pixel_values` must be a floating-point tensor (images preprocessed by HSVLTImageProcessor, values "
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
                Images, as produced by [`HSVLTImageProcessor`] (values in [0, 1] with the authors' preprocessing).
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
                Images, as produced by [`HSVLTImageProcessor`].
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


AUTO_MAP = {
    "AutoConfig": "configuration_hsvlt.HSVLTConfig",
    "AutoModel": "modeling_hsvlt.HSVLTModel",
    "AutoModelForImageClassification": "modeling_hsvlt.HSVLTForMultiLabelClassification",
}

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
