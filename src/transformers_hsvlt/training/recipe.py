"""A run's recipe resolved once: the preset's schedule, early stopping and learning-rate multipliers with the
command line's overrides, in one [`Recipe`] that `FamilyTrainer` receives.

The optimizer, learning rate, weight decay, batch size and length are `TrainingArguments` (`--optim`, `--learning_rate`,
...), whose defaults come from the preset's `recipe`; everything else a recipe holds is a `Recipe` field, settable
from the command line by the flag of the same name (`--lr_schedule multistep --lr_milestones 30,40 --lr_gamma 0.1`,
`--warmup_epochs 2`, `--plateau_factor 0.1 --plateau_patience 1`, `--early_stopping_patience 4`,
`--lr_multipliers 'msrn.backbone.=0.1,msrn.level_buffers.=0.1'`).
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from ..registry import Architecture
from .schedule import OUR_SCHEDULES


@dataclass(frozen=True)
class Recipe:
    """What a run trains with besides its `TrainingArguments`.

    Attributes:
        lr_schedule: `warmup_plateau`, `multistep` (see `schedule`) or a transformers `lr_scheduler_type`.
        warmup_epochs: Warm-up of `warmup_plateau`, in epochs.
        plateau_factor: `warmup_plateau`'s learning-rate factor when the validation mAP stops improving.
        plateau_patience: Evaluations without improvement before `warmup_plateau` lowers the learning rate.
        lr_milestones: `multistep`'s epochs after which the learning rate is multiplied by `lr_gamma`.
        lr_gamma: `multistep`'s factor.
        early_stopping_patience: Evaluations without improvement before training stops (0: never).
        lr_multipliers: Parameter-name prefix -> learning-rate multiplier of the optimizer's parameter groups (the
            longest matching prefix wins).
    """

    lr_schedule: str = "warmup_plateau"
    warmup_epochs: float = 0.0
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    early_stopping_patience: int = 0
    lr_multipliers: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        for name, valid, expected in (
            ("warmup_epochs", 0 <= self.warmup_epochs < math.inf, "a finite number >= 0"),
            ("plateau_factor", 0 < self.plateau_factor <= 1, "in (0, 1]"),
            ("plateau_patience", self.plateau_patience >= 1, ">= 1"),
            ("lr_milestones", all(epoch > 0 for epoch in self.lr_milestones), "positive epochs"),
            ("lr_gamma", self.lr_gamma > 0, "> 0"),
            ("early_stopping_patience", self.early_stopping_patience >= 0, ">= 0 (0: never)"),
            ("lr_multipliers", all(value >= 0 for value in self.lr_multipliers.values()), "multipliers >= 0"),
        ):
            if not valid:
                raise ValueError(f"--{name} must be {expected}, got {getattr(self, name)}.")
        if self.lr_schedule == "multistep" and not self.lr_milestones:
            raise ValueError("--lr_schedule multistep needs --lr_milestones (epochs, e.g. 30,40).")

    @property
    def uses_trainer_schedule(self) -> bool:
        """Whether `lr_schedule` is a transformers `lr_scheduler_type` (run by `Trainer` itself)."""
        return self.lr_schedule not in OUR_SCHEDULES

    def to_dict(self) -> dict:
        return {**asdict(self), "lr_milestones": list(self.lr_milestones), "lr_multipliers": dict(self.lr_multipliers)}


RECIPE_FIELDS = tuple(Recipe.__dataclass_fields__)
"""The `Recipe` fields: each is a `hsvlt-train` flag of the same name and a `Preset` field."""


def parse_milestones(text: str) -> tuple[int, ...]:
    """`'30,40'` -> `(30, 40)`; `''` or `'none'` -> `()`."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(sorted(int(part) for part in text.split(",")))
    except ValueError as error:
        raise ValueError(f"--lr_milestones must be comma-separated epochs (e.g. 30,40), got {text!r}.") from error


def parse_lr_multipliers(text: str) -> dict[str, float]:
    """`'msrn.backbone.=0.1,msrn.level_buffers.=0.1'` -> `{'msrn.backbone.': 0.1, ...}`; `''` or `'none'` -> `{}`."""
    if text.strip().lower() in ("", "none"):
        return {}
    multipliers = {}
    for item in text.split(","):
        prefix, equals, value = item.strip().rpartition("=")
        try:
            multipliers[prefix] = float(value)
        except ValueError:
            equals = ""
        if not equals or not prefix:
            raise ValueError(
                f"--lr_multipliers must be 'prefix=multiplier' pairs (e.g. msrn.backbone.=0.1), got {item.strip()!r}."
            )
    return multipliers


def resolve_recipe(architecture: Architecture, model_args) -> Recipe:
    """The run's recipe: `model_args`' recipe flags where given, else the preset's values. The architecture's
    `lr_multipliers` apply when training starts from pretrained weights (`--backbone` or `--model_name_or_path`);
    from scratch every part learns at the full rate."""
    preset = architecture.presets[model_args.preset]
    pretrained = bool(model_args.backbone or model_args.model_name_or_path)
    defaults = {
        **{name: getattr(preset, name) for name in RECIPE_FIELDS if name != "lr_multipliers"},
        "lr_multipliers": architecture.lr_multipliers if pretrained else {},
    }
    parsers = {"lr_milestones": parse_milestones, "lr_multipliers": parse_lr_multipliers}
    given = {
        name: parsers.get(name, lambda value: value)(getattr(model_args, name))
        for name in RECIPE_FIELDS
        if getattr(model_args, name) is not None
    }
    return Recipe(**{**defaults, **given})


__all__ = ["RECIPE_FIELDS", "Recipe", "parse_lr_multipliers", "parse_milestones", "resolve_recipe"]
