"""HSVLT model configuration."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class HSVLTConfig(PreTrainedConfig):
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
        image_size (`int`, *optional*, defaults to 448):
            Input resolution the model is trained at.
        fold_label_attention (`bool`, *optional*):
            How IVLA is computed; both forms give the same outputs (see `HSVLTVisualLinguisticAttention`). `True`:
            the key/value projections folded onto the label queries (the K label vectors are projected instead of the
            H*W visual tokens); `False`: the authors' straightforward form; `None` (default): in each block, the form
            that costs fewer multiply-adds (folded in every block of HSVLT-S at 448x448 with 80 labels, straightforward
            where a stage has fewer tokens than labels, e.g. small images).
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            HSVLT is a multi-label classifier: one sigmoid per label.

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
    image_size: int = 448
    fold_label_attention: bool | None = None

    def __post_init__(self, **kwargs):
        self.depths = list(self.depths)
        self.hidden_sizes = list(self.hidden_sizes)
        if self.problem_type is None:
            self.problem_type = "multi_label_classification"
        requested_num_labels = kwargs.get("num_labels")
        if requested_num_labels is not None and requested_num_labels < 1:
            raise ValueError(f"HSVLTConfig.num_labels must be >= 1, got {requested_num_labels}.")
        super().__post_init__(**kwargs)
        if self.id2label is not None and self.label2id is None:
            self.label2id = {name: index for index, name in self.id2label.items()}
        self._check_architecture()

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def _check_architecture(self):
        """Raise a `ValueError` naming the field when the model cannot be built from this configuration."""
        if len(self.depths) == 0:
            raise ValueError("HSVLTConfig.depths must list at least one stage, got an empty list.")
        if len(self.depths) != len(self.hidden_sizes):
            raise ValueError(
                f"HSVLTConfig.depths and hidden_sizes must have one entry per stage: got depths={self.depths} "
                f"({len(self.depths)} stages) and hidden_sizes={self.hidden_sizes} ({len(self.hidden_sizes)} stages)."
            )
        if any(depth < 1 for depth in self.depths):
            raise ValueError(f"HSVLTConfig.depths must all be >= 1 (every stage's last block feeds the head), got {self.depths}.")
        if any(size < 1 for size in self.hidden_sizes):
            raise ValueError(f"HSVLTConfig.hidden_sizes must all be positive, got {self.hidden_sizes}.")
        if self.num_attention_heads < 1:
            raise ValueError(f"HSVLTConfig.num_attention_heads must be >= 1, got {self.num_attention_heads}.")
        indivisible = [size for size in self.hidden_sizes if size % self.num_attention_heads]
        if indivisible:
            raise ValueError(
                f"HSVLTConfig.hidden_sizes {self.hidden_sizes} must all be divisible by num_attention_heads="
                f"{self.num_attention_heads}; {indivisible} are not."
            )
        if self.label_embedding_size < 1:
            raise ValueError(f"HSVLTConfig.label_embedding_size must be positive, got {self.label_embedding_size}.")
        if self.id2label is not None and len(self.id2label) == 0:
            raise ValueError("HSVLTConfig.id2label is empty: a multi-label classifier needs at least one label.")
        if self.problem_type != "multi_label_classification":
            raise ValueError(
                f"HSVLTConfig.problem_type must be 'multi_label_classification' (one sigmoid per label), got {self.problem_type!r}."
            )


__all__ = ["HSVLTConfig"]
