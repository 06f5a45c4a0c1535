"""HSVLT model configuration."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_family import FamilyConfigMixin


@strict
class HSVLTConfig(FamilyConfigMixin, PreTrainedConfig):
    r"""
    Configuration of an HSVLT model (Hierarchical Scale-Aware Vision-Language Transformer, ACM MM 2023).
    The defaults build HSVLT-S, the paper's released model: a ConvNeXt-S visual hierarchy in which every
    block also runs Interactive Visual-Linguistic Attention (IVLA) from the label embeddings to the visual
    tokens, followed by Cross-Scale Aggregation and a per-label linear head.

    Attributes named as in [`ConvNextConfig`] have the same meaning.

    Args:
        num_channels (`int`, *optional*, defaults to 3):
            Number of input image channels.
        patch_size (`int`, *optional*, defaults to 4):
            Kernel size and stride of the stem convolution.
        depths (`list[int]`, *optional*, defaults to `[3, 3, 27, 3]`):
            Number of blocks in each stage.
        hidden_sizes (`list[int]`, *optional*, defaults to `[96, 192, 384, 768]`):
            Width of each stage (visual channels and, after the stage's projection, label features).
        num_attention_heads (`int`, *optional*, defaults to 1):
            Number of IVLA attention heads; every entry of `hidden_sizes` must be divisible by it.
        label_embedding_size (`int`, *optional*, defaults to 768):
            Width of the label-name embeddings fed to the model (768 for BERT-base).
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the ConvNeXt block MLP.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialiser of linear and convolution weights.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of every LayerNorm.
        layer_scale_init_value (`float`, *optional*, defaults to 1e-6):
            Initial value of the ConvNeXt layer-scale parameters (0 disables layer scale).
        drop_path_rate (`float`, *optional*, defaults to 0.0):
            Stochastic depth rate, increasing linearly over all blocks.
        fold_label_attention (`bool`, *optional*):
            How IVLA is computed; both forms give the same outputs (see `HSVLTVisualLinguisticAttention`). `True`:
            the key/value projections folded onto the label queries (the K label vectors are projected instead of the
            H*W visual tokens); `False`: the authors' straightforward form; `None` (default): in each block, the form
            that costs fewer multiply-adds (folded in every block of HSVLT-S at 448x448 with 80 labels, straightforward
            where a stage has fewer tokens than labels, e.g. small images).
        image_size, multilabel_loss, asl_gamma_negative, asl_gamma_positive, asl_clip, problem_type:
            The fields of the whole family, documented in [`FamilyConfigMixin`] (HSVLT-S: 448, `"bce"`, the paper's
            loss).

    `validate_architecture` (run at construction, by `config.validate()` and when saving) refuses, with a one-line
    `ValueError` naming the field, any value the model cannot be built or trained with (e.g. `drop_path_rate`
    outside [0, 1), non-positive sizes, duplicate label names, an unknown `multilabel_loss`).

    Example:

    ```python
    >>> from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification

    >>> config = HSVLTConfig(id2label={i: name for i, name in enumerate(["cat", "dog", "person"])})
    >>> model = HSVLTForMultiLabelClassification(config)
    ```"""

    model_type = "hsvlt"
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["multimodal_features"]

    num_channels: int = 3
    patch_size: int = 4
    depths: list[int] | tuple[int, ...] = (3, 3, 27, 3)
    hidden_sizes: list[int] | tuple[int, ...] = (96, 192, 384, 768)
    num_attention_heads: int = 1
    label_embedding_size: int = 768
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    layer_scale_init_value: float = 1e-6
    drop_path_rate: float | int = 0.0
    fold_label_attention: bool | None = None

    def __post_init__(self, **kwargs):
        self.depths = list(self.depths)
        self.hidden_sizes = list(self.hidden_sizes)
        super().__post_init__(**kwargs)

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def validate_architecture(self):
        """Part of `@strict` validation (after the family's checks of [`FamilyConfigMixin`]): raise a one-line
        `ValueError` naming the field when the model cannot be built (or trained) from this configuration."""
        super().validate_architecture()
        self._check_sizes()
        self._check_labels()
        self._check_training()

    def _check_sizes(self):
        for name in ("num_channels", "patch_size", "label_embedding_size", "num_attention_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"HSVLTConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if len(self.depths) == 0:
            raise ValueError("HSVLTConfig.depths must list at least one stage, got an empty list.")
        if len(self.depths) != len(self.hidden_sizes):
            raise ValueError(
                f"HSVLTConfig.depths and hidden_sizes must have one entry per stage: got depths={self.depths} "
                f"({len(self.depths)} stages) and hidden_sizes={self.hidden_sizes} ({len(self.hidden_sizes)} stages)."
            )
        if any(depth < 1 for depth in self.depths):
            raise ValueError(
                f"HSVLTConfig.depths must all be >= 1 (every stage's last block feeds the head), got {self.depths}."
            )
        if any(size < 1 for size in self.hidden_sizes):
            raise ValueError(f"HSVLTConfig.hidden_sizes must all be positive, got {self.hidden_sizes}.")
        indivisible = [size for size in self.hidden_sizes if size % self.num_attention_heads]
        if indivisible:
            raise ValueError(
                f"HSVLTConfig.hidden_sizes {self.hidden_sizes} must all be divisible by num_attention_heads="
                f"{self.num_attention_heads}; {indivisible} are not."
            )

    def _check_labels(self):
        names = list((self.id2label or {}).values())
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"HSVLTConfig.id2label must name every label once, got duplicates {duplicates}.")

    def _check_training(self):
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"HSVLTConfig.drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")


__all__ = ["HSVLTConfig"]
