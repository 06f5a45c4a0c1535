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
        multilabel_loss (`str`, *optional*, defaults to `"bce"`):
            Classification loss of [`HSVLTForMultiLabelClassification`]: `"bce"` (binary cross-entropy averaged over
            the label entries that are not ignored, the paper's loss) or `"asl"` (the Asymmetric Loss of Ridnik et
            al., ICCV 2021, summed over labels and averaged over images). Entries labelled -1 are left out of both.
        asl_gamma_negative (`float`, *optional*, defaults to 4.0):
            ASL focusing exponent of the negative (absent) labels; used when `multilabel_loss="asl"`.
        asl_gamma_positive (`float`, *optional*, defaults to 0.0):
            ASL focusing exponent of the positive (present) labels.
        asl_clip (`float`, *optional*, defaults to 0.05):
            ASL probability margin: negatives whose probability is below `asl_clip` cost nothing. In [0, 1).
        label_thresholds (`list[float]`, *optional*):
            The decision threshold of every label, in label order, each in [0, 1], chosen on a calibration split by
            `hsvlt-calibrate`. `None` (default): 0.5 for every label. Used wherever labels are decided
            (`post_process_multi_label`, the pipeline, `hsvlt-predict`, the demo, `hsvlt-eval`).
        label_thresholds_source (`dict`, *optional*):
            Where `label_thresholds` were calibrated (dataset, split, number of images, strategy), as written by
            `hsvlt-calibrate`.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            HSVLT is a multi-label classifier: one sigmoid per label.

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
    image_size: int = 448
    fold_label_attention: bool | None = None
    multilabel_loss: str = "bce"
    asl_gamma_negative: float | int = 4.0
    asl_gamma_positive: float | int = 0.0
    asl_clip: float | int = 0.05
    label_thresholds: list[float | int] | None = None
    label_thresholds_source: dict | None = None

    def __post_init__(self, **kwargs):
        self.depths = list(self.depths)
        self.hidden_sizes = list(self.hidden_sizes)
        if self.problem_type is None:
            self.problem_type = "multi_label_classification"
        super().__post_init__(**kwargs)
        if self.id2label is not None and self.label2id is None:
            self.label2id = {name: index for index, name in self.id2label.items()}
        # Checked here too, so that construction raises the plain `ValueError` (`@strict` wraps the exceptions of the
        # `validate_*` hooks it runs after `__init__` in a `StrictDataclassClassValidationError`).
        self.validate_architecture()

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def validate_architecture(self):
        """Part of `@strict` validation: raise a one-line `ValueError` naming the field when the model cannot be built
        (or trained) from this configuration."""
        super().validate_architecture()
        self._check_sizes()
        self._check_labels()
        self._check_training()
        if self.label_thresholds is not None and (
            len(self.label_thresholds) != self.num_labels or not all(0 <= value <= 1 for value in self.label_thresholds)
        ):
            raise ValueError(
                f"{type(self).__name__}.label_thresholds must be None or one finite value in [0, 1] per label "
                f"({self.num_labels} labels), got {self.label_thresholds}."
            )

    def _check_sizes(self):
        for name in ("num_channels", "patch_size", "image_size", "label_embedding_size", "num_attention_heads"):
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
        if not self.id2label:
            raise ValueError(
                f"HSVLTConfig.id2label is empty (num_labels must be >= 1, got {self.num_labels}): a multi-label "
                "classifier needs at least one label."
            )
        names = list(self.id2label.values())
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"HSVLTConfig.id2label must name every label once, got duplicates {duplicates}.")
        if self.problem_type != "multi_label_classification":
            raise ValueError(
                "HSVLTConfig.problem_type must be 'multi_label_classification' (one sigmoid per label), got "
                f"{self.problem_type!r}."
            )

    def _check_training(self):
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"HSVLTConfig.drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")
        if self.multilabel_loss not in ("bce", "asl"):
            raise ValueError(f"HSVLTConfig.multilabel_loss must be 'bce' or 'asl', got {self.multilabel_loss!r}.")
        for name in ("asl_gamma_negative", "asl_gamma_positive"):
            if getattr(self, name) < 0:
                raise ValueError(f"HSVLTConfig.{name} must be >= 0, got {getattr(self, name)}.")
        if not 0 <= self.asl_clip < 1:
            raise ValueError(f"HSVLTConfig.asl_clip must be in [0, 1), got {self.asl_clip}.")


__all__ = ["HSVLTConfig"]
