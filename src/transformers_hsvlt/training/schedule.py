"""Learning-rate schedules of the recipes that transformers does not have: `warmup_plateau` and `multistep`.

`--lr_schedule warmup_plateau`: linear warm-up over `warmup_epochs`, then the learning rate times `plateau_factor`
whenever the validation metric has not improved for `plateau_patience` evaluations (HSVLT's authors' recipe).
`--lr_schedule multistep`: the learning rate times `lr_gamma` after each epoch of `lr_milestones` (MSRN's authors:
x0.1 after epoch 30). Any other value is a transformers `lr_scheduler_type` (`linear`, `cosine`, `constant`, ...).
Both schedules count optimiser steps, so they resume exactly from a checkpoint's scheduler state.
"""

import bisect
import math

import torch
from transformers import TrainerCallback


OUR_SCHEDULES = ("warmup_plateau", "multistep")


class WarmupReduceLROnPlateau(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up over `warmup_steps` optimiser steps, then the learning rate is multiplied by `factor` whenever
    the monitored metric (higher is better) has not improved by more than `threshold` for `patience` evaluations.

    `step()` is called by `Trainer` after every optimiser step; `report(metric)` after every evaluation (see
    `PlateauCallback`). The plateau state is part of `state_dict()`, so it resumes with the checkpoint.
    """

    def __init__(self, optimizer, warmup_steps: int, factor: float = 0.1, patience: int = 1, threshold: float = 1e-4):
        self.warmup_steps = warmup_steps
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.scale = 1.0
        self.best = -math.inf
        self.evaluations_without_improvement = 0
        super().__init__(optimizer, self._multiplier)

    def _multiplier(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return warmup * self.scale

    def report(self, metric: float) -> None:
        if metric > self.best + self.threshold:
            self.best = metric
            self.evaluations_without_improvement = 0
            return
        self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            self.scale *= self.factor
            self.evaluations_without_improvement = 0
            for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base_lr * self._multiplier(self.last_epoch)
            self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class PlateauCallback(TrainerCallback):
    """Feeds every evaluation's `metric_for_best_model` to a `WarmupReduceLROnPlateau`."""

    def on_evaluate(self, args, state, control, metrics=None, lr_scheduler=None, **kwargs):
        if isinstance(lr_scheduler, WarmupReduceLROnPlateau) and metrics:
            key = args.metric_for_best_model
            lr_scheduler.report(metrics[key if key.startswith("eval_") else f"eval_{key}"])


def multistep_by_epoch(
    optimizer, steps_per_epoch: float, milestones, gamma: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate times `gamma` once per milestone epoch passed (`milestones` in epochs)."""
    boundaries = sorted(round(epoch * steps_per_epoch) for epoch in milestones)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: gamma ** bisect.bisect_right(boundaries, step))
