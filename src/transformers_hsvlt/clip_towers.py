"""CLIP image and text towers and the open-vocabulary class-name inputs shared by PatchCT and PVLR.

Both models read images with transformers' `CLIPVisionModel` and label names with `CLIPTextModel`, each followed by
CLIP's linear projection to the joint space. The label names enter as tokenized prompts ("A photo of a {}."), kept in
persistent buffers of the base model (`class_input_ids`, `class_attention_mask`, ...) so that a checkpoint holds
everything it needs for its trained labels; `set_class_names(names, tokenizer)` replaces them with any other names.

Remote code: this module imports only torch and transformers (and its siblings), so that a saved checkpoint of either
model holds a copy of it.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPTextModel, CLIPVisionModel
from transformers import initialization as init
from transformers.masking_utils import create_causal_mask

from .modeling_family import FamilyPreTrainedModel, check_finite_pixels


# CLIP's text model pools the `argmax` token when its config has the `eos_token_id` of configs saved before
# transformers PR #24773 (2, as in `openai/clip-vit-base-patch16`), and the first end token otherwise.
_LEGACY_EOS_TOKEN_ID = 2


class CLIPTowers(nn.Module):
    """
    CLIP's image and text towers and their projections to the joint space of width `config.projection_dim`.

    The attributes are named as in transformers' `CLIPModel` (`vision_model`, `text_model`, `visual_projection`,
    `text_projection`), so that the state dict of a `CLIPModel` checkpoint (without its `logit_scale`) loads one to one.
    With `config.freeze_text_tower` the text tower and its projection are frozen (`requires_grad=False`); gradients
    still flow through them to their inputs (PVLR's learnable context vectors).
    """

    def __init__(self, config):
        super().__init__()
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.freeze_text_tower = config.freeze_text_tower
        self.apply_freezing()

    def apply_freezing(self) -> None:
        """Set `requires_grad=False` on the text tower and its projection if `config.freeze_text_tower`."""
        if self.freeze_text_tower:
            for parameter in [*self.text_model.parameters(), *self.text_projection.parameters()]:
                parameter.requires_grad_(False)

    def patch_grid(self, pixel_values: torch.Tensor) -> tuple[int, int]:
        """The `(height, width)` of the patch grid for `pixel_values` `(B, C, H, W)`."""
        patch_size = self.vision_model.config.patch_size
        return pixel_values.shape[-2] // patch_size, pixel_values.shape[-1] // patch_size

    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """
        Run the image tower at any input size (position embeddings interpolated, e.g. 448 px for a 224-px CLIP).

        Returns:
            The projected [CLS] embedding `(B, projection_dim)` and the hidden states of the tower, `num_hidden_layers
            + 1` tensors `(B, 1 + num_patches, vision hidden_size)` (the embeddings, then every layer's output).
        """
        outputs = self.vision_model(pixel_values=pixel_values, interpolate_pos_encoding=True, output_hidden_states=True)
        return self.visual_projection(outputs.pooler_output), outputs.hidden_states

    def project_patch_tokens(self, hidden_state: torch.Tensor) -> torch.Tensor:
        """The patch tokens of a hidden state `(B, 1 + N, D)` in the joint space, `(B, N, projection_dim)`: CLIP's
        post-LayerNorm and visual projection, as applied to [CLS]."""
        return self.visual_projection(self.vision_model.post_layernorm(hidden_state[:, 1:]))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Projected text embeddings `(C, projection_dim)` of tokenized prompts `(C, L)`; without gradient when the
        text tower is frozen."""
        input_ids, attention_mask = trim_padding(input_ids, attention_mask)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_text_tower):
            pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            return self.text_projection(pooled)

    def encode_token_embeddings(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        """
        The text tower on token embeddings instead of token ids (CoOp-style prompt learning): the same computation as
        `CLIPTextModel.forward` after its token embedding, pooled at the end token of `input_ids`.

        Args:
            inputs_embeds: `(C, L, text hidden_size)`, e.g. token embeddings with some positions replaced.
            attention_mask: `(C, L)`.
            input_ids: `(C, L)`, the ids whose end tokens give the pooled positions.
        Returns:
            `(C, projection_dim)`.
        """
        text_model = self.text_model
        hidden_states = text_model.embeddings(inputs_embeds=inputs_embeds)
        causal_mask = create_causal_mask(
            config=text_model.config, inputs_embeds=hidden_states, attention_mask=attention_mask, cache=None
        )
        hidden_states = text_model.encoder(inputs_embeds=hidden_states, attention_mask=causal_mask, is_causal=True)
        hidden_states = text_model.final_layer_norm(hidden_states.last_hidden_state)
        positions = pooling_positions(input_ids, text_model.config.eos_token_id)
        return self.text_projection(hidden_states[torch.arange(hidden_states.shape[0]), positions])


def trim_padding(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing columns that are padding in every row (the buffers are padded to the longest possible
    prompt). A saving only: under the causal mask no token up to a prompt's end token sees the padding after it, so
    the pooled embeddings are the same untrimmed. Not done while compiling or exporting (`torch.compile`,
    `torch.export`, ONNX), where a length read from the data would stop the trace."""
    if torch.compiler.is_compiling():
        return input_ids, attention_mask
    length = max(int(attention_mask.sum(dim=-1).max()), 1)
    return input_ids[:, :length], attention_mask[:, :length]


def pooling_positions(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """The token `CLIPTextModel` pools in each row of `input_ids`: the first end token, or the largest id for
    configs with the legacy `eos_token_id` 2 (CLIP's end token has the largest id of its vocabulary)."""
    if eos_token_id == _LEGACY_EOS_TOKEN_ID:
        return input_ids.argmax(dim=-1)
    return (input_ids == eos_token_id).int().argmax(dim=-1)


def check_class_names(names: Sequence[str]) -> list[str]:
    """The names as a list; a `ValueError` if there are none, one is empty or one is repeated."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("class names: expected at least one name, got none.")
    if any(not isinstance(name, str) or not name.strip() for name in names):
        raise ValueError(f"class names: expected non-empty strings, got {names}.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"class names must be unique, got repeats: {repeated}.")
    return names


def tokenize_prompts(
    tokenizer, prompts: Sequence[str], text_config, num_context_tokens: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Tokenize prompts into `input_ids` and `attention_mask` `(len(prompts), text_config.max_position_embeddings)`,
    padded after each prompt's end token with the tokenizer's padding token (0 if it has none).

    With `num_context_tokens` M > 0 (PVLR's context prompts), M placeholder tokens (copies of the start token) follow
    the start token: positions 1..M, whose embeddings the model replaces by its learnable context vectors.

    Raises a `ValueError` when a prompt is longer than the text tower's positions, when the tokenizer does not end
    its prompts with the end token the text tower pools (`text_config.eos_token_id`: the two do not belong together),
    or, for context prompts, when it does not start them with its start token.
    """
    max_length = text_config.max_position_embeddings
    token_ids = [list(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    if num_context_tokens:
        start = tokenizer.bos_token_id
        if start is None or any(ids[:1] != [start] for ids in token_ids):
            raise ValueError(
                "context prompts need a tokenizer that starts every prompt with its start token (bos_token), as CLIP's."
            )
        token_ids = [[start] * (1 + num_context_tokens) + ids[1:] for ids in token_ids]
    too_long = [prompt for prompt, ids in zip(prompts, token_ids) if len(ids) > max_length]
    if too_long:
        raise ValueError(
            f"prompts {too_long[:3]} are longer than text_config.max_position_embeddings={max_length} tokens "
            f"(with {num_context_tokens} context tokens)."
        )
    input_ids = torch.full((len(token_ids), max_length), tokenizer.pad_token_id or 0, dtype=torch.long)
    attention_mask = torch.zeros(len(token_ids), max_length, dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    check_pooled_end_tokens(input_ids, attention_mask, text_config.eos_token_id)
    return input_ids, attention_mask


def check_pooled_end_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, eos_token_id: int) -> None:
    """Raise a `ValueError` unless the text tower pools the last token of every prompt (its end token)."""
    last = attention_mask.sum(dim=-1) - 1
    if not torch.equal(pooling_positions(input_ids, eos_token_id), last):
        raise ValueError(
            f"the tokenizer does not end its prompts with the token the text tower pools (text_config.eos_token_id="
            f"{eos_token_id}); use the tokenizer of the CLIP checkpoint the text tower comes from."
        )


class ClassNameInputsMixin:
    """
    The class-name inputs of a base model: persistent buffers named as its forward arguments (`class_input_ids`, ...),
    `(num_labels, text_config.max_position_embeddings)`, filled by `set_class_names` and saved with the checkpoint.

    Subclasses set `class_name_input_names` and implement `class_name_inputs(names, tokenizer)`.
    """

    class_name_input_names: tuple[str, ...] = ()
    supports_class_names = True

    def _register_class_name_buffers(self) -> None:
        shape = (self.config.num_labels, self.config.text_config.max_position_embeddings)
        for name in self.class_name_input_names:
            self.register_buffer(name, torch.zeros(shape, dtype=torch.long), persistent=True)

    def class_name_inputs(self, names: Sequence[str], tokenizer) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def set_class_names(self, names: Sequence[str], tokenizer) -> None:
        """Use `names` as the labels: tokenize their prompts into the buffers and update `id2label`/`label2id`. The
        calibrated `label_thresholds` follow their labels by name; when a name has none, they are dropped."""
        names = check_class_names(names)
        for name, value in self.class_name_inputs(names, tokenizer).items():
            self.register_buffer(name, value.to(getattr(self, name).device), persistent=True)
        labels = [self.config.id2label[index] for index in range(self.config.num_labels)]
        thresholds = dict(zip(labels, self.config.label_thresholds or ()))
        self.config.label_thresholds = [thresholds[name] for name in names] if set(names) <= set(thresholds) else None
        self.config.id2label = dict(enumerate(names))
        self.config.label2id = {name: index for index, name in enumerate(names)}

    def resolve_class_name_inputs(self, **given: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The class-name inputs given to forward (all of them or none), else the buffers; checked."""
        missing = [name for name, value in given.items() if value is None]
        if missing and len(missing) < len(given):
            raise ValueError(f"give all of {sorted(given)} or none of them; {missing} are missing.")
        inputs = given if not missing else {name: getattr(self, name) for name in given}
        shapes = {tuple(value.shape) for value in inputs.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"{sorted(inputs)} must be 2-D tensors of one shape (num_classes, length), got {shapes}.")
        masks = [value for name, value in inputs.items() if name.endswith("attention_mask")]
        if not torch.compiler.is_compiling() and not all(bool(mask.any(dim=-1).all()) for mask in masks):
            raise ValueError(
                "the class-name inputs are empty: call `set_class_names(names, tokenizer)` first, or pass the "
                "output of `class_name_inputs(names, tokenizer)` to forward."
            )
        return inputs


class OpenVocabularyClassifierMixin:
    """`set_class_names` and `class_name_inputs` of a classifier, delegated to its base model (`base_model`)."""

    supports_class_names = True

    def class_name_inputs(self, names: Sequence[str], tokenizer) -> dict[str, torch.Tensor]:
        """The forward keyword arguments that classify `names` instead of the stored labels, e.g.
        `model(pixel_values, **model.class_name_inputs(["cat", "dog"], tokenizer))`."""
        return self.base_model.class_name_inputs(check_class_names(names), tokenizer)

    def set_class_names(self, names: Sequence[str], tokenizer) -> None:
        """Use `names` as the labels from now on (saved with the checkpoint); updates `config.id2label`."""
        self.base_model.set_class_names(names, tokenizer)


class CosineLogits(nn.Module):
    """`logit_k = exp(s) * cos(h, l_k) (+ b)` with a learnable log scale `s` and, when
    `config.logit_bias_init_value` is set, a learnable bias `b` shared by all labels."""

    def __init__(self, config):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        bias = config.logit_bias_init_value
        self.logit_bias = None if bias is None else nn.Parameter(torch.tensor(float(bias)))

    def forward(self, features: torch.Tensor, label_embeds: torch.Tensor) -> torch.Tensor:
        """`features` `(B, d)` (one per image) or `(B, C, d)` (one per label), `label_embeds` `(C, d)` or
        `(B, C, d)` -> `(B, C)`."""
        features, label_embeds = F.normalize(features, dim=-1), F.normalize(label_embeds, dim=-1)
        if features.ndim == 2:
            cosines = features @ label_embeds.transpose(0, 1)
        else:
            cosines = (features * label_embeds).sum(dim=-1)
        logits = self.logit_scale.exp() * cosines
        return logits if self.logit_bias is None else logits + self.logit_bias


def check_pixel_values(pixel_values: torch.Tensor | None, config) -> None:
    """Raise a `ValueError` unless `pixel_values` is `(B, num_channels, H, W)` with H and W multiples of the patch
    size."""
    vision_config = config.vision_config
    if pixel_values is None:
        raise ValueError("`pixel_values` is required: a float tensor (batch_size, num_channels, height, width).")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != vision_config.num_channels:
        raise ValueError(
            f"`pixel_values` must have shape (batch_size, {vision_config.num_channels}, height, width), got "
            f"{tuple(pixel_values.shape)}."
        )
    check_finite_pixels(pixel_values)
    if any(size % vision_config.patch_size or size == 0 for size in pixel_values.shape[-2:]):
        raise ValueError(
            f"`pixel_values` height and width must be positive multiples of the patch size "
            f"{vision_config.patch_size}, got {tuple(pixel_values.shape[-2:])}."
        )


class CLIPTowersPreTrainedModel(FamilyPreTrainedModel):
    """The common base of the CLIP-based models: initialisation of the projections and logit scale, and the frozen
    text tower kept frozen after `from_pretrained` (which loads parameters that require gradients)."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    """The towers run CLIP's attention with `attn_implementation` `eager` or `sdpa` (same logits); the label-side
    attention of PVLR is `nn.MultiheadAttention` either way. Flash and flex attention are not claimed: untried."""
    _no_split_modules = ["CLIPEncoderLayer", "CLIPVisionEmbeddings", "CLIPTextEmbeddings"]

    @torch.no_grad()
    def _init_weights(self, module):
        """CLIP's own initialisation inside the towers (they are `PreTrainedModel`s) and for the projections (normal,
        std `in_features ** -0.5`); the configured logit scale and bias; normal with `config.initializer_range` for
        the other linear layers; the class-name buffers empty (zeros) until `set_class_names`."""
        super()._init_weights(module)
        if isinstance(module, ClassNameInputsMixin):
            for name in module.class_name_input_names:
                init.zeros_(getattr(module, name))
        if isinstance(module, CLIPTowers):
            for projection in (module.visual_projection, module.text_projection):
                init.normal_(projection.weight, std=projection.in_features**-0.5)
        elif isinstance(module, CosineLogits):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            if module.logit_bias is not None:
                init.constant_(module.logit_bias, self.config.logit_bias_init_value)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        for module in model.modules():
            if isinstance(module, CLIPTowers):
                module.apply_freezing()
        return loaded
