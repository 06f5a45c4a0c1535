"""Training with `transformers.Trainer`: arguments (`arguments`), recipes come from the registry's presets, model
building (`model_building`), the trainer (`trainer`), schedules (`schedule`), resuming (`resume`) and the run itself
(`run`)."""

from .arguments import ModelArguments, OutputArguments, parse_train_arguments
from .model_building import build_model, random_label_embeddings
from .resume import checkpoint_missing_files, resolve_resume_checkpoint
from .run import save_examples, train
from .schedule import WarmupReduceLROnPlateau
from .trainer import FamilyTrainer, check_distributed_launch


__all__ = [
    "FamilyTrainer",
    "ModelArguments",
    "OutputArguments",
    "WarmupReduceLROnPlateau",
    "build_model",
    "check_distributed_launch",
    "checkpoint_missing_files",
    "parse_train_arguments",
    "random_label_embeddings",
    "resolve_resume_checkpoint",
    "save_examples",
    "train",
]
