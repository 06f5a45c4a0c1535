"""HSVLT's encoder (remote code, imported by `modeling_hsvlt.py`): the ConvNeXt blocks with Interactive
Visual-Linguistic Attention (IVLA) from the label features to the block's visual tokens, the gated label residual,
the stages and the encoder; and the cache of IVLA's weight products used by eager inference."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import GELUActivation
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.convnext.modeling_convnext import ConvNextLayer, ConvNextLayerNorm
from transformers.utils import ModelOutput

from .configuration_hsvlt import HSVLTConfig


@dataclass
class HSVLTModelOutput(ModelOutput):
    r"""
    Output of [`HSVLTModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_sizes[-1], height / 32, width / 32)`):
            Visual feature map of the last stage.
        label_features (`torch.FloatTensor` of shape `(batch_size, num_labels, hidden_sizes[-1])`):
            Label features after the last block's residual `t + m` (the last block has no label gate).
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


def _eager_inference_cache(training: bool) -> str | None:
    """How weight-derived tensors (products, transposes) may be kept: `"cache"` in eager inference (eval mode,
    gradients disabled), `"graph"` when exporting a graph (computed from the weights as graph operations), `None`
    otherwise (training, gradients enabled, `torch.compile`, tracing)."""
    if training or torch.is_grad_enabled():
        return None
    if torch.compiler.is_exporting():
        return "graph"
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    return "cache"


@dataclass(frozen=True)
class HSVLTTransposedWeights:
    r"""
    Transposed views `(in_features, out_features)` of a block's linear weights, kept so that each linear map is a
    single `addmm`/`mm` of its `(rows, in_features)` input without a transpose operation per call: used in eager
    inference and by the hand-written label update ([`HSVLTLabelUpdate`]), never where autograd must see the weights.

    Views of the weights' storage (no memory, no copy): they follow in-place changes (optimizer steps, `copy_`,
    `load_state_dict`) by themselves, and are recomputed when a weight gets other storage, dtype, device or shape
    (`load_state_dict(assign=True)`, `.to()`, `param.data = ...`). Holding them keeps that storage alive, so no other
    tensor can take its address.
    """

    weights: dict[str, torch.Tensor]

    @classmethod
    def compute(cls, sources: dict[str, torch.Tensor]) -> "HSVLTTransposedWeights":
        return cls(weights={name: source.detach().t() for name, source in sources.items()})

    def is_current(self, sources: dict[str, torch.Tensor]) -> bool:
        """Whether every view still aliases its weight's storage, with its dtype, device and shape."""
        return sources.keys() == self.weights.keys() and all(
            view.data_ptr() == source.data_ptr()
            and view.dtype == source.dtype
            and view.device == source.device
            and view.shape == source.shape[::-1]
            for view, source in zip(self.weights.values(), sources.values())
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
    (the same values up to float rounding), and compute the attention explicitly (two batched matmuls and a softmax),
    which gives the attention map at no extra cost; eager inference with the weight products, one head and no attention
    map runs `scaled_dot_product_attention` instead when the model's `attn_implementation` is `"sdpa"` (the default;
    one fused operation, the same values to float rounding), the explicit form with `"eager"`.

    [`HSVLTLayer`] calls [`~HSVLTVisualLinguisticAttention.forward_flat`] on `(B*K, C)` label rows, or, in training
    with one head, computes the same thing in [`HSVLTLabelUpdate`].
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
        mode = _eager_inference_cache(self.training)
        if mode is None:
            return None
        if mode == "graph":
            return HSVLTWeightProducts.compute(self, cache=False)
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
        self,
        label_features: torch.Tensor,
        visual_tokens: torch.Tensor,
        products: HSVLTWeightProducts,
        output_attentions: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The folded form with the cached weight products, label features `(B*K, C)`: returns the input of
        `project_mm` `(B*K, C)` and the attention map `(B, heads, K, H*W)` (`None` unless `output_attentions`). With one
        head, no attention map and `attn_implementation="sdpa"`, the attention is `scaled_dot_product_attention` (exact:
        one fused operation)."""
        batch_size, _, dim = visual_tokens.shape
        heads = self.num_heads
        label_input = torch.addmm(products.label_input_bias, label_features, products.label_input)
        folded_queries, gate_input = label_input.split([heads * dim, dim], dim=-1)
        attention_probs = None
        if heads == 1 and not output_attentions and self.config._attn_implementation == "sdpa":
            tokens = visual_tokens.unsqueeze(1)
            queries = folded_queries.view(batch_size, 1, -1, dim)
            attended_tokens = F.scaled_dot_product_attention(queries, tokens, tokens, scale=1.0).view(-1, dim)
        else:
            folded_queries = folded_queries.reshape(batch_size, -1, heads, dim).transpose(1, 2)
            attended_tokens, attention_probs = self._attend(
                folded_queries.reshape(batch_size, -1, dim), visual_tokens, visual_tokens
            )  # (B, heads*K, C), (B, heads*K, H*W)
            attended_tokens = attended_tokens.view(batch_size, heads, -1, dim).transpose(1, 2)
            attended_tokens = attended_tokens.reshape(-1, heads * dim)
            attention_probs = attention_probs.unflatten(1, (heads, -1))
        output = torch.addmm(self.proj.bias, attended_tokens, products.attended_output)
        return F.gelu(gate_input).mul_(output), attention_probs

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
        multimodal_features, attention_probs = self.forward_flat(
            label_features.reshape(-1, label_features.shape[-1]), visual_tokens, output_attentions
        )
        return multimodal_features.view(label_features.shape), attention_probs

    def forward_flat(
        self,
        label_features: torch.Tensor,
        visual_tokens: torch.Tensor,
        output_attentions: bool = False,
        multimodal_weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[`~HSVLTVisualLinguisticAttention.forward`] on label features flattened to `(B*K, C)` (the layout the
        blocks keep them in): returns `(B*K, C)` multi-modal features. `multimodal_weight` is `project_mm`'s weight
        transposed, when the caller keeps it ([`HSVLTTransposedWeights`])."""
        batch_size, num_tokens, dim = visual_tokens.shape
        num_labels = label_features.shape[0] // batch_size
        fold_with_products = self._fold(num_labels, num_tokens, dim, with_products=True)
        products = self._current_weight_products() if fold_with_products else None
        if products is not None:
            multimodal_input, attention_probs = self._forward_with_products(
                label_features, visual_tokens, products, output_attentions
            )
        else:
            queries = (self.query(label_features) * self.scale).view(batch_size, num_labels, dim)
            if self._fold(num_labels, num_tokens, dim, with_products=False):
                context, attention_probs = self._attention_folded(queries, visual_tokens)
            else:
                context, attention_probs = self._attention_straightforward(queries, visual_tokens)
            multimodal_input = F.gelu(self.vis_project(label_features)) * self.proj(context.reshape(-1, dim))
        if multimodal_weight is None:
            multimodal_weight = self.project_mm.weight.t()
        multimodal_features = F.gelu(torch.addmm(self.project_mm.bias, multimodal_input, multimodal_weight))
        return multimodal_features, attention_probs if output_attentions else None


class HSVLTLabelResidualGate(nn.Module):
    """Gated residual of the label features: `t + tanh(W2 relu(W1 t)) * t` (the authors' `res_gate`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.hidden = nn.Linear(dim, dim, bias=False)
        self.output = nn.Linear(dim, dim, bias=False)

    def forward(
        self,
        label_features: torch.Tensor,
        hidden_weight: torch.Tensor | None = None,
        output_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`label_features` `(rows, C)`; `hidden_weight`/`output_weight`: the transposed weights, when the caller keeps
        them ([`HSVLTTransposedWeights`])."""
        hidden_weight = self.hidden.weight.t() if hidden_weight is None else hidden_weight
        output_weight = self.output.weight.t() if output_weight is None else output_weight
        gate = torch.tanh(torch.mm(torch.relu(torch.mm(label_features, hidden_weight)), output_weight))
        return torch.addcmul(label_features, gate, label_features)


class HSVLTLabelUpdate(torch.autograd.Function):
    r"""
    The label side of one block with one IVLA head, with a hand-written backward: IVLA (folded or straightforward
    form), the residual `t + m` and the label gate (if any) as one autograd node (the straightforward composition of
    [`HSVLTVisualLinguisticAttention`], the residual and [`HSVLTLabelResidualGate`] gives the same values and
    gradients to float rounding).

    It saves only what the backward reads (the inputs, the scaled queries, the attention map, the keys and values or
    folded queries, and the activations of the per-label maps; not the logits before the softmax or the intermediate
    products autograd would keep), and its backward gets the gradients of the block's `C x C` label-side weights from
    one batched product: each of them is `A^T B` for two `(B*K, C)` matrices (`A`: the gradient of the map's output,
    `B`: its input), so they are stacked and multiplied at once, and the three biases are row sums of the same stack
    (in the straightforward form the key and value projections read the `B*H*W` tokens and get their own products).

    Inputs: label features `(B*K, C)`, visual tokens `(B, H*W, C)` (contiguous), the attention scale, the block's
    [`HSVLTTransposedWeights`] views (the forward reads the weights through them), whether to fold, then the weights
    `query`, `key`, `value`, `proj` (weight, bias), `vis_project` (weight, bias), `project_mm` (weight, bias) and the
    gate's `hidden`, `output` (both `None` for a block without gate). Outputs: the updated label features and the
    multi-modal features, both `(B*K, C)`.
    """

    @staticmethod
    def forward(ctx, *inputs):
        updated, multimodal_features, saved = HSVLTLabelUpdate.compute(*inputs)
        ctx.scale, ctx.fold, ctx.has_gate = inputs[2], inputs[4], inputs[-1] is not None
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*saved)
        return updated, multimodal_features

    @staticmethod
    def compute(
        label_features,
        visual_tokens,
        scale,
        transposed,
        fold,
        query,
        key,
        value,
        proj_weight,
        proj_bias,
        vis_weight,
        vis_bias,
        mm_weight,
        mm_bias,
        gate_hidden,
        gate_output,
    ):
        """The forward without autograd: returns the two outputs and the tensors the backward reads."""
        batch_size, _, dim = visual_tokens.shape
        # scaled queries, `scale * t W_q^T` (beta=0: the first argument only gives the shape and is not read)
        queries = torch.addmm(label_features, label_features, transposed["query"], beta=0, alpha=scale)
        if fold:
            folded_queries = torch.mm(queries, key).view(batch_size, -1, dim)
            keys_transposed = visual_tokens.transpose(1, 2)
            attention_probs = torch.softmax(torch.bmm(folded_queries, keys_transposed), dim=-1)
            attended_tokens = torch.bmm(attention_probs, visual_tokens).view(-1, dim)
            context = torch.mm(attended_tokens, transposed["value"])
            attention_tensors = (visual_tokens, keys_transposed, folded_queries, attended_tokens)
        else:
            token_rows = visual_tokens.view(-1, dim)
            keys = torch.mm(token_rows, transposed["key"]).view(batch_size, -1, dim)
            keys_transposed = keys.transpose(1, 2)
            values = torch.mm(token_rows, transposed["value"]).view(batch_size, -1, dim)
            attention_probs = torch.softmax(torch.bmm(queries.view(batch_size, -1, dim), keys_transposed), dim=-1)
            context = torch.bmm(attention_probs, values).view(-1, dim)
            attention_tensors = (keys, keys_transposed, values, token_rows)
        output = torch.addmm(proj_bias, context, transposed["proj"])
        vis_input = torch.addmm(vis_bias, label_features, transposed["vis_project"])
        vis_features = F.gelu(vis_input)
        multimodal_input = vis_features * output
        multimodal_logits = torch.addmm(mm_bias, multimodal_input, transposed["project_mm"])
        multimodal_features = F.gelu(multimodal_logits)
        updated = label_features + multimodal_features
        gate_tensors = ()
        if gate_hidden is not None:
            gate_activation = torch.relu(torch.mm(updated, transposed["gate_hidden"]))
            gate = torch.tanh(torch.mm(gate_activation, transposed["gate_output"]))
            gate_tensors = (updated, gate_activation, gate, gate_hidden, gate_output)
            updated = torch.addcmul(updated, gate, updated)
        saved = (
            label_features,
            *attention_tensors,
            queries,
            attention_probs,
            context,
            output,
            vis_input,
            vis_features,
            multimodal_input,
            multimodal_logits,
            query,
            key,
            value,
            proj_weight,
            vis_weight,
            mm_weight,
            transposed["key"],
            *gate_tensors,
        )
        return updated, multimodal_features, saved

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_updated, grad_multimodal):
        (
            label_features,
            tokens_or_keys,
            keys_transposed,
            folded_or_values,
            attended_or_token_rows,
            queries,
            attention_probs,
            context,
            output,
            vis_input,
            vis_features,
            multimodal_input,
            multimodal_logits,
            query,
            key,
            value,
            proj_weight,
            vis_weight,
            mm_weight,
            key_transposed,
            *gate_tensors,
        ) = ctx.saved_tensors
        batch_size, dim = attention_probs.shape[0], label_features.shape[-1]
        if grad_updated is None:  # only the label features of the model's last block may reach no output
            grad_updated = torch.zeros_like(label_features)
        pairs = {}  # weight name -> (A, B) of its gradient A^T B
        if ctx.has_gate:
            residual, gate_activation, gate, gate_hidden, gate_output = gate_tensors
            grad_gate = torch.ops.aten.tanh_backward(grad_updated * residual, gate)
            grad_activation = torch.ops.aten.threshold_backward(torch.mm(grad_gate, gate_output), gate_activation, 0)
            grad_updated = torch.addmm(torch.addcmul(grad_updated, grad_updated, gate), grad_activation, gate_hidden)
            pairs.update(gate_hidden=(grad_activation, residual), gate_output=(grad_gate, gate_activation))
        grad_multimodal = grad_updated if grad_multimodal is None else grad_updated + grad_multimodal
        grad_multimodal_logits = torch.ops.aten.gelu_backward(grad_multimodal, multimodal_logits)
        grad_multimodal_input = torch.mm(grad_multimodal_logits, mm_weight)
        grad_vis_input = torch.ops.aten.gelu_backward(grad_multimodal_input * output, vis_input)
        grad_output = grad_multimodal_input * vis_features
        grad_context = torch.mm(grad_output, proj_weight)
        pairs.update(
            proj=(grad_output, context),
            vis_project=(grad_vis_input, label_features),
            project_mm=(grad_multimodal_logits, multimodal_input),
        )
        if ctx.fold:
            visual_tokens, folded_queries, attended_tokens = tokens_or_keys, folded_or_values, attended_or_token_rows
            grad_attended = torch.mm(grad_context, value).view(batch_size, -1, dim)
            grad_logits = torch._softmax_backward_data(
                torch.bmm(grad_attended, keys_transposed), attention_probs, -1, attention_probs.dtype
            )
            grad_folded = torch.bmm(grad_logits, visual_tokens).view(-1, dim)
            grad_tokens = torch.baddbmm(
                torch.bmm(attention_probs.transpose(1, 2), grad_attended), grad_logits.transpose(1, 2), folded_queries
            )
            # the gradient of `t W_q^T`: that of the scaled queries times the scale (beta=0: first argument not read)
            grad_queries = torch.addmm(grad_folded, grad_folded, key_transposed, beta=0, alpha=ctx.scale)
            pairs.update(key=(queries, grad_folded), value=(grad_context, attended_tokens))
            weight_grads = {}
        else:
            keys, values, token_rows = tokens_or_keys, folded_or_values, attended_or_token_rows
            grad_context = grad_context.view(batch_size, -1, dim)
            grad_values = torch.bmm(attention_probs.transpose(1, 2), grad_context).view(-1, dim)
            grad_logits = torch._softmax_backward_data(
                torch.bmm(grad_context, values.transpose(1, 2)), attention_probs, -1, attention_probs.dtype
            )
            grad_queries = torch.baddbmm(grad_context, grad_logits, keys, beta=0, alpha=ctx.scale).view(-1, dim)
            grad_keys = torch.bmm(grad_logits.transpose(1, 2), queries.view(batch_size, -1, dim)).view(-1, dim)
            grad_tokens = torch.addmm(torch.mm(grad_keys, key), grad_values, value).view(batch_size, -1, dim)
            weight_grads = {
                "key": torch.mm(grad_keys.t(), token_rows),
                "value": torch.mm(grad_values.t(), token_rows),
            }
        grad_labels = torch.addmm(torch.addmm(grad_updated, grad_queries, query), grad_vis_input, vis_weight)
        pairs.update(query=(grad_queries, label_features))
        outer_grads = torch.stack([outer for outer, _ in pairs.values()])
        inputs = torch.stack([inner for _, inner in pairs.values()])
        weight_grads.update(zip(pairs, torch.bmm(outer_grads.transpose(1, 2), inputs).unbind(0)))
        bias_grads = dict(zip(pairs, outer_grads.sum(1).unbind(0)))
        return (
            grad_labels,
            grad_tokens,
            None,
            None,
            None,
            weight_grads["query"],
            weight_grads["key"],
            weight_grads["value"],
            weight_grads["proj"],
            bias_grads["proj"],
            weight_grads["vis_project"],
            bias_grads["vis_project"],
            weight_grads["project_mm"],
            bias_grads["project_mm"],
            weight_grads.get("gate_hidden"),
            weight_grads.get("gate_output"),
        )


class HSVLTVisualUpdate(torch.autograd.Function):
    r"""
    The ConvNeXt block of an HSVLT block on the `(B, H, W, C)` map (dwconv 7x7, LayerNorm, Linear 4x, GELU, Linear,
    layer scale, residual), with a hand-written backward: the same operations as `ConvNextLayer.forward` (so the same
    values, bit for bit) as one autograd node, whose backward calls the LayerNorm's and the convolution's own backward
    operations and computes each weight gradient with one product.

    Inputs: the map, the LayerNorm epsilon, the block's [`HSVLTTransposedWeights`] views, then `dwconv` (weight, bias),
    `layernorm` (weight, bias), `pwconv1` (weight, bias), `pwconv2` (weight, bias) and the layer scale.
    """

    @staticmethod
    def forward(ctx, *inputs):
        output, saved = HSVLTVisualUpdate.compute(*inputs)
        ctx.eps = inputs[1]
        ctx.save_for_backward(*saved)
        return output

    @staticmethod
    def compute(
        hidden_states,
        eps,
        transposed,
        dwconv_weight,
        dwconv_bias,
        norm_weight,
        norm_bias,
        pwconv1_weight,
        pwconv1_bias,
        pwconv2_weight,
        pwconv2_bias,
        layer_scale,
    ):
        """The forward without autograd: returns the new map and the tensors the backward reads."""
        dim = hidden_states.shape[-1]
        channels_first = hidden_states.permute(0, 3, 1, 2)
        convolved = F.conv2d(channels_first, dwconv_weight, dwconv_bias, padding=3, groups=dim).permute(0, 2, 3, 1)
        normalized, mean, rstd = torch.native_layer_norm(convolved, (dim,), norm_weight, norm_bias, eps)
        normalized = normalized.view(-1, dim)
        expanded = torch.addmm(pwconv1_bias, normalized, transposed["pwconv1"])
        activated = F.gelu(expanded)
        features = torch.addmm(pwconv2_bias, activated, transposed["pwconv2"])
        output = hidden_states + layer_scale * features.view(hidden_states.shape)
        saved = (channels_first, convolved, mean, rstd, normalized, expanded, activated, features)
        return output, saved + (dwconv_weight, norm_weight, norm_bias, pwconv1_weight, pwconv2_weight, layer_scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (
            channels_first,
            convolved,
            mean,
            rstd,
            normalized,
            expanded,
            activated,
            features,
            dwconv_weight,
            norm_weight,
            norm_bias,
            pwconv1_weight,
            pwconv2_weight,
            layer_scale,
        ) = ctx.saved_tensors
        dim = convolved.shape[-1]
        grad_rows = grad_output.reshape(-1, dim)
        grad_features = grad_rows * layer_scale
        grad_layer_scale = (grad_rows * features).sum(0)
        grad_expanded = torch.ops.aten.gelu_backward(torch.mm(grad_features, pwconv2_weight), expanded)
        grad_pwconv2 = torch.mm(grad_features.t(), activated)
        grad_pwconv1 = torch.mm(grad_expanded.t(), normalized)
        grad_normalized = torch.mm(grad_expanded, pwconv1_weight).view(convolved.shape)
        grad_convolved, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_layer_norm_backward(
            grad_normalized, convolved, (dim,), mean, rstd, norm_weight, norm_bias, [True, True, True]
        )
        grad_input, grad_dwconv_weight, grad_dwconv_bias = torch.ops.aten.convolution_backward(
            grad_convolved.permute(0, 3, 1, 2),
            channels_first,
            dwconv_weight,
            [dim],
            [1, 1],
            [3, 3],
            [1, 1],
            False,
            [0, 0],
            dim,
            [True, True, True],
        )
        return (
            grad_output + grad_input.permute(0, 2, 3, 1),
            None,
            None,
            grad_dwconv_weight,
            grad_dwconv_bias,
            grad_norm_weight,
            grad_norm_bias,
            grad_pwconv1,
            grad_expanded.sum(0),
            grad_pwconv2,
            grad_features.sum(0),
            grad_layer_scale,
        )


class HSVLTLayer(GradientCheckpointingLayer, ConvNextLayer):
    """
    One HSVLT block: transformers' ConvNeXt block on the visual map (`ConvNextLayer`'s modules: dwconv 7x7, LayerNorm,
    Linear 4x, GELU, Linear, layer scale, drop path, residual), then IVLA from the label features to the block's output
    tokens and the label update `t <- t + drop_path(m)`, `t <- t + gate(t) * t`. The visual map is not changed by IVLA.
    The last block of the model has no gate (`label_gate=False`): its gated label features would reach no output (the
    authors' model has one, never used; see `docs/hsvlt.md`).

    Layout: the visual map is kept as `(B, H, W, C)` (channels-last, contiguous), so that the tokens `(B, H*W, C)` and
    the rows of the pointwise layers `(B*H*W, C)` are views, and the label features as `(B*K, C)` rows. Each linear
    map is one `addmm`/`mm` on such rows. In eager inference the transposed weights are kept
    ([`HSVLTTransposedWeights`]) with IVLA's products; with gradients, one head and the folded form, the label side is
    one autograd node ([`HSVLTLabelUpdate`]). Either way the outputs equal the straightforward composition of the
    modules (transformers' `ConvNextLayer.forward`, IVLA, residual, gate) to float rounding.
    """

    def __init__(self, config: HSVLTConfig, dim: int, drop_path: float = 0.0, label_gate: bool = True):
        super().__init__(config, dim, drop_path)
        self.layernorm.eps = config.layer_norm_eps
        self.label_attention = HSVLTVisualLinguisticAttention(config, dim)
        self.label_gate = HSVLTLabelResidualGate(dim) if label_gate else None
        self.transposed_weights: HSVLTTransposedWeights | None = None

    def _kept_transposed_weights(self) -> dict[str, torch.Tensor]:
        """The block's [`HSVLTTransposedWeights`] views, recomputed if a weight got other storage."""
        attention, gate = self.label_attention, self.label_gate
        sources = {
            "pwconv1": self.pwconv1.weight,
            "pwconv2": self.pwconv2.weight,
            "query": attention.query.weight,
            "key": attention.key.weight,
            "value": attention.value.weight,
            "proj": attention.proj.weight,
            "vis_project": attention.vis_project.weight,
            "project_mm": attention.project_mm.weight,
        }
        if gate is not None:
            sources.update(gate_hidden=gate.hidden.weight, gate_output=gate.output.weight)
        if self.transposed_weights is None or not self.transposed_weights.is_current(sources):
            self.transposed_weights = HSVLTTransposedWeights.compute(sources)
        return self.transposed_weights.weights

    def _drop_path_active(self) -> bool:
        return self.training and not isinstance(self.drop_path, nn.Identity)

    def _visual_block(
        self, hidden_states: torch.Tensor, pwconv1_weight: torch.Tensor, pwconv2_weight: torch.Tensor
    ) -> torch.Tensor:
        """`ConvNextLayer.forward` on the `(B, H, W, C)` map, operation for operation (the same values, bit for bit),
        with the pointwise layers' weights given transposed."""
        features = self.dwconv(hidden_states.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        features = self.layernorm(features).view(-1, hidden_states.shape[-1])
        features = self.act(torch.addmm(self.pwconv1.bias, features, pwconv1_weight))
        features = torch.addmm(self.pwconv2.bias, features, pwconv2_weight).view(hidden_states.shape)
        if self.layer_scale_parameter is not None:
            features = self.layer_scale_parameter * features
        return hidden_states + self.drop_path(features)

    def _hand_written_backward(self) -> bool:
        """Whether the block may run as autograd Functions with hand-written backwards: outside eager inference
        (whose weight products save more), in eager mode without drop path or autocast. Also without gradients in
        training mode, so that the forward of reentrant activation checkpointing (run without gradients, then again
        with them) computes the same values both times."""
        return (
            _eager_inference_cache(self.training) is None
            and not self._drop_path_active()
            and not torch.is_autocast_enabled(self.pwconv1.weight.device.type)
            and not (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing())
        )

    def _fused_visual_update(self) -> bool:
        """Whether the ConvNeXt block runs as [`HSVLTVisualUpdate`] (GELU activation and layer scale, as in ConvNeXt)."""
        return (
            self._hand_written_backward()
            and isinstance(self.act, GELUActivation)
            and self.layer_scale_parameter is not None
            and self.dwconv.weight.shape[-1] == 7
        )

    def _fused_label_update(self, output_attentions: bool) -> bool:
        """Whether the label side runs as [`HSVLTLabelUpdate`]: where the block may (`_hand_written_backward`), with
        one head, without attention maps."""
        return self._hand_written_backward() and self.label_attention.num_heads == 1 and not output_attentions

    def forward(
        self, hidden_states: torch.Tensor, label_features: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        Args:
            hidden_states: visual map `(B, H, W, C)`, contiguous.
            label_features: `(B*K, C)`.
        Returns:
            `(hidden_states, label_features, multimodal_features, attention_probs)`: the new visual map `(B, H, W, C)`,
            the updated label features and the multi-modal features `(B*K, C)`, and the attention map
            `(B, heads, K, H*W)` or `None`.
        """
        eager_inference = _eager_inference_cache(self.training) == "cache"
        kept = self._kept_transposed_weights() if eager_inference else None
        if eager_inference:
            hidden_states = self._visual_block(hidden_states, kept["pwconv1"], kept["pwconv2"])
        elif self._fused_visual_update():
            update = HSVLTVisualUpdate.apply if torch.is_grad_enabled() else HSVLTVisualUpdate.compute
            hidden_states = update(
                hidden_states,
                self.layernorm.eps,
                self._kept_transposed_weights(),
                self.dwconv.weight,
                self.dwconv.bias,
                self.layernorm.weight,
                self.layernorm.bias,
                self.pwconv1.weight,
                self.pwconv1.bias,
                self.pwconv2.weight,
                self.pwconv2.bias,
                self.layer_scale_parameter,
            )
            if not torch.is_grad_enabled():
                hidden_states = hidden_states[0]
        else:  # autograd, compilers and exporters see the weights themselves
            hidden_states = self._visual_block(hidden_states, self.pwconv1.weight.t(), self.pwconv2.weight.t())
        batch_size, height, width, dim = hidden_states.shape
        visual_tokens = hidden_states.view(batch_size, height * width, dim)
        attention, gate = self.label_attention, self.label_gate
        if self._fused_label_update(output_attentions):
            update = HSVLTLabelUpdate.apply if torch.is_grad_enabled() else HSVLTLabelUpdate.compute
            label_features, multimodal_features = update(
                label_features,
                visual_tokens,
                attention.scale,
                self._kept_transposed_weights(),
                attention._fold(label_features.shape[0] // batch_size, height * width, dim, with_products=False),
                attention.query.weight,
                attention.key.weight,
                attention.value.weight,
                attention.proj.weight,
                attention.proj.bias,
                attention.vis_project.weight,
                attention.vis_project.bias,
                attention.project_mm.weight,
                attention.project_mm.bias,
                None if gate is None else gate.hidden.weight,
                None if gate is None else gate.output.weight,
            )[:2]
            return hidden_states, label_features, multimodal_features, None
        multimodal_features, attention_probs = attention.forward_flat(
            label_features, visual_tokens, output_attentions, kept["project_mm"] if eager_inference else None
        )
        if self._drop_path_active():  # per image, as on the visual map
            dropped = self.drop_path(multimodal_features.view(batch_size, -1, dim))
            label_features = label_features + dropped.view(-1, dim)
        else:
            label_features = label_features + multimodal_features
        if gate is not None:
            gate_weights = (kept["gate_hidden"], kept["gate_output"]) if eager_inference else ()
            label_features = gate(label_features, *gate_weights)
        return hidden_states, label_features, multimodal_features, attention_probs


class HSVLTStage(nn.Module):
    """A stage: downsampling (LayerNorm + Conv2d k=2 s=2, except for the first stage), the projection of the incoming
    label features to the stage width (the authors' `langs.{i}`), and `depth` [`HSVLTLayer`]s, the last one without
    label gate unless `last_label_gate` (false for the model's last stage)."""

    def __init__(
        self,
        config: HSVLTConfig,
        in_channels: int,
        out_channels: int,
        in_label_size: int,
        downsample: bool,
        drop_path_rates,
        last_label_gate: bool = True,
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
        gates = [True] * (len(drop_path_rates) - 1) + [last_label_gate]
        self.layers = nn.ModuleList(
            [HSVLTLayer(config, out_channels, rate, gate) for rate, gate in zip(drop_path_rates, gates)]
        )

    def forward(self, hidden_states: torch.Tensor, label_features: torch.Tensor, output_attentions: bool = False):
        """Visual map `(B, H, W, C)` and label features `(B*K, C)` in the layouts of [`HSVLTLayer`]. Returns
        `(hidden_states, label_features, multimodal_features of the last block, attention maps per block)`."""
        if self.downsampling_layer:
            hidden_states = hidden_states.permute(0, 3, 1, 2)
            for layer in self.downsampling_layer:
                hidden_states = layer(hidden_states)
            hidden_states = hidden_states.permute(0, 2, 3, 1).contiguous()  # a view when the map is channels-last
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
        drop_path_rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").split(
            config.depths
        )
        in_sizes = [config.hidden_sizes[0]] + list(config.hidden_sizes[:-1])
        in_label_sizes = [config.label_embedding_size] + list(config.hidden_sizes[:-1])
        self.stages = nn.ModuleList(
            HSVLTStage(
                config,
                in_size,
                out_size,
                label_size,
                downsample=index > 0,
                drop_path_rates=rates.tolist(),
                last_label_gate=index < config.num_stages - 1,
            )
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
        """Visual map `(B, C, H, W)` (stored channels-last, as the stem's LayerNorm returns it) and label features
        `(B, K, label_embedding_size)`; the stages run on the layouts of [`HSVLTLayer`]."""
        batch_size, num_labels = label_features.shape[:2]
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        hidden_states = hidden_states.permute(0, 2, 3, 1).contiguous()  # a view when the map is channels-last
        label_features = label_features.reshape(batch_size * num_labels, -1)
        multimodal_features = ()
        for stage in self.stages:
            hidden_states, label_features, stage_multimodal, stage_attentions = stage(
                hidden_states, label_features, output_attentions
            )
            multimodal_features = multimodal_features + (stage_multimodal.view(batch_size, num_labels, -1),)
            if output_hidden_states:
                all_hidden_states = all_hidden_states + (hidden_states.permute(0, 3, 1, 2),)
            if output_attentions:
                all_attentions = all_attentions + stage_attentions
        hidden_states = hidden_states.permute(0, 3, 1, 2)
        label_features = label_features.view(batch_size, num_labels, -1)
        return HSVLTModelOutput(
            last_hidden_state=hidden_states,
            label_features=label_features,
            multimodal_features=multimodal_features,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
