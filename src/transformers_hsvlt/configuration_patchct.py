"""PatchCT model configuration (reconstruction from the abstract and figure; not checked against the paper)."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict

from .configuration_clip_towers import CLIPTowersConfig


@strict
class PatchCTConfig(CLIPTowersConfig):
    r"""
    Configuration of a PatchCT model (Li et al., "PatchCT: Aligning Patch Set and Label Set with Conditional Transport
    for Multi-Label Image Classification", ICCV 2023). The authors released no code: this is a reconstruction from the
    abstract and figure; not checked against the paper. Every reconstructed choice is a field below, so a user holding
    the paper can set it.

    The defaults: CLIP ViT-B/16 towers (text tower frozen), prompts "A photo of a {}.", the bidirectional
    conditional-transport (CT) cost between the patch set and the label set of the last image layer (beta 0.5,
    tau 0.1, weight 1), an adaptive layer on [CLS] with residual weight 0.2 and reduction 4, cosine logits with a
    learnable scale, and the Asymmetric Loss.

    The fields shared with PVLR (`vision_config`, `text_config`, `projection_dim`, `image_size`, `prompt_template`,
    `freeze_text_tower`, `logit_scale_init_value`, `logit_bias_init_value`, `multilabel_loss`, `asl_*`,
    `initializer_range`) are documented in [`CLIPTowersConfig`].

    Args:
        ct_layers (`list[int]`, *optional*, defaults to `[-1]`):
            The image-tower layers whose patch tokens enter the CT cost (indices into its hidden states: 0 the
            embeddings, `i` the output of layer `i`, -1 the last); the CT cost is averaged over them. The paper's
            figure marks the encoders and the CT box "xL" (reconstructed as: CT may be applied at several layers).
        ct_weight (`float`, *optional*, defaults to 1.0):
            Weight lambda of the CT cost in the loss `L = classification loss + lambda * L_CT`.
        ct_beta (`float`, *optional*, defaults to 0.5):
            Weight beta of the forward (patch -> label) direction; the backward one has `1 - beta`.
        ct_temperature (`float`, *optional*, defaults to 0.1):
            Temperature tau of both navigators (softmaxes of the cosine similarities).
        adapter_ratio (`float`, *optional*, defaults to 0.2):
            Residual weight alpha of the adaptive layer: `h = CLS + alpha * AL(CLS)`.
        adapter_reduction (`int`, *optional*, defaults to 4):
            The adaptive layer's hidden width is `projection_dim / adapter_reduction`.

    Example:

    ```python
    >>> from transformers_hsvlt import PatchCTConfig, PatchCTForMultiLabelClassification

    >>> config = PatchCTConfig(id2label={0: "cat", 1: "dog"})
    >>> model = PatchCTForMultiLabelClassification(config)  # random CLIP towers; see `set_class_names`
    ```"""

    model_type = "patchct"
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["transport_cost"]

    ct_layers: list[int] | tuple[int, ...] = (-1,)
    ct_weight: float | int = 1.0
    ct_beta: float | int = 0.5
    ct_temperature: float | int = 0.1
    adapter_ratio: float | int = 0.2
    adapter_reduction: int = 4

    def __post_init__(self, **kwargs):
        self.ct_layers = list(self.ct_layers)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Raise a `ValueError` naming the field when the model cannot be built from this configuration."""
        super().validate_architecture()
        num_states = self.vision_config.num_hidden_layers + 1
        if not self.ct_layers or any(not -num_states <= layer < num_states for layer in self.ct_layers):
            raise ValueError(
                f"PatchCTConfig.ct_layers must be a non-empty list of hidden-state indices in [{-num_states}, "
                f"{num_states - 1}], got {self.ct_layers}."
            )
        if self.ct_weight < 0:
            raise ValueError(f"PatchCTConfig.ct_weight must be >= 0, got {self.ct_weight}.")
        if not 0 <= self.ct_beta <= 1:
            raise ValueError(f"PatchCTConfig.ct_beta must be in [0, 1], got {self.ct_beta}.")
        if self.ct_temperature <= 0:
            raise ValueError(f"PatchCTConfig.ct_temperature must be > 0, got {self.ct_temperature}.")
        if self.adapter_reduction < 1 or self.projection_dim % self.adapter_reduction:
            raise ValueError(
                f"PatchCTConfig.adapter_reduction must divide projection_dim={self.projection_dim}, got "
                f"{self.adapter_reduction}."
            )


__all__ = ["PatchCTConfig"]
