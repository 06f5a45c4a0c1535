"""The authors' list-file format (used for their VOC, COCO and NUS-WIDE experiments).

- a label file: one class name per line, in class-index order (``label.txt``);
- one list file per split: one image per line, ``path<TAB>label1,label2,...`` (an empty label part is an image
  without labels; a label repeated on a line counts once);
- optionally one ``ignore.npy`` per split: an ``(N, K)`` 0/1 array, row ``i`` for the ``i``-th non-blank line,
  1 = leave this class out of scoring for this image (VOC "difficult").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from datasets import DatasetDict

from .label_files import iter_lines
from .records import ClassIndex, ImageRecord, PathLike, read_class_names, records_to_dataset, resolve_path


def load_list_files(
    label_file: PathLike,
    splits: Mapping[str, PathLike],
    image_root: PathLike | None = None,
    ignore_files: Mapping[str, PathLike] | None = None,
    *,
    check_files: bool = True,
) -> DatasetDict:
    """Load a dataset described by the authors' list files (see the module docstring).

    Args:
        label_file: the class names, one per line.
        splits: ``{split: list_file}``, e.g. ``{"train": "train.txt", "test": "test.txt"}``.
        image_root: the directory image paths are relative to; defaults to each list file's directory.
            Absolute paths are kept.
        ignore_files: ``{split: ignore.npy}`` for the splits that have one. When given, every split gets an
            ``ignore`` column (empty for splits without a file).
        check_files: check that every listed image exists.
    """
    classes = read_class_names(label_file)
    ignore_files = dict(ignore_files or {})
    unknown = sorted(set(ignore_files) - set(splits))
    if unknown:
        raise ValueError(f"ignore_files: expected splits among {sorted(splits)}, got {unknown}")
    split_datasets = {}
    for name, list_file in splits.items():
        list_file = os.fspath(list_file)
        root = os.fspath(image_root) if image_root is not None else os.path.dirname(os.path.abspath(list_file))
        records = _read_list_file(list_file, root, classes)
        if name in ignore_files:
            records = _with_ignore(records, os.fspath(ignore_files[name]), len(classes), list_file)
        split_datasets[name] = records_to_dataset(
            records, classes.names, with_ignore=bool(ignore_files), check_files=check_files
        )
    return DatasetDict(split_datasets)


def _read_list_file(list_file: str, image_root: str, classes: ClassIndex) -> list[ImageRecord]:
    records, first_seen = [], {}
    for line_number, line in iter_lines(list_file):
        origin = f"{list_file}:{line_number}"
        path, tab, label_part = line.partition("\t")
        if not tab or not path.strip():
            raise ValueError(f"{origin}: expected 'path<TAB>label1,label2,...', got {line!r}")
        if path.strip() in first_seen:
            raise ValueError(
                f"{list_file}: image {path.strip()!r} is listed twice, on lines {first_seen[path.strip()]} and {line_number}"
            )
        first_seen[path.strip()] = line_number
        names = [name.strip() for name in label_part.split(",") if name.strip()]
        records.append(
            ImageRecord(
                image=resolve_path(path.strip(), image_root), labels=classes.encode(names, origin), origin=origin
            )
        )
    return records


def _with_ignore(records: list[ImageRecord], ignore_file: str, num_classes: int, list_file: str) -> list[ImageRecord]:
    """Return the records with the ignore lists of an ``(N, K)`` 0/1 ``.npy`` mask."""
    mask = np.load(ignore_file, allow_pickle=False)
    expected = (len(records), num_classes)
    if mask.shape != expected:
        raise ValueError(
            f"{ignore_file}: expected shape {expected} ({list_file} lines, classes), got {tuple(mask.shape)}"
        )
    invalid = np.argwhere((mask != 0) & (mask != 1))
    if invalid.size:
        row, column = invalid[0]
        raise ValueError(f"{ignore_file}: entry [{row}, {column}]: expected 0 or 1, got {mask[row, column]!r}")
    return [replace(record, ignore=np.flatnonzero(row).tolist()) for record, row in zip(records, mask)]
