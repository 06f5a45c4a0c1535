"""PyTorch PVLR (Tan et al., arXiv 2401.17881): reconstruction from the abstract and figure; not checked against the
paper.

PVLR (Prompt-driven Visual-Linguistic Representation learning) classifies by the similarity of context-aware label
representations and semantic-related visual representations, with no static classifier. The authors released no
code; the equations below are reconstructed from the abstract and third-party summaries. With CLIP's text tower
TextEnc (frozen) and the projected patch tokens V `(B, N, d)` of CLIP's image tower:

```
KAP: T_k = TextEnc("A photo of a {name}.")                           (C, d)  fixed prompts, no gradient
CAP: T_c = TextEnc([v_1 .. v_M] "{name}.")                           (C, d)  M shared learnable context vectors
IFM: g = sigmoid(W2 GELU(W1 [T_k || T_c]));  T = LN(g * T_k + (1 - g) * T_c);  T = T + FFN(T);  T = T + MHSA(T)
DMA (x num_dma_layers):  T = LN(T + MHA(q=T, k=V, v=V));  V = LN(V + MHA(q=V, k=T, v=T))
f_k = sum_i softmax_i(<V_i, T_k> / sqrt(d)) V_i
logit_k = cos(f_k, T_k) / tau                                        (tau learnable, init 0.07)
L = ASL(logits, y)
```

CAP is CoOp-style: the context vectors replace the embeddings of placeholder tokens right after the start token, in
the text tower's input embeddings. The context is shared by all labels, so new label names work at inference. Every
reconstructed constant is a field of [`PVLRConfig`]. The attention of the label representations over the visual
tokens in each DMA layer, on the patch grid, is the per-label heatmap (`output_attentions=True`).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .clip_towers import (
    ClassNameInputsMixin,
    CLIPTowers,
    CLIPTowersPreTrainedModel,
    CosineLogits,
    OpenVocabularyClassifierMixin,
    check_pixel_values,
    tokenize_prompts,
    trim_padding,
)
from .configuration_pvlr import PVLRConfig
from .multilabel_losses import multilabel_loss


@dataclass
class PVLRModelOutput(ModelOutput):
    r"""
    Output of [`PVLRModel`].

    Args:
        label_features (`torch.FloatTensor` of shape `(batch_size, num_labels, projection_dim)`):
            The context-aware label representations T after the last DMA layer.
        visual_features (`torch.FloatTensor` of shape `(batch_size, num_patches, projection_dim)`):
            The semantic-related visual representations V after the last DMA layer.
        pooled_features (`torch.FloatTensor` of shape `(batch_size, num_labels, projection_dim)`):
            f_k: the visual representations pooled for each label.
        knowledge_embeds (`torch.FloatTensor` of shape `(num_labels, projection_dim)`):
            T_k, the text tower's embeddings of the Knowledge-Aware Prompts.
        context_embeds (`torch.FloatTensor` of shape `(num_labels, projection_dim)`):
            T_c, the text tower's embeddings of the Context-Aware Prompts.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            The image tower's hidden states, `(batch_size, 1 + num_patches, vision hidden_size)` each ([CLS] first).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            For each DMA layer, the attention of the label representations over the visual tokens,
            `(batch_size, num_attention_heads, num_labels, height / patch_size, width / patch_size)`.
    """

    label_features: torch.FloatTensor | None = None
    visual_features: torch.FloatTensor | None = None
    pooled_features: torch.FloatTensor | None = None
    knowledge_embeds: torch.FloatTensor | None = None
    context_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class PVLRMultiLabelClassifierOutput(ModelOutput):
    r"""
    Output of [`PVLRForMultiLabelClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            `multilabel_loss(logits, labels)` (ASL by default).
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            One logit per label; `sigmoid(logits)` are the multi-label probabilities.
        hidden_states, attentions (`tuple(torch.FloatTensor)`, *optional*):
            As in [`PVLRModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class PVLRContextPrompt(nn.Module):
    """Context-Aware Prompting's M learnable context vectors `(M, text hidden_size)`, shared by all labels: they
    replace the token embeddings at positions 1..M (after the start token) of the context prompts."""

    def __init__(self, config: PVLRConfig):
        super().__init__()
        self.context = nn.Parameter(torch.empty(config.num_context_tokens, config.text_config.hidden_size))

    def forward(self, token_embeds: torch.Tensor) -> torch.Tensor:
        """`(C, L, D)` -> `(C, L, D)`."""
        num_prompts, num_context = token_embeds.shape[0], self.context.shape[0]
        context = self.context.to(token_embeds.dtype).expand(num_prompts, -1, -1)
        return torch.cat([token_embeds[:, :1], context, token_embeds[:, 1 + num_context :]], dim=1)


class PVLRFusion(nn.Module):
    """
    The Interaction and Fusion Module: a channel gate mixes the knowledge-aware and context-aware label embeddings,
    then a feed-forward network and self-attention across the labels (relations between labels), each residual:
    `g = sigmoid(W2 GELU(W1 [T_k || T_c]))`, `T = LN(g * T_k + (1 - g) * T_c)`, `T = T + FFN(T)`, `T = T + MHSA(T)`.
    """

    def __init__(self, config: PVLRConfig):
        super().__init__()
        dim = config.projection_dim
        self.gate = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, config.fusion_intermediate_size), nn.GELU(), nn.Linear(config.fusion_intermediate_size, dim)
        )
        self.self_attention = nn.MultiheadAttention(
            dim, config.num_attention_heads, dropout=config.attention_dropout, batch_first=True
        )

    def forward(self, knowledge_embeds: torch.Tensor, context_embeds: torch.Tensor) -> torch.Tensor:
        """`(C, d)` and `(C, d)` -> `(C, d)`."""
        gate = torch.sigmoid(self.gate(torch.cat([knowledge_embeds, context_embeds], dim=-1)))
        label_features = self.norm(gate * knowledge_embeds + (1 - gate) * context_embeds)
        label_features = label_features + self.feed_forward(label_features)
        label_features = label_features.unsqueeze(0)
        attended, _ = self.self_attention(label_features, label_features, label_features, need_weights=False)
        return (label_features + attended).squeeze(0)


class PVLRDualModalAttentionLayer(nn.Module):
    """One Dual-Modal Attention layer: the labels attend to the visual tokens, then the visual tokens to the updated
    labels, each with a residual and a LayerNorm: `T = LN(T + MHA(T, V, V))`, `V = LN(V + MHA(V, T, T))`."""

    def __init__(self, config: PVLRConfig):
        super().__init__()
        dim, heads = config.projection_dim, config.num_attention_heads
        self.text_attention = nn.MultiheadAttention(dim, heads, dropout=config.attention_dropout, batch_first=True)
        self.text_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.visual_attention = nn.MultiheadAttention(dim, heads, dropout=config.attention_dropout, batch_first=True)
        self.visual_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def forward(
        self, label_features: torch.Tensor, visual_features: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """
        Args:
            label_features: `(B, C, d)`.
            visual_features: `(B, N, d)`.
        Returns:
            The updated label and visual features and, if `output_attentions`, the attention of the labels over the
            visual tokens `(B, heads, C, N)`.
        """
        attended, attention_weights = self.text_attention(
            label_features,
            visual_features,
            visual_features,
            need_weights=output_attentions,
            average_attn_weights=False,
        )
        label_features = self.text_norm(label_features + attended)
        attended, _ = self.visual_attention(visual_features, label_features, label_features, need_weights=False)
        visual_features = self.visual_norm(visual_features + attended)
        return label_features, visual_features, attention_weights


def label_attention_pooling(visual_features: torch.Tensor, label_features: torch.Tensor) -> torch.Tensor:
    """f_k = sum_i softmax_i(<V_i, T_k> / sqrt(d)) V_i: `(B, N, d)` and `(B, C, d)` -> `(B, C, d)`."""
    scores = label_features @ visual_features.transpose(1, 2) / visual_features.shape[-1] ** 0.5
    return torch.softmax(scores, dim=-1) @ visual_features


class PVLRPreTrainedModel(CLIPTowersPreTrainedModel):
    """Weight initialisation and the common interface of PVLR models."""

    config_class = PVLRConfig
    config: PVLRConfig
    base_model_prefix = "pvlr"
    remote_code_auto_map = {
        "AutoConfig": "configuration_pvlr.PVLRConfig",
        "AutoModel": "modeling_pvlr.PVLRModel",
        "AutoModelForImageClassification": "modeling_pvlr.PVLRForMultiLabelClassification",
    }

    @torch.no_grad()
    def _init_weights(self, module):
        """As [`CLIPTowersPreTrainedModel`], and the context vectors normal with `config.context_init_std`."""
        super()._init_weights(module)
        if isinstance(module, PVLRContextPrompt):
            init.normal_(module.context, std=self.config.context_init_std)


class PVLRModel(ClassNameInputsMixin, PVLRPreTrainedModel):
    """
    PVLR without the similarity head: the CLIP towers, the knowledge- and context-aware prompts, the fusion module and
    the Dual-Modal Attention. Reconstruction from the abstract and figure; not checked against the paper.

    The label prompts are stored tokenized in the persistent buffers `class_input_ids`/`class_attention_mask` (the
    Knowledge-Aware Prompts) and `class_context_input_ids`/`class_context_attention_mask` (the Context-Aware Prompts,
    with M placeholder tokens), `(num_labels, text_config.max_position_embeddings)` each (see `set_class_names`).
    """

    class_name_input_names = (
        "class_input_ids",
        "class_attention_mask",
        "class_context_input_ids",
        "class_context_attention_mask",
    )

    def __init__(self, config: PVLRConfig):
        super().__init__(config)
        self.towers = CLIPTowers(config)
        self.context_prompt = PVLRContextPrompt(config)
        self.fusion = PVLRFusion(config)
        self.dual_modal_attention = nn.ModuleList(
            PVLRDualModalAttentionLayer(config) for _ in range(config.num_dma_layers)
        )
        self._register_class_name_buffers()
        self.post_init()

    def class_name_inputs(self, names: Sequence[str], tokenizer) -> dict[str, torch.Tensor]:
        """The tokenized Knowledge-Aware (`config.prompt_template`) and Context-Aware (M placeholders, then
        `config.context_prompt_template`) prompts of `names`, as forward keyword arguments."""
        config = self.config
        input_ids, attention_mask = tokenize_prompts(
            tokenizer, [config.prompt_template.format(name) for name in names], config.text_config
        )
        context_input_ids, context_attention_mask = tokenize_prompts(
            tokenizer,
            [config.context_prompt_template.format(name) for name in names],
            config.text_config,
            num_context_tokens=config.num_context_tokens,
        )
        return {
            "class_input_ids": input_ids,
            "class_attention_mask": attention_mask,
            "class_context_input_ids": context_input_ids,
            "class_context_attention_mask": context_attention_mask,
        }

    def encode_context_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """T_c: the text tower on the context prompts with the context vectors in place, `(C, projection_dim)`."""
        input_ids, attention_mask = trim_padding(input_ids, attention_mask)
        token_embeds = self.towers.text_model.embeddings.token_embedding(input_ids)
        return self.towers.encode_token_embeddings(self.context_prompt(token_embeds), attention_mask, input_ids)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        class_input_ids: torch.Tensor | None = None,
        class_attention_mask: torch.Tensor | None = None,
        class_context_input_ids: torch.Tensor | None = None,
        class_context_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> PVLRModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images normalised as CLIP's (see [`MultiLabelImageProcessor`] with CLIP's mean and std); any size that is a
                multiple of the patch size (the position embeddings are interpolated).
            class_input_ids, class_attention_mask, class_context_input_ids, class_context_attention_mask
                (`torch.LongTensor` of shape `(num_classes, length)`, *optional*):
                Tokenized prompts of other class names than the stored ones (`class_name_inputs(names, tokenizer)`);
                all four or none. Not called `label_*`: `Trainer` treats every such argument as a target.
            output_attentions (`bool`, *optional*):
                Return the attention of the labels over the visual tokens of every DMA layer.
            output_hidden_states (`bool`, *optional*):
                Return the image tower's hidden states.
        """
        check_pixel_values(pixel_values, self.config)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        class_inputs = self.resolve_class_name_inputs(
            class_input_ids=class_input_ids,
            class_attention_mask=class_attention_mask,
            class_context_input_ids=class_context_input_ids,
            class_context_attention_mask=class_context_attention_mask,
        )
        _, hidden_states = self.towers.encode_image(pixel_values)
        visual_features = self.towers.project_patch_tokens(hidden_states[-1])
        knowledge_embeds = self.towers.encode_text(
            class_inputs["class_input_ids"], class_inputs["class_attention_mask"]
        )
        context_embeds = self.encode_context_prompts(
            class_inputs["class_context_input_ids"], class_inputs["class_context_attention_mask"]
        )
        fused = self.fusion(knowledge_embeds, context_embeds)
        label_features = fused.unsqueeze(0).expand(pixel_values.shape[0], -1, -1)
        attentions = ()
        for layer in self.dual_modal_attention:
            label_features, visual_features, attention_weights = layer(
                label_features, visual_features, output_attentions
            )
            if output_attentions:
                attentions += (attention_weights.unflatten(-1, self.towers.patch_grid(pixel_values)),)
        return PVLRModelOutput(
            label_features=label_features,
            visual_features=visual_features,
            pooled_features=label_attention_pooling(visual_features, label_features),
            knowledge_embeds=knowledge_embeds,
            context_embeds=context_embeds,
            hidden_states=hidden_states if output_hidden_states else None,
            attentions=attentions if output_attentions else None,
        )


class PVLRForMultiLabelClassification(OpenVocabularyClassifierMixin, PVLRPreTrainedModel):
    """
    PVLR for multi-label classification: `logit_k = exp(logit_scale) * cos(f_k, T_k)` (`exp(logit_scale)` = 1 / tau)
    and the loss `multilabel_loss` (ASL by default). Reconstruction from the abstract and figure; not checked against
    the paper.

    Open vocabulary: any label names work at inference (the knowledge prompts go through the text tower, the context
    vectors are shared): `set_class_names(names, tokenizer)` makes them the model's labels (saved with the
    checkpoint), and `model(pixel_values, **model.class_name_inputs(names, tokenizer))` scores them once. The fusion
    module's self-attention relates the labels to each other, so a label's score depends on the other names given.
    """

    accepts_loss_kwargs = False

    def __init__(self, config: PVLRConfig):
        super().__init__(config)
        self.pvlr = PVLRModel(config)
        self.logits = CosineLogits(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_input_ids: torch.Tensor | None = None,
        class_attention_mask: torch.Tensor | None = None,
        class_context_input_ids: torch.Tensor | None = None,
        class_context_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> PVLRMultiLabelClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                As in [`PVLRModel`].
            labels (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
                1 present, 0 absent, -1 left out of the loss; soft targets in [0, 1] are accepted.
            class_input_ids, class_attention_mask, class_context_input_ids, class_context_attention_mask,
            output_attentions, output_hidden_states:
                As in [`PVLRModel`].
        """
        outputs = self.pvlr(
            pixel_values,
            class_input_ids=class_input_ids,
            class_attention_mask=class_attention_mask,
            class_context_input_ids=class_context_input_ids,
            class_context_attention_mask=class_context_attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.logits(outputs.pooled_features, outputs.label_features)
        loss = multilabel_loss(logits, labels, self.config) if labels is not None else None
        return PVLRMultiLabelClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


PVLRConfig.register_for_auto_class()
PVLRModel.register_for_auto_class("AutoModel")
PVLRForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "PVLRForMultiLabelClassification",
    "PVLRModel",
    "PVLRModelOutput",
    "PVLRMultiLabelClassifierOutput",
    "PVLRPreTrainedModel",
]
