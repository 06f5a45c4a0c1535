"""MS-COCO 2014 (or any COCO ``instances`` json) built from the annotation files alone."""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Iterator, Mapping
from operator import itemgetter
from typing import Any

from datasets import DatasetDict

from .records import ClassIndex, ImageRecord, PathLike, records_to_dataset, resolve_path


try:  # optional accelerator: instances_train2014.json is ~330 MB
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

#: Default split -> (annotation file, image directory), relative to the COCO root.
COCO2014_SPLITS = {
    "train": (os.path.join("annotations", "instances_train2014.json"), "train2014"),
    "validation": (os.path.join("annotations", "instances_val2014.json"), "val2014"),
}


def load_coco2014(
    root: PathLike | None = None,
    *,
    splits: Mapping[str, tuple[PathLike, PathLike]] | None = None,
    check_files: bool = True,
) -> DatasetDict:
    """Load MS-COCO 2014 multi-label classification from its ``instances`` annotation files.

    Only the json files are read (with ``orjson`` when installed); images are stored as paths, so the
    123k images build in seconds.

    Args:
        root: the COCO directory holding ``annotations/instances_{train,val}2014.json``, ``train2014/`` and
            ``val2014/``. Relative paths in ``splits`` are taken relative to it (or to the working directory).
        splits: explicit ``{split: (annotation_json, image_dir)}``; defaults to :data:`COCO2014_SPLITS`
            (``train`` and ``validation``).
        check_files: check that every image file listed in the json exists.

    Returns:
        One split per entry of ``splits``. The classes are the json ``categories`` sorted by category id (the
        80 COCO classes in their usual order, although the ids are not contiguous); every split must declare
        the same categories. An image's labels are the categories of all its annotations, crowd annotations
        included; images without any annotation are kept, with empty labels (as is every image of a json
        without ``annotations``, such as ``image_info_test2014.json``).
    """
    if root is None and splits is None:
        raise ValueError("load_coco2014: expected a COCO root directory or explicit `splits`, got neither")
    base = os.fspath(root) if root is not None else os.getcwd()
    classes, split_datasets = None, {}
    for name, (annotation_file, image_dir) in (splits or COCO2014_SPLITS).items():
        annotation_file = resolve_path(os.fspath(annotation_file), base)
        with _garbage_collection_paused():  # millions of small objects: the collector would triple the time
            split_classes, records = _read_instances(annotation_file, resolve_path(os.fspath(image_dir), base))
        if classes is not None and split_classes.names != classes.names:
            raise ValueError(
                f"{annotation_file}: expected the categories of {classes.source} "
                f"({len(classes)} classes), got different ones ({len(split_classes)} classes)"
            )
        if classes is None:
            classes = split_classes
        split_datasets[name] = records_to_dataset(records, classes.names, with_ignore=False, check_files=check_files)
    return DatasetDict(split_datasets)


def _read_instances(annotation_file: str, image_dir: str) -> tuple[ClassIndex, list[ImageRecord]]:
    """Parse one ``instances`` json into its class names and one record per listed image."""
    data = _load_json(annotation_file)
    categories = sorted(_rows(data, "categories", ("id", "name"), annotation_file))
    classes = ClassIndex((name for _, name in categories), source=annotation_file)
    category_index = {category_id: position for position, (category_id, _) in enumerate(categories)}
    if len(category_index) != len(categories):
        raise ValueError(f"{annotation_file}: categories: expected unique ids, got {[i for i, _ in categories]}")
    images = _rows(data, "images", ("id", "file_name"), annotation_file)
    labels: dict[Any, set[int]] = {image_id: set() for image_id, _ in images}
    if len(labels) != len(images):
        raise ValueError(f"{annotation_file}: images: expected unique ids, got {len(images) - len(labels)} repeated")
    annotations = (
        _rows(data, "annotations", ("image_id", "category_id"), annotation_file) if "annotations" in data else []
    )
    try:
        for image_id, category_id in annotations:
            labels[image_id].add(category_index[category_id])
    except KeyError:
        _raise_unknown_reference(annotations, labels, category_index, annotation_file)
    prefix = os.path.join(image_dir, "")
    return classes, [
        ImageRecord(
            image=prefix + file_name,
            labels=sorted(labels[image_id]),
            origin=f"{annotation_file}, image id {image_id}",
        )
        for image_id, file_name in images
    ]


def _raise_unknown_reference(annotations: list[tuple], images: Mapping, categories: Mapping, where: str) -> None:
    """Raise the error naming the first annotation whose image or category id is unknown."""
    for position, (image_id, category_id) in enumerate(annotations):
        if image_id not in images:
            raise ValueError(
                f"{where}: annotations[{position}]: expected image_id among the ids of `images`, got {image_id!r}"
            )
        if category_id not in categories:
            raise ValueError(
                f"{where}: annotations[{position}]: expected category_id among the category ids "
                f"{sorted(categories)}, got {category_id!r}"
            )


@contextlib.contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_json(path: str) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: COCO annotation file does not exist")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        return orjson.loads(raw) if orjson is not None else json.loads(raw)
    except ValueError as error:  # json.JSONDecodeError and orjson.JSONDecodeError are both ValueErrors
        raise ValueError(f"{path}: malformed JSON ({error})") from None


def _field(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{where}: expected an object with a {key!r} field, got {_short(obj)}")
    return obj[key]


def _rows(data: Any, key: str, fields: tuple[str, str], where: str) -> list[tuple]:
    """The ``fields`` of every object of the list ``data[key]``; a malformed entry raises an error naming it."""
    items = _field(data, key, where)
    if not isinstance(items, list):
        raise TypeError(f"{where}: expected `{key}` to be a list, got {type(items).__name__}")
    getter = itemgetter(*fields)
    try:
        return [getter(item) for item in items]
    except (KeyError, TypeError):
        for position, item in enumerate(items):
            for field in fields:
                _field(item, field, f"{where}: {key}[{position}]")
        raise


def _short(obj: Any, limit: int = 80) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."
