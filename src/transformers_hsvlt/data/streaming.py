"""Streamed training data: a Hub dataset (or a local `save_to_disk` directory) read as a `datasets.IterableDataset`,
for label sets and image collections that do not fit on local disk. Rows are converted to the common schema as they
are read; nothing is downloaded or decoded up front."""

import os
from typing import Any

from datasets import Image as ImageFeature
from datasets import IterableDataset, IterableDatasetDict, load_dataset, load_from_disk

from .custom import element_feature, label_decoder, resolve_classes
from .features import IMAGE_COLUMN, LABELS_COLUMN, multilabel_features
from .records import ClassIndex


def load_hub_streaming(
    name: str,
    *,
    label_column: str = LABELS_COLUMN,
    image_column: str = IMAGE_COLUMN,
    class_names=None,
    label_format: str | None = None,
    label_separator: str = ",",
    **load_dataset_kwargs: Any,
) -> IterableDatasetDict:
    """Stream a dataset in the common schema (`image`, `labels`), its images undecoded (`{"bytes", "path"}`) until
    the training data loader decodes them. The class names come from `class_names` (names or
    a label file) or from the `ClassLabel` names of the label column: a stream cannot be read through to infer them.
    Labels are read as by `load_hub` (names, indices or multi-hot)."""
    splits = _stream_splits(name, load_dataset_kwargs)
    first = next(iter(splits.values()))
    if first.features is None or image_column not in first.features or label_column not in first.features:
        columns = None if first.features is None else list(first.features)
        raise ValueError(f"{name}: expected columns {image_column!r} and {label_column!r}, got {columns}")
    label_feature = first.features[label_column]
    decoder = label_decoder(label_feature, label_format, label_separator)
    classes = _stream_classes(name, class_names, label_feature)
    features = multilabel_features(classes.names)
    features[IMAGE_COLUMN] = ImageFeature(decode=False)  # decoded by the reader (`decode_images_naming_the_file`)

    def convert(row: dict, index: int) -> dict:
        labels = decoder.encode(row[label_column], classes, f"{name} row {index} column {label_column!r}")
        return {IMAGE_COLUMN: _named_by_row(row[image_column], f"{name} row {index}"), LABELS_COLUMN: labels}

    converted = {}
    for split, dataset in splits.items():
        dataset = dataset.cast_column(image_column, ImageFeature(decode=False))
        removed = [column for column in dataset.features if column not in (IMAGE_COLUMN,)]
        converted[split] = dataset.map(
            convert, with_indices=True, remove_columns=removed, features=features
        ).cast_column(IMAGE_COLUMN, ImageFeature())
    return IterableDatasetDict(converted)


def _named_by_row(image: dict, row: str) -> dict:
    """An undecoded image whose embedded bytes carry no file name gets its row as `path`, which errors name (the
    bytes are read, never the path, while there are bytes)."""
    if image is None or image.get("bytes") is None or image.get("path"):
        return image
    return {**image, "path": row}


def _stream_splits(name: str, load_dataset_kwargs: dict) -> dict[str, IterableDataset]:
    if os.path.isdir(name) and os.path.isfile(os.path.join(name, "dataset_dict.json")):
        return {split: dataset.to_iterable_dataset() for split, dataset in load_from_disk(name).items()}
    loaded = load_dataset(name, streaming=True, **load_dataset_kwargs)
    if isinstance(loaded, IterableDataset):
        return {str(load_dataset_kwargs.get("split") or "train"): loaded}
    return dict(loaded)


def _stream_classes(name: str, class_names, label_feature) -> ClassIndex:
    if class_names is not None:
        return resolve_classes(class_names, (), inferred_from=name)
    inner = element_feature(label_feature)
    if hasattr(inner, "names"):
        return ClassIndex(inner.names, source=f"the ClassLabel names of {name}")
    raise ValueError(
        f"{name}: streaming needs the class names: the label column is not a ClassLabel, so pass --label_file."
    )
