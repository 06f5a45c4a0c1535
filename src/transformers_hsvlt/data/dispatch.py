"""Dataset dispatch: the `--dataset` formats of the commands, their default splits, and the arguments that name them."""

import os
from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict, Image

from .coco import load_coco2014
from .custom import load_custom, load_hub
from .digits import build_digit_canvases
from .features import get_class_names
from .label_files import iter_lines
from .label_subsets import parse_label_subset, restrict_to_labels
from .listfile import load_list_files
from .nuswide import load_nuswide
from .streaming import load_hub_streaming
from .voc import load_voc2007


DEFAULT_SPLITS = {
    # dataset format -> (training split, evaluation split)
    "digits": ("train", "test"),
    "voc2007": ("trainval", "test"),
    "coco2014": ("train", "validation"),
    "nuswide": ("train", "test"),
    "list": ("train", "test"),
    "custom": ("train", "test"),
    "hub": ("train", "validation"),
}


@dataclass
class DataArguments:
    """Which dataset to train or evaluate on (see `transformers_hsvlt.data`)."""

    dataset: str = field(default="digits", metadata={"help": "Dataset format.", "choices": list(DEFAULT_SPLITS)})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Root of the dataset (VOCdevkit, COCO root, NUS-WIDE root, custom CSV/JSONL/folder) or a "
            "Hub dataset name / local dataset directory for --dataset hub."
        },
    )
    train_split: str | None = field(default=None, metadata={"help": "Training split (default depends on the dataset)."})
    eval_split: str | None = field(
        default=None, metadata={"help": "Evaluation split (default depends on the dataset)."}
    )
    label_file: str | None = field(
        default=None, metadata={"help": "label.txt (one class per line) for --dataset list/custom."}
    )
    train_list: str | None = field(
        default=None, metadata={"help": "Authors' list file of the training split (--dataset list)."}
    )
    eval_list: str | None = field(
        default=None, metadata={"help": "Authors' list file of the evaluation split (--dataset list)."}
    )
    label_column: str = field(default="labels", metadata={"help": "Label column for --dataset hub."})
    train_labels: str | None = field(
        default=None,
        metadata={
            "help": "Train on these classes only (comma-separated names or a label file) and evaluate on all, "
            "reporting seen and unseen mAP apart (open-vocabulary models: PatchCT, PVLR)."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many evaluation images."})
    augment: bool | None = field(
        default=None,
        metadata={
            "help": "The architecture's batch augmentation on the training device. Default: on, except for digits "
            "(a flip or crop changes or cuts digits while their labels stay)."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "--dataset hub only: stream the training split (needs --max_steps) instead of loading it."},
    )
    digits_train_size: int = field(
        default=4000, metadata={"help": "Number of training canvases of the digits dataset."}
    )
    digits_test_size: int = field(default=500, metadata={"help": "Number of test canvases of the digits dataset."})
    digits_validation_size: int = field(
        default=500,
        metadata={
            "help": "Number of validation canvases of the digits dataset (held-out handwriting, e.g. to calibrate)."
        },
    )

    def __post_init__(self):
        for name in (
            "max_train_samples",
            "max_eval_samples",
            "digits_train_size",
            "digits_test_size",
            "digits_validation_size",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be at least 1, got {value}.")
        if self.train_labels is not None and not self.train_labels.strip(" ,"):
            raise ValueError(
                f"--train_labels {self.train_labels!r} names no class: give comma-separated class names or a label file."
            )
        if self.dataset not in ("digits", "list") and self.data_dir is None:
            raise ValueError(f"--dataset {self.dataset} needs --data_dir (the dataset root, file or Hub name).")
        if self.dataset == "list" and not (self.label_file and self.eval_list):
            raise ValueError("--dataset list needs --label_file and --eval_list (and --train_list to train).")
        if self.dataset == "list":
            for flag, path in (("--train_list", self.train_list), ("--eval_list", self.eval_list)):
                if path and os.path.isfile(path) and next(iter_lines(path), None) is None:
                    raise ValueError(f"{flag} {path} has no image line: the split would have no image.")
        if self.streaming and self.dataset != "hub":
            raise ValueError(f"--streaming works with --dataset hub, not --dataset {self.dataset}.")


def load_splits(data_args: DataArguments, seed: int = 0) -> DatasetDict:
    """Every split of the requested dataset, in the common multi-label schema."""
    name = data_args.dataset
    if name == "digits":
        return build_digit_canvases(
            data_args.digits_train_size,
            data_args.digits_test_size,
            seed=seed,
            num_validation=data_args.digits_validation_size,
        )
    if name == "list":
        lists = {
            split: path for split, path in (("train", data_args.train_list), ("test", data_args.eval_list)) if path
        }
        return load_list_files(data_args.label_file, lists, image_root=data_args.data_dir)
    if name == "hub":
        return load_hub(data_args.data_dir, label_column=data_args.label_column)
    if name == "custom":
        return load_custom(data_args.data_dir, class_names=data_args.label_file)
    return {"voc2007": load_voc2007, "coco2014": load_coco2014, "nuswide": load_nuswide}[name](data_args.data_dir)


def load_split(data_args: DataArguments, split: str, seed: int = 0) -> Dataset:
    """The split named `split` of the requested dataset, limited to `max_eval_samples`; a missing or empty split is
    an error."""
    splits = load_splits(data_args, seed)
    if split not in splits:
        raise ValueError(f"Dataset {data_args.dataset!r} has no split {split!r}; it has {sorted(splits)}.")
    if len(splits[split]) == 0:
        raise ValueError(f"The split {split!r} of dataset {data_args.dataset!r} has no image.")
    limit = data_args.max_eval_samples
    return splits[split] if limit is None else splits[split].select(range(min(limit, len(splits[split]))))


STREAMED_EVAL_SIZE = 1000
"""Images of a streamed evaluation split read into memory when `--max_eval_samples` is not given."""


def load_training_data(data_args: DataArguments, seed: int = 0) -> DatasetDict:
    """The `train` and `eval` splits of the requested dataset (default splits per format), limited to
    `max_train_samples` / `max_eval_samples`; an empty split is an error. With `streaming`, the training split is an
    `IterableDataset` and the evaluation split its first `max_eval_samples` (default 1,000) images. `--dataset list`
    without `--train_list` has only the evaluation split (enough for `hsvlt-eval`)."""
    if data_args.streaming:
        return _streamed_training_data(data_args)
    splits = load_splits(data_args, seed)
    chosen = {
        "train": data_args.train_split or DEFAULT_SPLITS[data_args.dataset][0],
        "eval": data_args.eval_split or DEFAULT_SPLITS[data_args.dataset][1],
    }
    limits = {"train": data_args.max_train_samples, "eval": data_args.max_eval_samples}
    result = {}
    if data_args.dataset == "list" and not data_args.train_list:
        del chosen["train"]
    for role, split in chosen.items():
        if split not in splits:
            raise ValueError(f"Dataset {data_args.dataset!r} has no split {split!r}; it has {sorted(splits)}.")
        dataset = splits[split]
        if len(dataset) == 0:
            raise ValueError(f"The {role} split {split!r} of dataset {data_args.dataset!r} has no image.")
        limit = limits[role]
        result[role] = dataset if limit is None else dataset.select(range(min(limit, len(dataset))))
    if data_args.train_labels and "train" in result:
        seen = parse_label_subset(data_args.train_labels, get_class_names(result["train"]))
        result["train"] = restrict_to_labels(result["train"], seen)
    return DatasetDict(result)


def _streamed_training_data(data_args: DataArguments) -> dict:
    streams = load_hub_streaming(
        data_args.data_dir, label_column=data_args.label_column, class_names=data_args.label_file
    )
    train_split = data_args.train_split or DEFAULT_SPLITS["hub"][0]
    eval_split = data_args.eval_split or DEFAULT_SPLITS["hub"][1]
    for split in (train_split, eval_split):
        if split not in streams:
            raise ValueError(f"Dataset {data_args.data_dir!r} has no split {split!r}; it has {sorted(streams)}.")
    train = streams[train_split]
    if data_args.max_train_samples is not None:
        train = train.take(data_args.max_train_samples)
    evaluation = streams[eval_split].take(data_args.max_eval_samples or STREAMED_EVAL_SIZE)
    evaluation = Dataset.from_list(list(evaluation), features=evaluation.features).cast_column("image", Image())
    if len(evaluation) == 0:
        raise ValueError(f"The eval split {eval_split!r} of {data_args.data_dir!r} has no image.")
    return {"train": train, "eval": evaluation}
