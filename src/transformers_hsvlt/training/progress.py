"""What `hsvlt-train` shows while it runs: one progress bar over the optimiser steps and one line per evaluation
(`epoch 2: loss 0.6219, eval mAP 31.10`), instead of `Trainer`'s dictionaries and per-evaluation bars."""

from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback


class TrainingProgress(TrainerCallback):
    """A progress bar over the optimiser steps (unless `show_bar` is false) and a one-line summary per evaluation."""

    def __init__(self, show_bar: bool = True, metric: str = "mAP"):
        self.show_bar = show_bar
        self.metric = metric
        self.bar = None
        self.last_loss = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.show_bar and state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_loss = logs["loss"]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.bar is None or not metrics:
            return
        parts = [] if self.last_loss is None else [f"loss {self.last_loss:.4f}"]
        parts.append(f"eval {self.metric} {metrics.get(f'eval_{self.metric}', float('nan')):.2f}")
        self.bar.write(f"epoch {state.epoch:g}: " + ", ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def use_training_progress(trainer: Trainer, quiet: bool) -> None:
    """Replace `Trainer`'s printing callbacks with `TrainingProgress`."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainingProgress(show_bar=not quiet))
