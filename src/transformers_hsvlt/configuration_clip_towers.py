"""The configuration shared by the CLIP-based members of the family (PatchCT, PVLR).

Remote code: imports only transformers; a sibling of the PatchCT and PVLR configs, copied into their checkpoints.
"""

from huggingface_hub.dataclasses import strict
from transformers import CLIPTextConfig, CLIPVisionConfig, PreTrainedConfig

from .configuration_family import FamilyConfigMixin


@strict
class CLIPTowersConfig(FamilyConfigMixin, PreTrainedConfig):
    r"""
    The fields every CLIP-based classifier of the family has: CLIP's image and text towers (nested like the sub-configs
    of transformers' [`CLIPConfig`]), the prompt of the label names and the logit scale; the loss and image size are the
    family's fields of [`FamilyConfigMixin`], with the Asymmetric Loss as the default.

    Args:
        vision_config (`dict` or [`CLIPVisionConfig`], *optional*):
            The image tower (`CLIPVisionModel`); defaults to CLIP ViT-B/16 (`hidden_size` 768, 12 layers, patch 16,
            `image_size` 224: the size of its position embeddings, interpolated to `image_size` at run time).
        text_config (`dict` or [`CLIPTextConfig`], *optional*):
            The text tower (`CLIPTextModel`); defaults to CLIP's (`hidden_size` 512, 12 layers, 77 positions). Its
            `eos_token_id` must be the end token of the tokenizer used with `set_class_names`.
        projection_dim (`int`, *optional*, defaults to 512):
            Width of the joint image-text space (CLIP's `visual_projection` and `text_projection`).
        prompt_template (`str`, *optional*, defaults to `"A photo of a {}."`):
            The prompt each label name is put into (`{}` is replaced by the name) before the text tower.
        freeze_text_tower (`bool`, *optional*, defaults to `True`):
            Whether the text tower and its projection are frozen (not trained).
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial value of the learnable log logit scale `s`: logits are `exp(s) * cosine`; 2.6592 = ln(1 / 0.07)
            is CLIP's initial value (a temperature of 0.07).
        logit_bias_init_value (`float`, *optional*):
            `None` (default): no bias. A number: a learnable bias shared by all labels, added to every logit and
            starting at this value (an optional addition, not part of the reconstructed equations; useful when the
            cosines of a pretrained CLIP are all positive and the sigmoid would start saturated).
        multilabel_loss (`str`, *optional*, defaults to `"asl"`):
            Classification loss: `"asl"` (Asymmetric Loss, Ridnik et al. 2021) or `"bce"`.
        image_size, asl_gamma_negative, asl_gamma_positive, asl_clip, problem_type:
            The fields of the whole family, documented in [`FamilyConfigMixin`].
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the layers that are not CLIP's.
    """

    sub_configs_defaults = {"vision_config": CLIPVisionConfig, "text_config": CLIPTextConfig}

    vision_config: dict | CLIPVisionConfig | None = None
    text_config: dict | CLIPTextConfig | None = None
    projection_dim: int = 512
    prompt_template: str = "A photo of a {}."
    freeze_text_tower: bool = True
    logit_scale_init_value: float | int = 2.6592
    logit_bias_init_value: float | int | None = None
    multilabel_loss: str = "asl"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.vision_config is None:
            self.vision_config = {"patch_size": 16}
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Raise a `ValueError` naming the field when the model cannot be built from this configuration (after the
        family's checks of [`FamilyConfigMixin`])."""
        super().validate_architecture()
        name = type(self).__name__
        if self.projection_dim < 1:
            raise ValueError(f"{name}.projection_dim must be positive, got {self.projection_dim}.")
        patch_size = self.vision_config.patch_size
        if self.image_size < patch_size:
            raise ValueError(f"{name}.image_size must be at least the patch size {patch_size}, got {self.image_size}.")
        if self.prompt_template.count("{}") != 1:
            raise ValueError(f"{name}.prompt_template must hold '{{}}' once, got {self.prompt_template!r}.")
