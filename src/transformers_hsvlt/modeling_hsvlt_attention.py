"""HSVLT's Interactive Visual-Linguistic Attention (remote code, imported by `modeling_hsvlt_encoder.py`): IVLA from
the label features to a block's visual tokens (folded and straightforward forms), the gated label residual, and what
eager inference keeps of the weights: IVLA's weight products and the blocks' transposed weights, with the rule that
says when they may be kept."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_hsvlt import HSVLTConfig


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


def eager_inference_cache(training: bool) -> str | None:
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
        mode = eager_inference_cache(self.training)
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
