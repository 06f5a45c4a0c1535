"""NUS-WIDE (81 concepts) from the layout of the official release.

Assumed layout (the files of ``NUS-WIDE`` "Groundtruth" and "ImageList" downloads, plus the images)::

    root/
      Concepts81.txt                               one concept per line: the class names, in this order
      ImageList/TrainImagelist.txt                 one relative Windows path per line: actor\\0001_2124494179.jpg
      ImageList/TestImagelist.txt
      Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt   one 0/1 per line, aligned with TrainImagelist.txt
      Groundtruth/TrainTestLabels/Labels_<concept>_Test.txt    aligned with TestImagelist.txt
      Flickr/actor/0001_2124494179.jpg             the images (another directory can be given)

Images without any of the 81 concepts are kept, with empty labels. The images of the release are fetched
from Flickr and many copies in circulation miss some of them: build with ``check_files=True`` to find out.

The authors' own list-file format for NUS-WIDE (``path<TAB>label1,...`` + ``label.txt``) is read by
:func:`~transformers_hsvlt.data.listfile.load_list_files` instead.
"""

from __future__ import annotations

import os

import numpy as np
from datasets import DatasetDict

from .records import ClassIndex, ImageRecord, PathLike, read_class_names, records_to_dataset, resolve_path


#: Split name -> the word used in the release's file names.
NUSWIDE_SPLITS = {"train": "Train", "test": "Test"}


def load_nuswide(root: PathLike, *, image_dir: PathLike | None = None, check_files: bool = True) -> DatasetDict:
    """Load NUS-WIDE multi-label classification from the official release layout (see the module docstring).

    Args:
        root: the NUS-WIDE directory holding ``Concepts81.txt``, ``ImageList/`` and ``Groundtruth/``.
        image_dir: the directory the image-list paths are relative to; defaults to ``root/Flickr``.
        check_files: check that every listed image exists.

    Returns:
        Splits ``train`` and ``test`` with the concepts of ``Concepts81.txt`` as classes, in file order.
    """
    root = os.fspath(root)
    image_dir = os.fspath(image_dir) if image_dir is not None else os.path.join(root, "Flickr")
    classes = read_class_names(os.path.join(root, "Concepts81.txt"))
    splits = {}
    for name, tag in NUSWIDE_SPLITS.items():
        list_file = os.path.join(root, "ImageList", f"{tag}Imagelist.txt")
        image_paths, origins = _read_image_list(list_file, image_dir)
        targets = _read_concept_labels(root, tag, classes, expected_lines=len(image_paths), list_file=list_file)
        records = [
            ImageRecord(image=path, labels=np.flatnonzero(row).tolist(), origin=origin)
            for path, row, origin in zip(image_paths, targets, origins)
        ]
        splits[name] = records_to_dataset(records, classes.names, with_ignore=False, check_files=check_files)
    return DatasetDict(splits)


def _read_image_list(list_file: str, image_dir: str) -> tuple[list[str], list[str]]:
    """Read the image paths of a split (Windows separators converted) and their ``file:line`` origins."""
    paths, origins = [], []
    for line_number, line in enumerate(_read_aligned_lines(list_file, "NUS-WIDE image list"), start=1):
        if not line:
            raise ValueError(f"{list_file}:{line_number}: expected an image path, got an empty line")
        paths.append(resolve_path(line.replace("\\", "/"), image_dir))
        origins.append(f"{list_file}:{line_number}")
    return paths, origins


def _read_concept_labels(root: str, tag: str, classes: ClassIndex, expected_lines: int, list_file: str) -> np.ndarray:
    """Read the per-concept 0/1 files of a split into an ``(images, concepts)`` boolean matrix."""
    label_dir = os.path.join(root, "Groundtruth", "TrainTestLabels")
    columns = []
    for concept in classes.names:
        path = os.path.join(label_dir, f"Labels_{concept}_{tag}.txt")
        values = np.array(_read_aligned_lines(path, f"label file of concept {concept!r}"))
        if len(values) != expected_lines:
            raise ValueError(
                f"{path}: expected {expected_lines} lines (one per image of {list_file}), got {len(values)}"
            )
        invalid = np.flatnonzero((values != "0") & (values != "1"))
        if invalid.size:
            raise ValueError(f"{path}:{invalid[0] + 1}: expected 0 or 1, got {str(values[invalid[0]])!r}")
        columns.append(values == "1")
    return np.stack(columns, axis=1)


def _read_aligned_lines(path: str, what: str) -> list[str]:
    """Read the stripped lines of a file whose line numbers matter, trailing blank lines dropped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} does not exist")
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines
