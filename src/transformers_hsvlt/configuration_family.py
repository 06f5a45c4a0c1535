"""The configuration fields every model of the family shares, and their checks, written once.

Remote code: imports only transformers (through the configs that use it); a sibling of every architecture's config,
copied into their checkpoints.
"""

from dataclasses import dataclass


MULTILABEL_LOSSES = ("bce", "asl")
"""The classification losses of `multilabel_losses` (`multilabel_loss` values)."""


@dataclass(repr=False, kw_only=True)
class FamilyConfigMixin:
    r"""
    The fields shared by every configuration of the family, mixed into each architecture's `PreTrainedConfig` (put it
    first among the bases: `class MyConfig(FamilyConfigMixin, PreTrainedConfig)`).

    Args:
        image_size (`int`, *optional*, defaults to 448):
            Input resolution the model is trained at (the image processor's size).
        multilabel_loss (`str`, *optional*, defaults to `"bce"`):
            Classification loss: `"bce"` (binary cross-entropy averaged over the label entries that are not ignored)
            or `"asl"` (the Asymmetric Loss of Ridnik et al., ICCV 2021, summed over labels and averaged over images).
            Entries labelled -1 are left out of both. An architecture may change the default (PatchCT, PVLR: `"asl"`).
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
            Every model of the family is a multi-label classifier: one sigmoid per label.

    `__post_init__` sets `problem_type` and `label2id` (from `id2label`), then runs `validate_architecture`, so a bad
    value is a plain one-line `ValueError` naming the field at construction; `validate_architecture` (also run by
    `config.validate()` and when saving) checks these fields, then an architecture's own checks follow in its
    override. An architecture that derives fields from others (e.g. MSRN's `num_groups`) does it in
    `derive_fields`, which runs before the checks.
    """

    image_size: int = 448
    multilabel_loss: str = "bce"
    asl_gamma_negative: float | int = 4.0
    asl_gamma_positive: float | int = 0.0
    asl_clip: float | int = 0.05
    label_thresholds: list[float | int] | None = None
    label_thresholds_source: dict | None = None

    def __post_init__(self, **kwargs):
        if self.problem_type is None:
            self.problem_type = "multi_label_classification"
        num_labels = kwargs.get("num_labels")
        if num_labels is not None and num_labels < 1:
            raise ValueError(f"{type(self).__name__}.num_labels must be >= 1, got {num_labels}.")
        super().__post_init__(**kwargs)
        if self.id2label is not None and self.label2id is None:
            self.label2id = {name: index for index, name in self.id2label.items()}
        self.derive_fields()
        # Checked here too, so that construction raises the plain `ValueError` (`@strict` wraps the exceptions of the
        # `validate_*` hooks it runs after `__init__` in a `StrictDataclassClassValidationError`).
        self.validate_architecture()

    def derive_fields(self):
        """Set the fields computed from others (none here); runs after `PreTrainedConfig.__post_init__`."""

    def validate_architecture(self):
        """Part of `@strict` validation: raise a one-line `ValueError` naming the field when a shared field holds a
        value the model cannot be built or trained with."""
        super().validate_architecture()
        name = type(self).__name__
        if self.image_size < 1:
            raise ValueError(f"{name}.image_size must be >= 1, got {self.image_size}.")
        if self.multilabel_loss not in MULTILABEL_LOSSES:
            raise ValueError(f"{name}.multilabel_loss must be 'bce' or 'asl', got {self.multilabel_loss!r}.")
        for field_name in ("asl_gamma_negative", "asl_gamma_positive"):
            if getattr(self, field_name) < 0:
                raise ValueError(f"{name}.{field_name} must be >= 0, got {getattr(self, field_name)}.")
        if not 0 <= self.asl_clip < 1:
            raise ValueError(f"{name}.asl_clip must be in [0, 1), got {self.asl_clip}.")
        if self.id2label is not None and len(self.id2label) == 0:
            raise ValueError(
                f"{name}.id2label is empty (num_labels must be >= 1): a multi-label classifier needs at least one label."
            )
        if self.problem_type != "multi_label_classification":
            raise ValueError(
                f"{name}.problem_type must be 'multi_label_classification' (one sigmoid per label), got "
                f"{self.problem_type!r}."
            )
        thresholds = self.label_thresholds
        if thresholds is not None and (
            len(thresholds) != self.num_labels or not all(0 <= value <= 1 for value in thresholds)
        ):
            raise ValueError(
                f"{name}.label_thresholds must be None or one finite value in [0, 1] per label ({self.num_labels} "
                f"labels), got {thresholds}."
            )


__all__ = ["MULTILABEL_LOSSES", "FamilyConfigMixin"]
