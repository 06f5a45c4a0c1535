"""A user's own multi-label data: CSV / JSONL files, image folders with metadata, and datasets on the Hub.

:func:`load_custom` reads local files:

- a ``.csv`` file with a header: one row per image, an image-path column and a label column holding the
  label names joined by ``label_separator`` (quote the field when the separator is the CSV delimiter:
  ``a.jpg,"cat,dog"``);
- a ``.jsonl`` file: one object per line, e.g. ``{"file_name": "a.jpg", "labels": ["cat", "dog"]}`` (a
  separator-joined string is accepted too);
- an image folder following the ``imagefolder`` conventions of :mod:`datasets`: a ``metadata.csv`` or
  ``metadata.jsonl`` with a ``file_name`` column, at the folder's top (one split, ``train``) or in one
  sub-folder per split (``train/metadata.jsonl``, ``test/metadata.jsonl``, ...).

:func:`load_hub` wraps :func:`datasets.load_dataset` (or :func:`datasets.load_from_disk` for a directory
written by ``save_to_disk``) and converts a label column of names, class indices or multi-hot vectors.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Image, Value, load_dataset, load_from_disk

from .features import IGNORE_COLUMN, IMAGE_COLUMN, LABELS_COLUMN, multilabel_features
from .records import ClassIndex, ImageRecord, PathLike, read_class_names, records_to_dataset, resolve_path


#: Image-path columns looked for, in this order, when ``image_column`` is not given.
DEFAULT_IMAGE_COLUMNS = ("image", "file_name")
#: Metadata file names of an image folder, as in ``datasets``' imagefolder.
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
#: Label encodings understood by :func:`load_hub`.
LABEL_FORMATS = ("names", "indices", "multi_hot")

ClassNames = Sequence[str] | PathLike | None


@dataclass
class _Row:
    """A parsed row of a custom file, before its label names are encoded."""

    image: str
    labels: list[str]
    ignore: list[str]
    origin: str


def load_custom(
    data: PathLike | Mapping[str, PathLike],
    *,
    image_column: str | None = None,
    label_column: str = LABELS_COLUMN,
    ignore_column: str | None = None,
    label_separator: str = ",",
    class_names: ClassNames = None,
    image_root: PathLike | None = None,
    check_files: bool = True,
) -> DatasetDict:
    """Load a user's multi-label data from CSV / JSONL files or an image folder with metadata.

    Args:
        data: a ``.csv`` or ``.jsonl`` file (one split, ``train``), ``{split: file}``, or an image folder
            (see the module docstring).
        image_column: the column holding image paths; defaults to the first of ``image`` and ``file_name``.
        label_column: the column holding the label names (a list, or a ``label_separator``-joined string).
        ignore_column: an optional column, in the same format, of labels to leave out of scoring.
        label_separator: the separator of label names given as one string.
        class_names: the class names in index order, or a label file (one name per line); defaults to the
            sorted names found in the data.
        image_root: the directory image paths are relative to; defaults to each file's directory (for an
            image folder, the metadata file's directory, as in imagefolder).
        check_files: check that every image exists.

    Returns:
        One split per file, in the common schema (with ``ignore`` when ``ignore_column`` is given). Labels
        repeated in one row count once; empty label fields give images without labels.
    """
    rows = {
        split: list(_read_rows(os.fspath(path), image_column, label_column, ignore_column, label_separator, image_root))
        for split, path in _find_data_files(data).items()
    }
    observed = (name for split_rows in rows.values() for row in split_rows for name in row.labels + row.ignore)
    classes = resolve_classes(class_names, observed, inferred_from="the label columns")
    with_ignore = ignore_column is not None
    return DatasetDict(
        {
            split: records_to_dataset(
                [_encode_row(row, classes) for row in split_rows],
                classes.names,
                with_ignore=with_ignore,
                check_files=check_files,
            )
            for split, split_rows in rows.items()
        }
    )


def load_hub(
    name: str,
    *,
    label_column: str = LABELS_COLUMN,
    image_column: str = IMAGE_COLUMN,
    ignore_column: str | None = None,
    class_names: ClassNames = None,
    label_format: str | None = None,
    label_separator: str = ",",
    **load_dataset_kwargs: Any,
) -> DatasetDict:
    """Load a dataset with :func:`datasets.load_dataset` and convert it to the common schema.

    Args:
        name: a Hub dataset id, a local dataset directory or script accepted by ``load_dataset``, or a
            directory written by ``save_to_disk`` (read with ``load_from_disk``).
        label_column: the column holding the labels, in one of the :data:`LABEL_FORMATS`:
            ``names`` (a list of strings, a ``label_separator``-joined string, or ``ClassLabel`` values),
            ``indices`` (a list of class indices) or ``multi_hot`` (one 0/1 value per class).
        image_column: the column holding the images (an ``Image`` feature or path strings).
        ignore_column: an optional column, in the same format, of labels to leave out of scoring.
        class_names: the class names in index order, or a label file; defaults to the ``ClassLabel`` names
            of the label column, else to the sorted names found (required for indices and multi-hot).
        label_format: one of :data:`LABEL_FORMATS`; detected from the column's feature type by default
            (strings and ``ClassLabel`` -> names, integers -> indices, floats and booleans -> multi-hot).
        **load_dataset_kwargs: passed to ``load_dataset`` (``split``, ``revision``, ``data_dir``, ...).

    Returns:
        The splits in the common schema; other columns are dropped. Images stay undecoded.
    """
    splits = _load_splits(name, load_dataset_kwargs)
    columns = [label_column] + ([ignore_column] if ignore_column else [])
    first = next(iter(splits.values()))
    for column in [image_column, *columns]:
        if column not in first.column_names:
            raise ValueError(f"{name}: expected a column {column!r}, got columns {first.column_names}")
    decoders = {column: label_decoder(first.features[column], label_format, label_separator) for column in columns}
    values = {(split, column): list(dataset[column]) for split, dataset in splits.items() for column in columns}
    classes = _hub_classes(name, class_names, first.features[label_column], decoders, values)
    features = multilabel_features(classes.names, with_ignore=ignore_column is not None)
    converted = {}
    for split, dataset in splits.items():
        table = dataset.select_columns([image_column]).rename_columns({image_column: IMAGE_COLUMN})
        table = table.cast_column(IMAGE_COLUMN, Image())
        for target, column in zip((LABELS_COLUMN, IGNORE_COLUMN), columns):
            index_lists = [
                decoders[column].encode(value, classes, f"{name} [{split}] row {row} column {column!r}")
                for row, value in enumerate(values[split, column])
            ]
            table = table.add_column(target, index_lists, feature=features[target])
        converted[split] = table
    return DatasetDict(converted)


# ---- load_custom helpers -------------------------------------------------------------------------------------


def _find_data_files(data: PathLike | Mapping[str, PathLike]) -> dict[str, PathLike]:
    """Map split names to the files of ``data`` (see :func:`load_custom`)."""
    if isinstance(data, Mapping):
        return dict(data)
    data = os.fspath(data)
    if os.path.isfile(data):
        return {"train": data}
    if not os.path.isdir(data):
        raise FileNotFoundError(f"{data}: expected a .csv/.jsonl file or an image folder, got no such path")
    top = _metadata_file(data)
    if top is not None:
        return {"train": top}
    splits = {entry.name: _metadata_file(entry.path) for entry in sorted(os.scandir(data), key=lambda e: e.name)}
    splits = {split: path for split, path in splits.items() if path is not None}
    if not splits:
        raise FileNotFoundError(
            f"{data}: expected {' or '.join(METADATA_FILES)} in the folder or in its split sub-folders, found none"
        )
    return splits


def _metadata_file(directory: str) -> str | None:
    found = [os.path.join(directory, name) for name in METADATA_FILES if os.path.isfile(os.path.join(directory, name))]
    if len(found) > 1:
        raise ValueError(f"{directory}: expected one metadata file, got {len(found)}: {found}")
    return found[0] if found else None


def _read_rows(
    path: str,
    image_column: str | None,
    label_column: str,
    ignore_column: str | None,
    separator: str,
    image_root: PathLike | None,
) -> Iterator[_Row]:
    """Parse the rows of a CSV or JSONL file into image paths and label names."""
    root = os.fspath(image_root) if image_root is not None else os.path.dirname(os.path.abspath(path))
    for origin, record in _read_records(path):
        column = image_column or next((c for c in DEFAULT_IMAGE_COLUMNS if c in record), DEFAULT_IMAGE_COLUMNS[0])
        image = _required(record, column, origin)
        if not isinstance(image, str) or not image.strip():
            raise ValueError(f"{origin}: column {column!r}: expected an image path, got {image!r}")
        yield _Row(
            image=resolve_path(image.strip(), root),
            labels=_column_label_names(record, label_column, separator, origin),
            ignore=_column_label_names(record, ignore_column, separator, origin) if ignore_column else [],
            origin=origin,
        )


def _read_records(path: str) -> Iterator[tuple[str, dict]]:
    """Yield ``(file:line, row)`` for the rows of a ``.csv`` (with header) or ``.jsonl`` file."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".csv", ".jsonl"):
        raise ValueError(f"{path}: expected a .csv or .jsonl file, got a {extension or 'extension-less'} file")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        if extension == ".csv":
            reader = csv.DictReader(handle)
            for row in reader:
                origin = f"{path}:{reader.line_num}"
                if None in row:
                    raise ValueError(
                        f"{origin}: expected {len(reader.fieldnames)} fields ({reader.fieldnames}), got more; "
                        "quote label fields that contain the CSV delimiter or pick another label_separator"
                    )
                if None in row.values():
                    missing = [name for name, value in row.items() if value is None]
                    raise ValueError(f"{origin}: expected {len(reader.fieldnames)} fields, got no value for {missing}")
                yield origin, row
        else:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    yield f"{path}:{line_number}", _json_object(line, f"{path}:{line_number}")


def _json_object(line: str, origin: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{origin}: malformed JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{origin}: expected a JSON object, got {type(record).__name__}")
    return record


def _required(record: dict, column: str, origin: str) -> Any:
    if column not in record:
        raise ValueError(f"{origin}: expected a column {column!r}, got columns {sorted(record)}")
    return record[column]


def _column_label_names(record: dict, column: str, separator: str, origin: str) -> list[str]:
    return _label_names(_required(record, column, origin), separator, f"{origin}, column {column!r}")


def _label_names(value: Any, separator: str, origin: str) -> list[str]:
    """Normalise a label field (``None``, a separator-joined string or a list of strings) to label names."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(separator)
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"{origin}: expected label names (a list of strings or a string), got {value!r}")
    return [name.strip() for name in value if name.strip()]


def _encode_row(row: _Row, classes: ClassIndex) -> ImageRecord:
    return ImageRecord(
        image=row.image,
        labels=classes.encode(row.labels, row.origin),
        ignore=classes.encode(row.ignore, row.origin),
        origin=row.origin,
    )


def resolve_classes(class_names: ClassNames, observed: Iterable[str], inferred_from: str) -> ClassIndex:
    """The given class names (a list or a label file), else the sorted observed names."""
    if class_names is None:
        return ClassIndex(sorted(set(observed)), source=f"the sorted labels found in {inferred_from}")
    if isinstance(class_names, (str, os.PathLike)):
        return read_class_names(class_names)
    return ClassIndex(class_names, source="class_names")


# ---- load_hub helpers ----------------------------------------------------------------------------------------


def _load_splits(name: str, load_dataset_kwargs: dict) -> dict[str, Dataset]:
    saved = os.path.isdir(name) and any(
        os.path.isfile(os.path.join(name, marker)) for marker in ("dataset_dict.json", "state.json")
    )
    if saved and load_dataset_kwargs:
        raise ValueError(f"{name}: a save_to_disk directory takes no load_dataset arguments, got {load_dataset_kwargs}")
    loaded = load_from_disk(name) if saved else load_dataset(name, **load_dataset_kwargs)
    if isinstance(loaded, Dataset):
        return {str(load_dataset_kwargs.get("split") or "train"): loaded}
    if not isinstance(loaded, DatasetDict):
        raise TypeError(
            f"{name}: expected a Dataset or DatasetDict (streaming is not supported), got {type(loaded).__name__}"
        )
    return dict(loaded)


@dataclass(frozen=True)
class _LabelDecoder:
    """How the values of one label column turn into class indices."""

    label_format: str
    separator: str = ","
    class_label: ClassLabel | None = None  # set when the column stores ClassLabel values

    def names(self, value: Any, origin: str) -> list[str]:
        """The label names of a value of a ``names`` column."""
        if self.class_label is None:
            return _label_names(value, self.separator, origin)
        if value is None:
            return []
        names = self.class_label.int2str(value)
        return [names] if isinstance(names, str) else list(names)

    def encode(self, value: Any, classes: ClassIndex, origin: str) -> list[int]:
        """The sorted, unique class indices of a value of the column."""
        if self.label_format == "names":
            return classes.encode(self.names(value, origin), origin)
        values = [] if value is None else list(value)
        if self.label_format == "indices":
            if not all(isinstance(v, (int, np.integer)) and 0 <= v < len(classes) for v in values):
                raise ValueError(f"{origin}: expected class indices in [0, {len(classes)}), got {values}")
            return sorted({int(v) for v in values})
        if len(values) != len(classes) or not all(v in (0, 1) for v in values):
            raise ValueError(f"{origin}: expected a multi-hot vector of {len(classes)} 0/1 values, got {values}")
        return [index for index, v in enumerate(values) if v == 1]


def label_decoder(feature: Any, label_format: str | None, separator: str) -> _LabelDecoder:
    """Build the decoder of a label column from its feature type (or the explicit ``label_format``)."""
    inner = element_feature(feature)
    dtype = inner.dtype if isinstance(inner, Value) else ""
    if isinstance(inner, ClassLabel) or dtype in ("string", "large_string"):
        detected = "names"
    elif dtype.startswith(("int", "uint")):
        detected = "indices"
    elif dtype.startswith(("float", "bool")):
        detected = "multi_hot"
    else:
        detected = None
    label_format = label_format or detected
    if label_format not in LABEL_FORMATS:
        raise ValueError(
            f"label column of type {feature}: expected label_format among {LABEL_FORMATS}, got {label_format!r}"
        )
    class_label = inner if isinstance(inner, ClassLabel) and label_format == "names" else None
    return _LabelDecoder(label_format, separator, class_label)


def element_feature(feature: Any) -> Any:
    """The feature of the elements of a list feature (``List``, ``LargeList``, ``Sequence``), else ``feature``."""
    return getattr(feature, "feature", feature)


def _hub_classes(
    name: str,
    class_names: ClassNames,
    label_feature: Any,
    decoders: dict[str, _LabelDecoder],
    values: dict[tuple[str, str], list],
) -> ClassIndex:
    """The class names of a converted hub dataset: given, else the label ``ClassLabel`` names, else inferred."""
    if class_names is not None:
        return resolve_classes(class_names, (), inferred_from=name)
    if isinstance(element_feature(label_feature), ClassLabel):
        return ClassIndex(element_feature(label_feature).names, source=f"the ClassLabel names of {name}")
    if any(decoder.label_format != "names" for decoder in decoders.values()):
        raise ValueError(f"{name}: the label columns hold class indices or multi-hot vectors; pass class_names")
    observed = (
        label
        for (split, column), column_values in values.items()
        for row, value in enumerate(column_values)
        for label in decoders[column].names(value, f"{name} [{split}] row {row} column {column!r}")
    )
    return resolve_classes(None, observed, inferred_from=name)
