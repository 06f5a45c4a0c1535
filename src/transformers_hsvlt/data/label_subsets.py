"""Training on a subset of the classes, for unseen-label evaluation (e.g. NUS-WIDE's 925 seen / 81 unseen labels):
a split restricted to some of its classes keeps every image, with only those labels."""

import os

from datasets import ClassLabel, Dataset, Sequence

from .features import IGNORE_COLUMN, LABELS_COLUMN, get_class_names
from .label_files import read_label_names


def parse_label_subset(value: str, class_names: list[str]) -> list[str]:
    """The class names of `--train_labels`: a label file, or comma-separated names; each must be a class."""
    names = read_label_names(value) if os.path.isfile(value) else [name.strip() for name in value.split(",")]
    unknown = [name for name in names if name not in class_names]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(
            f"--train_labels must name distinct classes of the dataset ({class_names}); got {names}"
            + (f", unknown: {unknown}" if unknown else "")
            + "."
        )
    return [name for name in class_names if name in names]  # the dataset's order


def restrict_to_labels(dataset: Dataset, names: list[str]) -> Dataset:
    """The split with only the labels `names` (in that order): every image is kept, other labels are dropped."""
    old_names = get_class_names(dataset)
    new_index = {old_names.index(name): index for index, name in enumerate(names)}
    columns = [column for column in (LABELS_COLUMN, IGNORE_COLUMN) if column in dataset.column_names]

    def remap(batch: dict) -> dict:
        return {
            column: [sorted(new_index[label] for label in labels if label in new_index) for labels in batch[column]]
            for column in columns
        }

    features = dataset.features.copy()
    for column in columns:
        features[column] = Sequence(ClassLabel(names=names))
    return dataset.map(remap, batched=True, features=features)
