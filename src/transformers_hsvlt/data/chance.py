"""The mAP of random scores: the chance level a trained model's mAP should be compared with."""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from .features import IGNORE_COLUMN, LABELS_COLUMN, get_class_names, multi_hot


def expected_random_average_precision(num_positives: int, num_items: int) -> float:
    """Exact expected (non-interpolated) AP of a uniformly random ranking of ``num_items`` with ``num_positives``.

    With ``P`` positives among ``N`` items, ``E[AP] = (P - 1) / (N - 1) + H_N (N - P) / (N (N - 1))`` where
    ``H_N`` is the ``N``-th harmonic number (Bestgen, 2015). It tends to the positive rate ``P / N`` for large
    ``N`` but is higher for small ``N`` (``1 / N * H_N`` for a single positive).
    """
    if not 0 < num_positives <= num_items:
        raise ValueError(f"expected 0 < num_positives <= num_items, got {num_positives} and {num_items}")
    if num_items == 1:
        return 1.0
    harmonic = float(np.sum(1.0 / np.arange(1, num_items + 1)))
    n, p = num_items, num_positives
    return (p - 1) / (n - 1) + harmonic * (n - p) / (n * (n - 1))


def chance_level_map(dataset: Dataset) -> float:
    """Expected mAP of random scores on a split in the common schema, in percent like the multi-label metric.

    Follows the evaluation protocol: each class's ignored entries are removed first, and classes without
    any positive image (whose AP is undefined) are left out of the mean. Only the label columns are read.
    """
    ignore = dataset[IGNORE_COLUMN] if IGNORE_COLUMN in dataset.column_names else None
    targets = multi_hot(
        list(dataset[LABELS_COLUMN]), len(get_class_names(dataset)), None if ignore is None else list(ignore)
    )
    positives = (targets == 1).sum(axis=0)
    scored = (targets != -1).sum(axis=0)
    aps = [expected_random_average_precision(int(p), int(n)) for p, n in zip(positives, scored) if p > 0]
    if not aps:
        raise ValueError("chance_level_map: expected at least one class with a positive image, got none")
    return 100.0 * float(np.mean(aps))
