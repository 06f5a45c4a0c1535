"""The assembly step shared by the on-disk builders: parsed records -> a split in the common schema.

A builder parses its source files into :class:`ImageRecord` objects (image path, label indices, ignore
indices and the place in the source they come from), then :func:`records_to_dataset` checks that the images
exist and packs the records into a :class:`datasets.Dataset` with the features of
:func:`~transformers_hsvlt.data.features.multilabel_features`. Images are stored as paths and decoded lazily:
nothing opens an image file while building.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
from datasets import Dataset, DatasetInfo

from .features import IGNORE_COLUMN, IMAGE_COLUMN, LABELS_COLUMN, multilabel_features
from .label_files import read_label_names


PathLike = str | os.PathLike

#: How many missing images an error message lists before summarising.
_MAX_REPORTED = 5


@dataclass(frozen=True)
class ImageRecord:
    """One image of a split: its absolute path, label indices, source location (``file:line``) and ignored indices."""

    image: str
    labels: list[int]
    origin: str
    ignore: list[int] = field(default_factory=list)


class ClassIndex:
    """An ordered set of class names that maps label names to sorted, unique class indices.

    Args:
        names: the class names in index order; they must be non-empty and unique.
        source: where the names come from (a file path or a description), quoted in error messages.
    """

    def __init__(self, names: Iterable[str], source: str):
        self.names = tuple(names)
        self.source = source
        if not self.names:
            raise ValueError(f"{source}: expected at least one class name, got none")
        self._index: dict[str, int] = {}
        for position, name in enumerate(self.names):
            if not isinstance(name, str) or not name:
                raise ValueError(f"{source}: class {position}: expected a non-empty string, got {name!r}")
            if name in self._index:
                raise ValueError(
                    f"{source}: class name {name!r} appears twice (classes {self._index[name]} and {position})"
                )
            self._index[name] = position

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, names: Iterable[str], origin: str) -> list[int]:
        """Map label names to their sorted, unique indices; a label repeated on one line counts once.

        Raises:
            ValueError: naming ``origin`` when a label is not one of the classes.
        """
        indices = set()
        for name in names:
            if name not in self._index:
                raise ValueError(
                    f"{origin}: unknown label {name!r}; expected one of the {len(self.names)} classes "
                    f"of {self.source} ({_preview(self.names)})"
                )
            indices.add(self._index[name])
        return sorted(indices)


def read_class_names(path: PathLike) -> ClassIndex:
    """Read a label file (see :func:`~transformers_hsvlt.data.label_files.read_label_names`) into a :class:`ClassIndex`."""
    return ClassIndex(read_label_names(path), source=os.fspath(path))


def resolve_path(path: str, root: PathLike) -> str:
    """Return ``path`` made absolute: relative paths are taken relative to ``root``."""
    return os.path.abspath(os.path.join(root, os.path.expanduser(path)))


def records_to_dataset(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    *,
    with_ignore: bool,
    check_files: bool = True,
) -> Dataset:
    """Pack records into a split with the common features.

    Args:
        records: the images of the split.
        class_names: the class names the record indices refer to.
        with_ignore: whether the split has an ``ignore`` column.
        check_files: check that every image path exists (one ``os.path.exists`` per image, no decoding).

    Raises:
        FileNotFoundError: listing the missing images and where each one is referenced.
    """
    if check_files:
        check_images_exist(records)
    features = multilabel_features(class_names, with_ignore=with_ignore)
    columns = {
        IMAGE_COLUMN: [{"bytes": None, "path": record.image} for record in records],
        LABELS_COLUMN: [record.labels for record in records],
    }
    if with_ignore:
        columns[IGNORE_COLUMN] = [record.ignore for record in records]
    # Already in storage form: build the Arrow table directly (Dataset.from_dict would re-encode every value in Python).
    return Dataset(pa.table(columns, schema=features.arrow_schema), info=DatasetInfo(features=features))


def check_images_exist(records: Sequence[ImageRecord]) -> None:
    """Raise a :class:`FileNotFoundError` naming the images of ``records`` that do not exist."""
    missing = [record for record in records if not os.path.exists(record.image)]
    if missing:
        listed = "; ".join(f"{record.image} (from {record.origin})" for record in missing[:_MAX_REPORTED])
        more = f" and {len(missing) - _MAX_REPORTED} more" if len(missing) > _MAX_REPORTED else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(records)} images do not exist: {listed}{more}. "
            "Fix the image root or pass check_files=False to build from the annotations alone."
        )


def _preview(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (", ..." if len(names) > limit else "")
