"""The images of a collection: a folder walked recursively, a list file or a `datasets` dataset, opened as a
`Collection` that yields `(key, path, source)` in a fixed order, and `load_source`, which decodes one source."""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import PIL.Image

from ..data.label_files import iter_lines
from ..data.records import resolve_path
from ..images import load_dataset_image, load_image
from .arguments import CollectionArguments


#: File suffixes (lower case) a folder walk takes as images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Collection:
    """The images to tag, in a fixed order: `items()` yields `(key, path, source)` by increasing key, where `key` is
    the path (files) or the row index (datasets), `source` what `load_source` decodes."""

    key_column: str
    items: Callable[[], Iterator[tuple]]
    size: int | None


def open_collection(args: CollectionArguments) -> Collection:
    """The collection named by `--input` (see `CollectionArguments.input_type`)."""
    input_type = args.input_type
    if input_type == "auto":
        if _is_saved_dataset(args.input):
            input_type = "dataset"
        elif os.path.isdir(args.input):
            input_type = "folder"
        elif os.path.isfile(args.input):
            input_type = "list"
        else:
            input_type = "dataset"
    if input_type == "folder":
        return _paths_collection(_walk_images(args.input))
    if input_type == "list":
        return _paths_collection(_read_image_list(args.input))
    return _dataset_collection(args)


def _paths_collection(paths: list[str]) -> Collection:
    paths = sorted(paths)
    return Collection("path", lambda: ((path, path, path) for path in paths), len(paths))


def _walk_images(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        raise ValueError(f"--input {directory}: no such folder.")
    paths = [
        os.path.abspath(os.path.join(root, name))
        for root, _, names in os.walk(directory)
        for name in names
        if name.lower().endswith(IMAGE_SUFFIXES)
    ]
    if not paths:
        raise ValueError(f"--input {directory}: no image file ({', '.join(IMAGE_SUFFIXES)}) in this folder.")
    return paths


def _read_image_list(list_file: str) -> list[str]:
    """The image paths of a list file: one per non-blank line (a tab and what follows, e.g. labels, is ignored),
    relative paths relative to the file; a path listed twice is an error naming both lines."""
    if not os.path.isfile(list_file):
        raise ValueError(f"--input {list_file}: no such list file.")
    root = os.path.dirname(os.path.abspath(list_file))
    first_seen: dict[str, int] = {}
    for line_number, line in iter_lines(list_file):
        path = resolve_path(line.partition("\t")[0].strip(), root)
        if path in first_seen:
            raise ValueError(
                f"{list_file}: image {path!r} is listed twice, on lines {first_seen[path]} and {line_number}."
            )
        first_seen[path] = line_number
    if not first_seen:
        raise ValueError(f"--input {list_file}: the list file names no image.")
    return list(first_seen)


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json")
    )


def _dataset_collection(args: CollectionArguments) -> Collection:
    import datasets

    try:
        if _is_saved_dataset(args.input):
            loaded = datasets.load_from_disk(args.input)
            if args.streaming:
                loaded = (
                    loaded.to_iterable_dataset()
                    if isinstance(loaded, datasets.Dataset)
                    else datasets.IterableDatasetDict(
                        {name: split.to_iterable_dataset() for name, split in loaded.items()}
                    )
                )
        else:
            loaded = datasets.load_dataset(args.input, streaming=args.streaming)
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError, ConnectionError) as error:
        raise ValueError(f"--input {args.input}: not a folder, list file or loadable dataset ({error}).") from error
    dataset = _choose_split(loaded, args)
    if dataset.features is None or args.image_column not in dataset.features:
        columns = None if dataset.features is None else list(dataset.features)
        raise ValueError(
            f"--input {args.input}: no image column {args.image_column!r} (columns: {columns}); pass --image_column."
        )
    if isinstance(dataset.features[args.image_column], datasets.Image):
        dataset = dataset.cast_column(args.image_column, datasets.Image(decode=False))
    dataset = dataset.select_columns([args.image_column])
    size = len(dataset) if isinstance(dataset, datasets.Dataset) else _known_size(dataset, args.split)
    column = args.image_column

    def items() -> Iterator[tuple]:
        # `iter` reads every row in every DataLoader worker: iterating a streamed dataset in a worker would give the
        # worker only its share of the dataset's shards
        values = (value for batch in dataset.iter(batch_size=256) for value in batch[column])
        for index, value in enumerate(values):
            yield index, value.get("path") if isinstance(value, dict) else value, value

    return Collection("index", items, size)


def _choose_split(loaded, args: CollectionArguments):
    if not isinstance(loaded, dict):
        return loaded
    if args.split is None and len(loaded) == 1:
        return next(iter(loaded.values()))
    if args.split not in loaded:
        raise ValueError(f"--input {args.input}: pass --split, one of {sorted(loaded)} (got {args.split!r}).")
    return loaded[args.split]


def _known_size(dataset, split: str | None) -> int | None:
    splits = dataset.info.splits if dataset.info is not None else None
    if not splits:
        return None
    info = splits.get(split) if split is not None else next(iter(splits.values())) if len(splits) == 1 else None
    return info.num_examples if info is not None else None


def load_source(source) -> PIL.Image.Image:
    """An image from a path or the undecoded value of a `datasets.Image` column (`{"bytes", "path"}`)."""
    return load_dataset_image(source) if isinstance(source, dict) else load_image(source)
