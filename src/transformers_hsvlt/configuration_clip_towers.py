"""The configuration shared by the CLIP-based members of the family (PatchCT, PVLR).

Remote code: imports only transformers; a sibling of the PatchCT and PVLR configs, copied into their checkpoints.
"""

from huggingface_hub.dataclasses import strict
from transformers import CLIPTextConfig, CLIPVisionConfig, PreTrainedConfig


MULTILABEL_LOSSES = ("bce", "asl")


@strict
class CLIPTowersConfig(PreTrainedConfig):
    r"""
    The fields every CLIP-based classifier of the family has: CLIP's image and text towers (nested like the sub-configs
    of transformers' [`CLIPConfig`]), the prompt of the label names, the logit scale and the loss.

    Args:
        vision_config (`dict` or [`CLIPVisionConfig`], *optional*):
            The image tower (`CLIPVisionModel`); defaults to CLIP ViT-B/16 (`hidden_size` 768, 12 layers, patch 16,
            `image_size` 224: the size of its position embeddings, interpolated to `image_size` at run time).
        text_config (`dict` or [`CLIPTextConfig`], *optional*):
            The text tower (`CLIPTextModel`); defaults to CLIP's (`hidden_size` 512, 12 layers, 77 positions). Its
            `eos_token_id` must be the end token of the tokenizer used with `set_class_names`.
        projection_dim (`int`, *optional*, defaults to 512):
            Width of the joint image-text space (CLIP's `visual_projection` and `text_projection`).
        image_size (`int`, *optional*, defaults to 448):
            Input resolution the model is trained at (the image processor's size).
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
        asl_gamma_negative (`float`, *optional*, defaults to 4.0):
            ASL focusing parameter of the negatives.
        asl_gamma_positive (`float`, *optional*, defaults to 0.0):
            ASL focusing parameter of the positives.
        asl_clip (`float`, *optional*, defaults to 0.05):
            ASL probability margin of the negatives.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the layers that are not CLIP's.
        label_thresholds (`list[float]`, *optional*):
            The decision threshold of every label, in label order, each in [0, 1], chosen on a calibration split by
            `hsvlt-calibrate`. `None` (default): 0.5 for every label. Used wherever labels are decided
            (`post_process_multi_label`, the pipeline, `hsvlt-predict`, the demo, `hsvlt-eval`).
        label_thresholds_source (`dict`, *optional*):
            Where `label_thresholds` were calibrated (dataset, split, number of images, strategy), as written by
            `hsvlt-calibrate`.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            One sigmoid per label.
    """

    sub_configs_defaults = {"vision_config": CLIPVisionConfig, "text_config": CLIPTextConfig}

    vision_config: dict | CLIPVisionConfig | None = None
    text_config: dict | CLIPTextConfig | None = None
    projection_dim: int = 512
    image_size: int = 448
    prompt_template: str = "A photo of a {}."
    freeze_text_tower: bool = True
    logit_scale_init_value: float | int = 2.6592
    logit_bias_init_value: float | int | None = None
    multilabel_loss: str = "asl"
    asl_gamma_negative: float | int = 4.0
    asl_gamma_positive: float | int = 0.0
    asl_clip: float | int = 0.05
    initializer_range: float = 0.02
    label_thresholds: list[float | int] | None = None
    label_thresholds_source: dict | None = None

    def __post_init__(self, **kwargs):
        if self.vision_config is None:
            self.vision_config = {"patch_size": 16}
        if self.problem_type is None:
            self.problem_type = "multi_label_classification"
        num_labels = kwargs.get("num_labels")
        if num_labels is not None and num_labels < 1:
            raise ValueError(f"{type(self).__name__}.num_labels must be >= 1, got {num_labels}.")
        super().__post_init__(**kwargs)
        if self.id2label is not None and self.label2id is None:
            self.label2id = {name: index for index, name in self.id2label.items()}

    def validate_architecture(self):
        """Raise a `ValueError` naming the field when the model cannot be built from this configuration."""
        name = type(self).__name__
        if self.projection_dim < 1:
            raise ValueError(f"{name}.projection_dim must be positive, got {self.projection_dim}.")
        patch_size = self.vision_config.patch_size
        if self.image_size < patch_size:
            raise ValueError(f"{name}.image_size must be at least the patch size {patch_size}, got {self.image_size}.")
        if self.prompt_template.count("{}") != 1:
            raise ValueError(f"{name}.prompt_template must hold '{{}}' once, got {self.prompt_template!r}.")
        if self.multilabel_loss not in MULTILABEL_LOSSES:
            raise ValueError(
                f"{name}.multilabel_loss must be one of {MULTILABEL_LOSSES}, got {self.multilabel_loss!r}."
            )
        if self.asl_gamma_negative < 0 or self.asl_gamma_positive < 0 or not 0 <= self.asl_clip < 1:
            raise ValueError(
                f"{name}: asl_gamma_negative and asl_gamma_positive must be >= 0 and asl_clip in [0, 1), got "
                f"{self.asl_gamma_negative}, {self.asl_gamma_positive} and {self.asl_clip}."
            )
        if self.id2label is not None and len(self.id2label) == 0:
            raise ValueError(f"{name}.id2label is empty: a multi-label classifier needs at least one label.")
        if self.problem_type != "multi_label_classification":
            raise ValueError(
                f"{name}.problem_type must be 'multi_label_classification' (one sigmoid per label), got "
                f"{self.problem_type!r}."
            )
        if self.label_thresholds is not None and (
            len(self.label_thresholds) != self.num_labels or not all(0 <= value <= 1 for value in self.label_thresholds)
        ):
            raise ValueError(
                f"{type(self).__name__}.label_thresholds must be None or one finite value in [0, 1] per label "
                f"({self.num_labels} labels), got {self.label_thresholds}."
            )
