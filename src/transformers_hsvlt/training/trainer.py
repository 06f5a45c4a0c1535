"""`FamilyTrainer`: `transformers.Trainer` with the recipe parts a plain `Trainer` does not have.

The models carry their own contracts (their loss is a mean and takes no `num_items_in_batch`, so a plain `Trainer`
trains them correctly, gradient accumulation included). This subclass only adds what a recipe asks for: batch
augmentation on the training device, the `warmup_plateau` / `multistep` schedules, and per-prefix learning-rate
multipliers (e.g. MSRN's backbone at 0.1x).
"""

import os

import torch
from transformers import Trainer, TrainingArguments

from .schedule import PlateauCallback, WarmupReduceLROnPlateau, multistep_by_epoch


class FamilyTrainer(Trainer):
    """`Trainer` with a recipe's batch augmentation, schedule and learning-rate multipliers.

    Args:
        train_augmentation: A module applied to `pixel_values` of training batches on the training device.
        lr_schedule: `warmup_plateau`, `multistep`, or a transformers `lr_scheduler_type` (then `Trainer`'s own).
        warmup_epochs, plateau_factor, plateau_patience: The `warmup_plateau` parameters.
        lr_milestones, lr_gamma: The `multistep` parameters (milestones in epochs).
        lr_multipliers: Parameter-name prefix -> learning-rate multiplier (the longest matching prefix wins).
    """

    def __init__(
        self,
        *args,
        train_augmentation=None,
        lr_schedule: str = "warmup_plateau",
        warmup_epochs: float = 0.0,
        plateau_factor: float = 0.1,
        plateau_patience: int = 1,
        lr_milestones=(),
        lr_gamma: float = 0.1,
        lr_multipliers=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.train_augmentation = train_augmentation
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.lr_milestones = tuple(lr_milestones)
        self.lr_gamma = lr_gamma
        self.lr_multipliers = dict(lr_multipliers or {})
        if lr_schedule == "warmup_plateau":
            self.add_callback(PlateauCallback())

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training and self.train_augmentation is not None:
            inputs = {**inputs, "pixel_values": self.train_augmentation(inputs["pixel_values"])}
        return super().compute_loss(model, inputs, *args, **kwargs)

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self._update_steps_per_epoch = values[1]  # epochs of the schedules are counted in optimiser steps
        return values

    def _steps_per_epoch(self, num_training_steps: int) -> float:
        # With `--max_steps`, `num_train_epochs` is not the length of the run: use the real epoch length.
        return getattr(self, "_update_steps_per_epoch", None) or num_training_steps / max(
            self.args.num_train_epochs, 1e-9
        )

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        optimizer = optimizer or self.optimizer
        if self.lr_scheduler is None and self.lr_schedule == "warmup_plateau":
            self.lr_scheduler = WarmupReduceLROnPlateau(
                optimizer,
                warmup_steps=round(self.warmup_epochs * self._steps_per_epoch(num_training_steps)),
                factor=self.plateau_factor,
                patience=self.plateau_patience,
            )
        elif self.lr_scheduler is None and self.lr_schedule == "multistep":
            self.lr_scheduler = multistep_by_epoch(
                optimizer, self._steps_per_epoch(num_training_steps), self.lr_milestones, self.lr_gamma
            )
        return super().create_scheduler(num_training_steps, optimizer)

    def create_optimizer(self, model=None):
        if self.optimizer is not None or not self.lr_multipliers:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(self.parameter_groups(model), **optimizer_kwargs)
        return self.optimizer

    def parameter_groups(self, model) -> list[dict]:
        """One group per (learning-rate multiplier, weight decay) pair of the trainable parameters."""
        decay_names = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                groups.setdefault((self.lr_multiplier(name), name in decay_names), []).append(parameter)
        return [
            {
                "params": parameters,
                "lr": self.args.learning_rate * multiplier,
                "weight_decay": self.args.weight_decay if decays else 0.0,
            }
            for (multiplier, decays), parameters in groups.items()
        ]

    def lr_multiplier(self, parameter_name: str) -> float:
        matches = [prefix for prefix in self.lr_multipliers if parameter_name.startswith(prefix)]
        return self.lr_multipliers[max(matches, key=len)] if matches else 1.0


def check_distributed_launch(training_args: TrainingArguments) -> None:
    """Refuse a multi-process launch (`WORLD_SIZE` > 1) that `Trainer` would run as independent single-process
    trainings: on a machine without GPUs, `accelerate launch --multi_gpu` or `torchrun` start the processes, but
    without `--use_cpu true` transformers does not set up distributed CPU training, so every process would train on
    the whole dataset alone and write the same output directory."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:
        raise ValueError(
            f"launched as {launched} processes (WORLD_SIZE={launched}) but set up for single-process training, so each "
            f"process would train alone and write the same {training_args.output_dir}. Without GPUs, add "
            "--use_cpu true for distributed CPU training (gloo); with GPUs, check that they are visible."
        )
