"""PyTorch PatchCT (Li et al., ICCV 2023): reconstruction from the abstract and figure; not checked against the paper.

PatchCT aligns the set of an image's patch embeddings with the set of its label embeddings by a bidirectional
conditional-transport (CT) cost, used as a semantic regulariser of a CLIP-based multi-label classifier. The authors
released no code; the equations below are reconstructed from the abstract, the official framework figure and the CT
code of the same group (WeTe `cost_ct`, Proto_DA, POUF). With the patch tokens z_1..z_N of the image tower projected
to the joint space and L2-normalised (weights p_n = 1/N), and the label embeddings l_1..l_C from the text tower
(prompt "A photo of a {}.") with weights q_k = y_k / sum(y) over the ground-truth labels:

```
s[n, k] = cos(z_n, l_k);  c[n, k] = 1 - s[n, k]
forward  pi(k | n) = q_k exp(s[n,k]/tau) / sum_k' q_k' exp(s[n,k']/tau)
backward pi(n | k) = exp(s[n,k]/tau) / sum_n' exp(s[n',k]/tau)
L_CT = beta sum_n p_n sum_k pi(k|n) c[n,k] + (1 - beta) sum_k q_k sum_n pi(n|k) c[n,k]
h = CLS + alpha * AL(CLS),  AL = Linear(d, d/r) -> ReLU -> Linear(d/r, d) -> ReLU
logit_k = exp(logit_scale) * cos(h, l_k)
L = ASL(logits, y) + lambda * L_CT   (images without labels add no CT cost)
```

Every reconstructed constant is a field of [`PatchCTConfig`]. The backward navigator pi(n | k), on the patch grid, is
the per-label heatmap (`output_attentions=True`).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
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
)
from .configuration_patchct import PatchCTConfig
from .multilabel_losses import check_multilabel_targets, multilabel_loss


@dataclass
class PatchCTModelOutput(ModelOutput):
    r"""
    Output of [`PatchCTModel`].

    Args:
        image_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
            The image tower's [CLS] embedding in the joint space (not normalised).
        label_embeds (`torch.FloatTensor` of shape `(num_labels, projection_dim)`):
            The text tower's embedding of every label prompt in the joint space (not normalised).
        patch_label_similarities (`tuple(torch.FloatTensor)`, one per entry of `config.ct_layers`):
            Cosine similarities `s[n, k]` between the patch tokens of that layer and the labels,
            `(batch_size, num_patches, num_labels)`.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            The image tower's hidden states, `(batch_size, 1 + num_patches, vision hidden_size)` each ([CLS] first).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            The backward navigator pi(n | k) of every entry of `config.ct_layers` on the patch grid,
            `(batch_size, num_labels, height / patch_size, width / patch_size)`: for each label, a distribution over
            the patches.
    """

    image_embeds: torch.FloatTensor | None = None
    label_embeds: torch.FloatTensor | None = None
    patch_label_similarities: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class PatchCTMultiLabelClassifierOutput(ModelOutput):
    r"""
    Output of [`PatchCTForMultiLabelClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            `multilabel_loss(logits, labels) + config.ct_weight * transport_cost`.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            One logit per label; `sigmoid(logits)` are the multi-label probabilities.
        transport_cost (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            The CT cost L_CT, averaged over the images (those without labels count 0) and over `config.ct_layers`.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            As in [`PatchCTModelOutput`].
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            As in [`PatchCTModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    transport_cost: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def cosine_similarities(patch_embeds: torch.Tensor, label_embeds: torch.Tensor) -> torch.Tensor:
    """`(B, N, D)` and `(C, D)` -> the cosines `(B, N, C)`."""
    return F.normalize(patch_embeds, dim=-1) @ F.normalize(label_embeds, dim=-1).transpose(0, 1)


def backward_navigator(similarities: torch.Tensor, temperature: float) -> torch.Tensor:
    """pi(n | k): for each label, a softmax over the patches of `s[n, k] / tau`; `(B, N, C)` -> `(B, N, C)`."""
    return torch.softmax(similarities / temperature, dim=1)


def forward_navigator(similarities: torch.Tensor, prior: torch.Tensor, temperature: float) -> torch.Tensor:
    """pi(k | n): for each patch, `q_k exp(s[n, k] / tau)` normalised over the labels; `(B, N, C)` and the label
    weights `(B, C)` -> `(B, N, C)`. Rows of images whose weights are all zero are uniform (they are not used)."""
    has_labels = (prior > 0).any(dim=-1, keepdim=True)
    log_prior = torch.where(has_labels, prior.log(), torch.zeros_like(prior))
    return torch.softmax(similarities / temperature + log_prior.unsqueeze(1), dim=-1)


def conditional_transport_cost(
    similarities: torch.Tensor, prior: torch.Tensor, beta: float, temperature: float
) -> torch.Tensor:
    """
    The bidirectional CT cost of every image (see the module docstring), with transport cost `1 - s[n, k]` and
    uniform patch weights 1/N.

    Args:
        similarities: cosines `(B, N, C)` between patches and labels.
        prior: label weights q `(B, C)`, each row summing to 1 (or all zero for an image without labels: cost 0).
        beta: weight of the forward direction.
        temperature: tau of both navigators.
    Returns:
        `(B,)`.
    """
    cost = 1 - similarities
    forward_cost = (forward_navigator(similarities, prior, temperature) * cost).sum(dim=-1).mean(dim=-1)
    backward_cost = (prior * (backward_navigator(similarities, temperature) * cost).sum(dim=1)).sum(dim=-1)
    has_labels = (prior > 0).any(dim=-1)
    return torch.where(has_labels, beta * forward_cost + (1 - beta) * backward_cost, torch.zeros_like(forward_cost))


def label_prior(labels: torch.Tensor) -> torch.Tensor:
    """q_k = y_k / sum(y) over an image's labels (ignored entries, -1, count 0); all zero for an image without
    labels. `(B, C)` -> `(B, C)`."""
    weights = labels.float().clamp(min=0)
    return weights / weights.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(weights.dtype).tiny)


class PatchCTAdaptiveLayer(nn.Module):
    """The adaptive layer on the [CLS] embedding: `h = x + alpha * ReLU(W2 ReLU(W1 x))`, `W1` `(d / r, d)`,
    `W2` `(d, d / r)`, without biases (as CLIP-Adapter)."""

    def __init__(self, config: PatchCTConfig):
        super().__init__()
        hidden_size = config.projection_dim // config.adapter_reduction
        self.fc1 = nn.Linear(config.projection_dim, hidden_size, bias=False)
        self.fc2 = nn.Linear(hidden_size, config.projection_dim, bias=False)
        self.ratio = config.adapter_ratio

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """`(B, d)` -> `(B, d)`."""
        return image_embeds + self.ratio * F.relu(self.fc2(F.relu(self.fc1(image_embeds))))


class PatchCTPreTrainedModel(CLIPTowersPreTrainedModel):
    """Weight initialisation and the common interface of PatchCT models."""

    config_class = PatchCTConfig
    config: PatchCTConfig
    base_model_prefix = "patchct"
    remote_code_auto_map = {
        "AutoConfig": "configuration_patchct.PatchCTConfig",
        "AutoModel": "modeling_patchct.PatchCTModel",
        "AutoModelForImageClassification": "modeling_patchct.PatchCTForMultiLabelClassification",
    }


class PatchCTModel(ClassNameInputsMixin, PatchCTPreTrainedModel):
    """
    PatchCT without the classification head: the CLIP towers, the label embeddings of the class-name prompts and the
    patch-label cosine similarities of the CT layers. Reconstruction from the abstract and figure; not checked against
    the paper.

    The label prompts are stored tokenized in the persistent buffers `class_input_ids` and `class_attention_mask`
    `(num_labels, text_config.max_position_embeddings)` (see `set_class_names`).
    """

    class_name_input_names = ("class_input_ids", "class_attention_mask")

    def __init__(self, config: PatchCTConfig):
        super().__init__(config)
        self.towers = CLIPTowers(config)
        self._register_class_name_buffers()
        self.post_init()

    def class_name_inputs(self, names: Sequence[str], tokenizer) -> dict[str, torch.Tensor]:
        """The tokenized prompts `config.prompt_template.format(name)`, as forward keyword arguments."""
        prompts = [self.config.prompt_template.format(name) for name in names]
        input_ids, attention_mask = tokenize_prompts(tokenizer, prompts, self.config.text_config)
        return {"class_input_ids": input_ids, "class_attention_mask": attention_mask}

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        class_input_ids: torch.Tensor | None = None,
        class_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> PatchCTModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images normalised as CLIP's (see [`MultiLabelImageProcessor`] with CLIP's mean and std); any size that is a
                multiple of the patch size (the position embeddings are interpolated).
            class_input_ids, class_attention_mask (`torch.LongTensor` of shape `(num_classes, length)`, *optional*):
                Tokenized prompts of other class names than the stored ones (`class_name_inputs(names, tokenizer)`);
                both or neither. Not called `label_*`: `Trainer` treats every such argument as a target.
            output_attentions (`bool`, *optional*):
                Return the backward navigator of every CT layer on the patch grid.
            output_hidden_states (`bool`, *optional*):
                Return the image tower's hidden states.
        """
        check_pixel_values(pixel_values, self.config)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        class_inputs = self.resolve_class_name_inputs(
            class_input_ids=class_input_ids, class_attention_mask=class_attention_mask
        )
        image_embeds, hidden_states = self.towers.encode_image(pixel_values)
        label_embeds = self.towers.encode_text(class_inputs["class_input_ids"], class_inputs["class_attention_mask"])
        similarities = tuple(
            cosine_similarities(self.towers.project_patch_tokens(hidden_states[layer]), label_embeds)
            for layer in self.config.ct_layers
        )
        attentions = None
        if output_attentions:
            grid = self.towers.patch_grid(pixel_values)
            attentions = tuple(
                backward_navigator(similarity, self.config.ct_temperature).transpose(1, 2).unflatten(-1, grid)
                for similarity in similarities
            )
        return PatchCTModelOutput(
            image_embeds=image_embeds,
            label_embeds=label_embeds,
            patch_label_similarities=similarities,
            hidden_states=hidden_states if output_hidden_states else None,
            attentions=attentions,
        )


class PatchCTForMultiLabelClassification(OpenVocabularyClassifierMixin, PatchCTPreTrainedModel):
    """
    PatchCT for multi-label classification: the adaptive layer on the [CLS] embedding, cosine logits against the label
    embeddings, and the loss `multilabel_loss + ct_weight * L_CT`. Reconstruction from the abstract and figure; not
    checked against the paper.

    Open vocabulary: any label names work at inference, through the text tower: `set_class_names(names, tokenizer)`
    makes them the model's labels (saved with the checkpoint), and `model(pixel_values, **model.class_name_inputs(names,
    tokenizer))` scores them once.
    """

    accepts_loss_kwargs = False

    def __init__(self, config: PatchCTConfig):
        super().__init__(config)
        self.patchct = PatchCTModel(config)
        self.adapter = PatchCTAdaptiveLayer(config)
        self.logits = CosineLogits(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_input_ids: torch.Tensor | None = None,
        class_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> PatchCTMultiLabelClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                As in [`PatchCTModel`].
            labels (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
                1 present, 0 absent, -1 left out of the loss; soft targets in [0, 1] are accepted. They also give the
                label weights q of the CT cost (-1 counts 0).
            class_input_ids, class_attention_mask, output_attentions, output_hidden_states:
                As in [`PatchCTModel`].
        """
        outputs = self.patchct(
            pixel_values,
            class_input_ids=class_input_ids,
            class_attention_mask=class_attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.logits(self.adapter(outputs.image_embeds), outputs.label_embeds)
        loss = transport_cost = None
        if labels is not None:
            check_multilabel_targets(logits, labels)
            transport_cost = self.transport_cost(outputs.patch_label_similarities, labels)
            loss = multilabel_loss(logits, labels, self.config) + self.config.ct_weight * transport_cost
        return PatchCTMultiLabelClassifierOutput(
            loss=loss,
            logits=logits,
            transport_cost=transport_cost,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def transport_cost(self, similarities: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """L_CT: the CT cost with the ground-truth label weights, averaged over the images (an image without labels
        counts 0, so that the mean over a batch equals the mean of its parts under gradient accumulation) and over the
        CT layers."""
        prior = label_prior(labels).to(similarities[0].dtype)
        costs = [
            conditional_transport_cost(similarity, prior, self.config.ct_beta, self.config.ct_temperature).mean()
            for similarity in similarities
        ]
        return torch.stack(costs).mean()


PatchCTConfig.register_for_auto_class()
PatchCTModel.register_for_auto_class("AutoModel")
PatchCTForMultiLabelClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "PatchCTForMultiLabelClassification",
    "PatchCTModel",
    "PatchCTModelOutput",
    "PatchCTMultiLabelClassifierOutput",
    "PatchCTPreTrainedModel",
]
