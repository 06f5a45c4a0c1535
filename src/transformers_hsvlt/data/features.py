"""The common schema of every HSVLT multi-label dataset, and its dense (multi-hot) encoding.

Every builder of this package returns a :class:`datasets.DatasetDict` whose splits declare:

- ``image``: :class:`datasets.Image` -- a file path (or in-memory bytes) decoded lazily on access;
- ``labels``: ``Sequence(ClassLabel(names=class_names))`` -- the sorted, unique indices of the classes
  present in the image;
- ``ignore`` (only where the source has one): ``Sequence(ClassLabel(names=class_names))`` -- the classes to
  leave out of training and scoring for that image (e.g. VOC "difficult" objects).

The class names are read back with :func:`get_class_names`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from datasets import Sequence as SequenceFeature


IMAGE_COLUMN = "image"
LABELS_COLUMN = "labels"
IGNORE_COLUMN = "ignore"

#: Target value of an ignored (image, class) entry in the dense encoding returned by :func:`multi_hot`.
IGNORE_INDEX = -1.0


def multilabel_features(
    class_names: Sequence[str],
    *,
    with_ignore: bool = False,
    extra: Mapping[str, object] | None = None,
) -> Features:
    """Declare the common features of a multi-label split.

    Args:
        class_names: the class names, in index order.
        with_ignore: add the ``ignore`` column (labels to leave out of scoring for each image).
        extra: additional features appended after the common ones (e.g. construction metadata).
    """
    label_list = SequenceFeature(ClassLabel(names=list(class_names)))
    features = {IMAGE_COLUMN: Image(), LABELS_COLUMN: label_list}
    if with_ignore:
        features[IGNORE_COLUMN] = label_list
    features.update(extra or {})
    return Features(features)


def get_class_names(dataset: Dataset | DatasetDict) -> list[str]:
    """Return the class names of a dataset (or of the first split of a dataset dict) in the common schema."""
    if isinstance(dataset, DatasetDict):
        dataset = next(iter(dataset.values()))
    return list(dataset.features[LABELS_COLUMN].feature.names)


def multi_hot(
    labels: Sequence[Sequence[int]],
    num_labels: int,
    ignore: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Encode per-image label index lists as an ``(N, num_labels)`` float32 target matrix.

    Entries are 1 for a present class, 0 for an absent one and :data:`IGNORE_INDEX` (-1) for an ignored one.
    An entry both present and ignored is ignored: ``ignore`` wins, so that class is left out of the loss and of
    that class's AP for this image, exactly as the authors' ``ignore.npy`` mask does.
    """
    targets = np.zeros((len(labels), num_labels), dtype=np.float32)
    _fill(targets, labels, 1.0, "labels")
    if ignore is not None:
        if len(ignore) != len(labels):
            raise ValueError(f"ignore: expected one list per image ({len(labels)}), got {len(ignore)}")
        _fill(targets, ignore, IGNORE_INDEX, "ignore")
    return targets


def _fill(targets: np.ndarray, index_lists: Sequence[Sequence[int]], value: float, name: str) -> None:
    num_labels = targets.shape[1]
    for row, indices in enumerate(index_lists):
        indices = list(indices)
        out_of_range = [index for index in indices if not 0 <= index < num_labels]
        if out_of_range:
            raise ValueError(
                f"{name} of example {row}: expected class indices in [0, {num_labels}), got {out_of_range}"
            )
        targets[row, indices] = value
