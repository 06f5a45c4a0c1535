"""`FamilyTrainer`: `transformers.Trainer` with the recipe parts a plain `Trainer` does not have.

The models carry their own contracts (their loss is a mean and takes no `num_items_in_batch`, so a plain `Trainer`
trains them correctly, gradient accumulation included). This subclass only adds what a recipe asks for: batch
augmentation on the training device, the `warmup_plateau` / `multistep` schedules, and per-prefix learning-rate
multipliers (e.g. MSRN's backbone at 0.1x), all from the run's `Recipe`. The multipliers are parameter groups given
to `Trainer`'s own optimizer factory, so `--optim` (SGD, Adafactor, bitsandbytes' optimizers, ...) keeps working.
"""

import os

import torch
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from ..distributed import let_collective_workers_finish
from .recipe import Recipe
from .schedule import PlateauCallback, WarmupReduceLROnPlateau, multistep_by_epoch


logger = logging.get_logger(__name__)


class FamilyTrainer(Trainer):
    """`Trainer` with a recipe's batch augmentation, schedule and learning-rate multipliers.

    Args:
        train_augmentation: A module applied to `pixel_values` of training batches on the training device.
        recipe: The run's [`Recipe`]: its schedule and learning-rate multipliers (its early stopping is a callback
            of the run); default: `Recipe()`.
    """

    def __init__(self, *args, train_augmentation=None, recipe: Recipe | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_augmentation = train_augmentation
        self.recipe = recipe or Recipe()
        if self.recipe.lr_schedule == "warmup_plateau":
            self.add_callback(PlateauCallback())

    def end(self):
        """`Trainer.end` (destroy the process group), once gloo's workers are done with training's last collective
        (`Trainer.store_flos`, right before `train` returns): see `let_collective_workers_finish`."""
        if self.args.world_size > 1:
            let_collective_workers_finish()
        super().end()

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
        recipe = self.recipe
        if self.lr_scheduler is None and recipe.lr_schedule == "warmup_plateau":
            self.lr_scheduler = WarmupReduceLROnPlateau(
                optimizer,
                warmup_steps=round(recipe.warmup_epochs * self._steps_per_epoch(num_training_steps)),
                factor=recipe.plateau_factor,
                patience=recipe.plateau_patience,
            )
        elif self.lr_scheduler is None and recipe.lr_schedule == "multistep":
            self.lr_scheduler = multistep_by_epoch(
                optimizer, self._steps_per_epoch(num_training_steps), recipe.lr_milestones, recipe.lr_gamma
            )
        return super().create_scheduler(num_training_steps, optimizer)

    def get_optimizer_cls_and_kwargs(self, args: TrainingArguments, model=None):
        """`Trainer`'s optimizer factory (`--optim`, `--optim_args`: any optimizer transformers knows), given the
        recipe's parameter groups (`params`, which `Trainer.create_optimizer` passes to the optimizer) when it has
        learning-rate multipliers and the optimizer takes parameter groups (not the layer-wise or model-wise ones,
        which bring their own)."""
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        owns_parameters = {"params", "model", "optimizer_dict"} & set(optimizer_kwargs)
        if self.recipe.lr_multipliers and model is not None and not owns_parameters:
            optimizer_kwargs = {**optimizer_kwargs, "params": self.parameter_groups(model)}
        return optimizer_cls, optimizer_kwargs

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
        multipliers = self.recipe.lr_multipliers
        matches = [prefix for prefix in multipliers if parameter_name.startswith(prefix)]
        return multipliers[max(matches, key=len)] if matches else 1.0


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


def warn_if_fsdp_is_ignored(training_args: TrainingArguments) -> None:
    """Say so when `--fsdp` will not shard: without GPUs accelerate runs the processes as plain DDP, each holding the
    whole model, its gradients and optimizer state."""
    if training_args.fsdp and training_args.device.type == "cpu":
        logger.warning(
            "--fsdp is ignored on CPU: accelerate trains without sharding (DDP: every process holds the whole model, "
            "its gradients and optimizer state); FSDP needs GPUs."
        )
