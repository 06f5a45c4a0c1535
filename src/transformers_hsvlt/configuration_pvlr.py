"""PVLR model configuration (reconstruction from the abstract and figure; not checked against the paper)."""

from huggingface_hub.dataclasses import strict

from .configuration_clip_towers import CLIPTowersConfig


@strict
class PVLRConfig(CLIPTowersConfig):
    r"""
    Configuration of a PVLR model (Tan et al., "PVLR: Prompt-driven Visual-Linguistic Representation Learning for
    Multi-Label Image Recognition", arXiv 2401.17881). The authors released no code: this is a reconstruction from the abstract
    and figure; not checked against the paper. Every reconstructed choice is a field below, so a user holding the
    paper can set it.

    The defaults: CLIP ViT-B/16 towers (text tower frozen), Knowledge-Aware Prompts "A photo of a {}." (fixed),
    Context-Aware Prompts of 16 learnable context vectors shared by all labels (CoOp-style), the Interaction and Fusion
    Module, two Dual-Modal Attention layers of 8 heads, similarity logits with a learnable temperature (init 0.07)
    and the Asymmetric Loss.

    The fields shared with PatchCT (`vision_config`, `text_config`, `projection_dim`, `image_size`, `prompt_template`
    (here the Knowledge-Aware Prompt), `freeze_text_tower`, `logit_scale_init_value` (ln of 1 / the initial
    temperature), `logit_bias_init_value`, `multilabel_loss`, `asl_*`, `initializer_range`) are documented in
    [`CLIPTowersConfig`].

    Args:
        num_context_tokens (`int`, *optional*, defaults to 16):
            Number M of learnable context vectors of the Context-Aware Prompt `[v_1 .. v_M] {name}.`.
        context_prompt_template (`str`, *optional*, defaults to `"{}."`):
            What follows the context vectors in the Context-Aware Prompt (`{}` is replaced by the label name).
        context_init_std (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the context vectors (CoOp's).
        num_attention_heads (`int`, *optional*, defaults to 8):
            Heads of the label self-attention of the fusion module and of every Dual-Modal Attention layer;
            `projection_dim` must be divisible by it.
        num_dma_layers (`int`, *optional*, defaults to 2):
            Number of Dual-Modal Attention layers.
        fusion_intermediate_size (`int`, *optional*, defaults to 2048):
            Hidden width of the feed-forward network of the fusion module.
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout of the attention weights of the fusion module and the Dual-Modal Attention.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the LayerNorms of the fusion module and the Dual-Modal Attention.

    Example:

    ```python
    >>> from transformers_hsvlt import PVLRConfig, PVLRForMultiLabelClassification

    >>> config = PVLRConfig(id2label={0: "cat", 1: "dog"})
    >>> model = PVLRForMultiLabelClassification(config)  # random CLIP towers; see `set_class_names`
    ```"""

    model_type = "pvlr"

    num_context_tokens: int = 16
    context_prompt_template: str = "{}."
    context_init_std: float = 0.02
    num_attention_heads: int = 8
    num_dma_layers: int = 2
    fusion_intermediate_size: int = 2048
    attention_dropout: float | int = 0.0
    layer_norm_eps: float = 1e-5

    def validate_architecture(self):
        """Raise a `ValueError` naming the field when the model cannot be built from this configuration."""
        super().validate_architecture()
        if self.num_context_tokens < 1:
            raise ValueError(f"PVLRConfig.num_context_tokens must be >= 1, got {self.num_context_tokens}.")
        if self.context_prompt_template.count("{}") != 1:
            raise ValueError(
                f"PVLRConfig.context_prompt_template must hold '{{}}' once, got {self.context_prompt_template!r}."
            )
        if self.num_attention_heads < 1 or self.projection_dim % self.num_attention_heads:
            raise ValueError(
                f"PVLRConfig.num_attention_heads must divide projection_dim={self.projection_dim}, got "
                f"{self.num_attention_heads}."
            )
        if self.num_dma_layers < 1:
            raise ValueError(f"PVLRConfig.num_dma_layers must be >= 1, got {self.num_dma_layers}.")
        if self.fusion_intermediate_size < 1:
            raise ValueError(f"PVLRConfig.fusion_intermediate_size must be >= 1, got {self.fusion_intermediate_size}.")
        if not 0 <= self.attention_dropout < 1:
            raise ValueError(f"PVLRConfig.attention_dropout must be in [0, 1), got {self.attention_dropout}.")


__all__ = ["PVLRConfig"]
