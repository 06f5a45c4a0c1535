"""Label co-occurrence statistics of a training split (ML-GCN's and MSRN's `nums` and `adj`), for architectures
whose registry entry asks for `cooccurrence` (see `registry.LabelCooccurrence`)."""

import numpy as np
from datasets import Dataset, DatasetDict

from ..registry import LabelCooccurrence


IGNORED_LABELS_COUNT_AS = ("present", "absent")
"""How a label listed in an image's `ignore` column (e.g. VOC "difficult") counts in the statistics: `present` (the
authors: their training targets map "difficult" to present) or `absent`."""


def label_cooccurrence(
    dataset: Dataset | DatasetDict, num_labels: int | None = None, ignored_count_as: str = "present"
) -> LabelCooccurrence:
    """
    The label statistics of a training split in the common schema (`labels`: class ids per image, optional
    `ignore`), as the authors' `nums` and `adj`.

    Args:
        dataset: The training split, or a `DatasetDict` (its `train` split is used).
        num_labels: Number of classes; by default the length of the `labels` feature's class names.
        ignored_count_as: How the labels of an image's `ignore` list count (see `IGNORED_LABELS_COUNT_AS`):
            `"present"` (default, the authors' training targets) or `"absent"`.
    """
    if ignored_count_as not in IGNORED_LABELS_COUNT_AS:
        raise ValueError(f"ignored_count_as must be one of {IGNORED_LABELS_COUNT_AS}, got {ignored_count_as!r}.")
    if isinstance(dataset, DatasetDict):
        if "train" not in dataset:
            raise ValueError(f"label_cooccurrence needs a 'train' split, got the splits {sorted(dataset)}.")
        dataset = dataset["train"]
    if num_labels is None:
        num_labels = len(dataset.features["labels"].feature.names)
    columns = [column for column in ("labels", "ignore") if column in dataset.column_names]
    rows = dataset.select_columns(columns).to_dict()
    ignore_lists = rows.get("ignore") or [[] for _ in rows["labels"]]
    targets = np.zeros((len(rows["labels"]), num_labels), dtype=np.float64)
    for row, (labels, ignored) in enumerate(zip(rows["labels"], ignore_lists)):
        present = (
            set(labels) | set(ignored or []) if ignored_count_as == "present" else set(labels) - set(ignored or [])
        )
        out_of_range = sorted(index for index in present if not 0 <= index < num_labels)
        if out_of_range:
            raise ValueError(f"label_cooccurrence: image {row} has class ids {out_of_range} outside [0, {num_labels}).")
        targets[row, sorted(present)] = 1.0
    pair_counts = targets.T @ targets
    np.fill_diagonal(pair_counts, 0.0)
    return LabelCooccurrence(counts=targets.sum(0), pair_counts=pair_counts)
