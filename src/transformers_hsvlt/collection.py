"""Tagging an image collection: `hsvlt-predict MODEL --input DIR_OR_LIST_OR_DATASET --output tags.jsonl`.

- **Input**: a folder walked recursively (files with an image suffix), a list file (one image path per line, read by
  the toolkit's one text reader; relative paths are relative to the list file), or a `datasets` dataset (a
  `save_to_disk` directory or a Hub id, `--streaming` included; images from `--image_column`).
- **Output**: one row per image, JSON Lines or Parquet by the suffix of `--output`: `path` (for dataset rows also
  `index`, the row number), `labels` (the labels above their threshold, most confident first), `scores` (their
  scores) and, with `--all_scores`, `all_scores` (every label's score). Rows are sorted by path (dataset rows by
  index), whatever the number of processes or restarts. Unreadable images go to `<output>.errors.jsonl` (path, error)
  and the run goes on; the exit code is then 1.
- **Restarts**: each process appends its rows, batch by batch and flushed, to a part file of its own under
  `<output>.parts/` (a new file per run: no file is ever rewritten). `--resume` reads what the parts (and a finished
  output) hold, skips those images, and tags the rest, unreadable ones again; a row cut short by a kill is ignored.
  When every process is done, process 0 merges the parts into the output (written to a temporary file, then renamed)
  and removes the parts.
- **Several processes**: under `accelerate launch` or `torchrun` (`WORLD_SIZE` > 1), the pending images are cut into
  batches of `--batch_size` and batch `g` goes to process `g % WORLD_SIZE` (GPU `LOCAL_RANK` when there are GPUs;
  gloo on CPU). Each image thus meets the same batch as in a single-process run: the merged output is identical.
- **Decoding** runs in `--num_workers` DataLoader workers; worker `w` of a process decodes that process's batches
  `w, w + num_workers, ...`, which the DataLoader hands out in order.
"""

import heapq
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from .data.label_files import iter_lines
from .data.records import resolve_path
from .image_processing_multilabel import calibrated_thresholds, decision_thresholds
from .images import ImageLoadError, load_dataset_image, load_image


#: File suffixes (lower case) a folder walk takes as images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: How long a process waits at a barrier for the others (one may finish its share well before the last one).
BARRIER_TIMEOUT = timedelta(hours=24)

OUTPUT_SUFFIXES = (".jsonl", ".parquet")
INPUT_TYPES = ("auto", "folder", "list", "dataset")


@dataclass
class CollectionArguments:
    """Tagging a whole collection into a file (see `transformers_hsvlt.collection`)."""

    input: str | None = field(
        default=None,
        metadata={
            "help": "Tag a collection: a folder (walked recursively), a list file (one image path per line) or a "
            "`datasets` dataset (a save_to_disk directory or Hub id). Needs --output."
        },
    )
    output: str | None = field(
        default=None, metadata={"help": "With --input: the rows file, JSON Lines (.jsonl) or Parquet (.parquet)."}
    )
    input_type: str = field(
        default="auto",
        metadata={
            "help": "What --input is (default: auto, meaning a saved dataset directory, else a folder, a file is a list file, "
            "a name that is not a local path a Hub dataset).",
            "choices": list(INPUT_TYPES),
        },
    )
    image_column: str = field(default="image", metadata={"help": "The image column of a dataset --input."})
    split: str | None = field(
        default=None, metadata={"help": "The split of a dataset --input (default: its only split)."}
    )
    streaming: bool = field(default=False, metadata={"help": "Stream a dataset --input instead of downloading it."})
    all_scores: bool = field(default=False, metadata={"help": "Write every label's score in each row."})
    resume: bool = field(default=False, metadata={"help": "Continue an interrupted --output, skipping written rows."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace an existing --output (its errors file and parts too); write --heatmaps into a non-empty "
            "directory (figures of the same names are replaced)."
        },
    )
    num_workers: int = field(default=2, metadata={"help": "DataLoader processes decoding images (default 2)."})

    def __post_init__(self):
        if self.input is None:
            return
        if self.output is None:
            raise ValueError("--input needs --output FILE.jsonl or FILE.parquet.")
        if not self.output.endswith(OUTPUT_SUFFIXES):
            raise ValueError(f"--output must end with .jsonl or .parquet, got {self.output!r}.")
        if self.resume and self.overwrite_output_dir:
            raise ValueError("--resume and --overwrite_output_dir exclude each other: continue or replace the output.")
        if self.num_workers < 0:
            raise ValueError(f"--num_workers must be at least 0, got {self.num_workers}.")


# ---- decisions ------------------------------------------------------------------------------------------------------


def label_thresholds(config, threshold: float | str) -> np.ndarray:
    """The threshold of every label: `threshold` as `post_process_multi_label` takes it (`"auto"`: the checkpoint's
    calibrated `config.label_thresholds` when it has them, else 0.5; a number: that for every label)."""
    names = [config.id2label[index] for index in range(config.num_labels)]
    return decision_thresholds(threshold, names, calibrated_thresholds(config))


def labels_above_threshold(scores: np.ndarray, thresholds: np.ndarray, top_k: int | None = None) -> list[int]:
    """The label indices whose score reaches their threshold, most confident first (ties: lower index first), at
    most `top_k`."""
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= thresholds[order]]
    return order[:top_k].tolist()


# ---- the collection -------------------------------------------------------------------------------------------------


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


# ---- processes ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of the run (one, or those of `accelerate launch`/`torchrun`)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_environment(cls) -> "Processes":
        """Join the other processes when launched as several (`WORLD_SIZE` > 1): gloo on CPU, nccl on GPUs."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        processes = cls(
            int(os.environ["RANK"]),
            world_size,
            int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))),
        )
        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(processes.local_rank)
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=BARRIER_TIMEOUT)
        return processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str | None) -> str | None:
        """One GPU per process of a machine when there are GPUs and several processes; else the requested device."""
        if self.world_size > 1 and requested is None and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def all_agree(self, value: bool) -> bool:
        """Whether `value` holds in every process."""
        if self.world_size == 1:
            return value
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return all(gathered)

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


# ---- reading and writing rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFiles:
    """The files of one `--output`: the rows, the errors, and the directory of the processes' parts."""

    output: str

    @property
    def errors(self) -> str:
        return f"{self.output}.errors.jsonl"

    @property
    def parts(self) -> str:
        return f"{self.output}.parts"

    @property
    def record(self) -> str:
        return f"{self.output}.run.json"

    def existing(self) -> list[str]:
        return [path for path in (self.output, self.errors, self.parts, self.record) if os.path.exists(path)]

    def remove(self) -> None:
        for path in self.existing():
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

    def part_files(self, kind: str) -> list[str]:
        if not os.path.isdir(self.parts):
            return []
        return sorted(
            os.path.join(self.parts, name) for name in os.listdir(self.parts) if name.endswith(f".{kind}.jsonl")
        )

    def new_part(self, kind: str, rank: int) -> str:
        """A part file no other process or run uses (host, process id and time in its name)."""
        os.makedirs(self.parts, exist_ok=True)
        stamp = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        return os.path.join(self.parts, f"rank{rank:05d}-{stamp}.{kind}.jsonl")


def read_jsonl_rows(path: str) -> Iterator[dict]:
    """The complete rows of a JSON Lines file; a last line cut short (by a killed writer) is skipped."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            yield json.loads(line)


def read_output_rows(path: str) -> Iterator[dict]:
    """The rows of a finished output, JSON Lines or Parquet."""
    if path.endswith(".jsonl"):
        yield from read_jsonl_rows(path)
        return
    for batch in pq.ParquetFile(path).iter_batches():
        yield from batch.to_pylist()


def row_schema(key_column: str, names: list[str] | None) -> pa.Schema:
    """The columns of a Parquet output: `index` for dataset rows, `path`, `labels`, `scores`, and `all_scores` (one
    field per label, in label-id order) when `names` are given."""
    fields = [pa.field("index", pa.int64())] if key_column == "index" else []
    fields += [
        pa.field("path", pa.string()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("scores", pa.list_(pa.float64())),
    ]
    if names is not None:
        fields.append(pa.field("all_scores", pa.struct([pa.field(name, pa.float64()) for name in names])))
    return pa.schema(fields)


class RowWriter:
    """Writes rows to the output, JSON Lines or Parquet (`schema`, row groups of `rows_per_group`)."""

    def __init__(self, path: str, schema: pa.Schema, rows_per_group: int = 10_000):
        self.path = path
        self.schema = schema
        self.rows_per_group = rows_per_group
        self.pending: list[dict] = []
        self.parquet: pq.ParquetWriter | None = None
        self.handle = open(path, "w", encoding="utf-8") if path.endswith(".jsonl") else None

    def write(self, row: dict) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps(row) + "\n")
            return
        self.pending.append(row)
        if len(self.pending) >= self.rows_per_group:
            self._flush_parquet()

    def _flush_parquet(self) -> None:
        if not self.pending:
            return
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.path, self.schema)
        self.parquet.write_table(pa.Table.from_pylist(self.pending, schema=self.schema))
        self.pending = []

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            return
        self._flush_parquet()
        if self.parquet is not None:
            self.parquet.close()
        else:  # no row at all
            pq.write_table(self.schema.empty_table(), self.path)


def merge_outputs(files: OutputFiles, key_column: str, schema: pa.Schema, previous_output: bool) -> int:
    """Merge the parts (each sorted by key) and a previous finished output into `--output`, sorted by key, and the
    errors of images without a row into the errors file; remove the parts. Returns the number of errors."""
    sources = [read_jsonl_rows(path) for path in files.part_files("rows")]
    if previous_output:
        sources.append(read_output_rows(files.output))
    temporary = f"{files.output}.merging{os.path.splitext(files.output)[1]}"
    writer = RowWriter(temporary, schema)
    written, last = set(), None
    for row in heapq.merge(*sources, key=lambda row: row[key_column]):
        if row[key_column] != last:
            writer.write(row)
            written.add(row[key_column])
            last = row[key_column]
    writer.close()
    os.replace(temporary, files.output)
    errors = {}
    for path in files.part_files("errors"):
        for row in read_jsonl_rows(path):
            if row[key_column] not in written:
                errors[row[key_column]] = row
    if errors:
        temporary = f"{files.errors}.merging"
        with open(temporary, "w", encoding="utf-8") as handle:
            for key in sorted(errors):
                handle.write(json.dumps(errors[key]) + "\n")
        os.replace(temporary, files.errors)
    elif os.path.exists(files.errors):
        os.remove(files.errors)
    shutil.rmtree(files.parts, ignore_errors=True)
    return len(errors)


def written_keys(files: OutputFiles, key_column: str, previous_output: bool) -> set:
    """The keys of the rows already written: in the parts and, when resuming a finished run, in the output."""
    keys = {row[key_column] for path in files.part_files("rows") for row in read_jsonl_rows(path)}
    if previous_output:
        keys.update(row[key_column] for row in read_output_rows(files.output))
    return keys


# ---- decoding in workers --------------------------------------------------------------------------------------------


class PendingBatches(IterableDataset):
    """The batches of this process (global batch `g` of the pending images goes to process `g % world_size`), each
    decoded and preprocessed by one DataLoader worker (this process's batch `j` by worker `j % num_workers`), so that
    the DataLoader yields them in order."""

    def __init__(self, collection: Collection, done: set, batch_size: int, processes: Processes, processor):
        self.collection = collection
        self.done = done
        self.batch_size = batch_size
        self.processes = processes
        self.processor = processor

    def __iter__(self):
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for number, batch in enumerate(self._own_batches()):
            if number % num_workers == worker_id:
                yield self._decode(batch)

    def _own_batches(self) -> Iterator[list[tuple]]:
        pending = (item for item in self.collection.items() if item[0] not in self.done)
        rank, world_size = self.processes.rank, self.processes.world_size
        for number, batch in enumerate(_chunks(pending, self.batch_size)):
            if number % world_size == rank:
                yield batch

    def _decode(self, batch: list[tuple]) -> dict:
        decoded = {"keys": [], "paths": [], "pixel_values": [], "errors": []}
        for key, path, source in batch:
            try:
                image = load_source(source)
                pixel_values = self.processor(images=image, return_tensors="pt")["pixel_values"][0]
            except (ImageLoadError, ValueError, OSError) as error:
                decoded["errors"].append((key, path, " ".join(str(error).split())))
                continue
            decoded["keys"].append(key)
            decoded["paths"].append(path)
            decoded["pixel_values"].append(pixel_values)
        decoded["pixel_values"] = torch.stack(decoded["pixel_values"]) if decoded["pixel_values"] else None
        return decoded


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _own_count(pending: int, batch_size: int, processes: Processes) -> int:
    """How many of `pending` images fall in this process's batches."""
    batches = math.ceil(pending / batch_size)
    own = range(processes.rank, batches, processes.world_size)
    return sum(min(batch_size, pending - number * batch_size) for number in own)


# ---- the run --------------------------------------------------------------------------------------------------------


def run_record(args: CollectionArguments, config, threshold: float | str, top_k: int | None) -> dict:
    """What decides the rows of an output: the model and its labels, the decision rule and the collection."""
    return {
        "model": config.name_or_path,
        "labels": [config.id2label[index] for index in range(config.num_labels)],
        "label_thresholds": getattr(config, "label_thresholds", None),
        "threshold": threshold,
        "top_k": top_k,
        "all_scores": args.all_scores,
        "input": os.path.abspath(args.input) if os.path.exists(args.input) else args.input,
        "input_type": args.input_type,
        "image_column": args.image_column,
        "split": args.split,
    }


def check_output(args: CollectionArguments, processes: Processes, record: dict) -> OutputFiles:
    """Refuse an existing output without `--resume` or `--overwrite_output_dir`, and a resume of an output that
    another run wrote (its `<output>.run.json` names the differences), in every process, writing nothing."""
    files = OutputFiles(args.output)
    existing = files.existing()
    if not processes.all_agree(not existing or args.resume or args.overwrite_output_dir):
        raise ValueError(
            f"--output {args.output}: {existing[0] if existing else 'it'} exists; pass --resume to continue it or "
            "--overwrite_output_dir to replace it."
        )
    differences = _record_differences(files.record, record) if args.resume else []
    if not processes.all_agree(not differences):
        raise ValueError(
            f"--resume: {args.output} was written by another run: {'; '.join(differences)}. Resume with the same "
            "model and arguments, or write another --output."
        )
    return files


def start_output(files: OutputFiles, args: CollectionArguments, processes: Processes, record: dict) -> None:
    """Process 0 removes the old output with `--overwrite_output_dir` and records the run; the others wait."""
    if processes.is_main:
        if args.overwrite_output_dir:
            files.remove()
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(files.record, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
    processes.barrier()


def _record_differences(path: str, record: dict) -> list[str]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        recorded = json.load(handle)
    now = json.loads(json.dumps(record))
    return [
        f"{key} {recorded.get(key)!r} (recorded) vs {value!r} (now)"
        for key, value in now.items()
        if recorded.get(key) != value
    ]


def tag_collection(
    model,
    processor,
    args: CollectionArguments,
    processes: Processes,
    *,
    threshold: float | str,
    top_k: int | None,
    batch_size: int,
    show_progress: bool = True,
) -> tuple[int, int]:
    """Tag the collection of `args.input` into `args.output` (see the module docstring). Returns `(rows written by
    this run in this process, unreadable images)`: all of the run's unreadable images in process 0, this process's in
    the others."""
    record = run_record(args, model.config, threshold, top_k)
    files = check_output(args, processes, record)
    collection = open_collection(args)
    start_output(files, args, processes, record)
    previous_output = os.path.exists(files.output)
    done = written_keys(files, collection.key_column, previous_output)
    processes.barrier()  # every process has read the same rows before any writes
    thresholds = label_thresholds(model.config, threshold)
    names = [model.config.id2label[index] for index in range(model.config.num_labels)]
    loader = DataLoader(
        PendingBatches(collection, done, batch_size, processes, processor),
        batch_size=None,
        num_workers=args.num_workers,
        persistent_workers=False,
    )
    total = None if collection.size is None else _own_count(collection.size - len(done), batch_size, processes)
    progress = tqdm(total=total, unit="img", desc="tagging", disable=not (show_progress and processes.is_main))
    rows_path, errors_path = files.new_part("rows", processes.rank), files.new_part("errors", processes.rank)
    written = errors = 0
    with open(rows_path, "a", encoding="utf-8") as rows_file, open(errors_path, "a", encoding="utf-8") as errors_file:
        for batch in loader:
            for key, path, message in batch["errors"]:
                errors_file.write(json.dumps(_row(collection.key_column, key, path) | {"error": message}) + "\n")
            errors += len(batch["errors"])
            if batch["pixel_values"] is not None:
                scores = _scores(model, batch["pixel_values"])
                for key, path, image_scores in zip(batch["keys"], batch["paths"], scores):
                    row = _row(collection.key_column, key, path)
                    kept = labels_above_threshold(image_scores, thresholds, top_k)
                    row["labels"] = [names[index] for index in kept]
                    row["scores"] = [float(image_scores[index]) for index in kept]
                    if args.all_scores:
                        row["all_scores"] = dict(zip(names, image_scores.tolist()))
                    rows_file.write(json.dumps(row) + "\n")
                written += len(batch["keys"])
            rows_file.flush()
            errors_file.flush()
            progress.update(len(batch["keys"]) + len(batch["errors"]))
    progress.close()
    processes.barrier()
    if processes.is_main:
        schema = row_schema(collection.key_column, names if args.all_scores else None)
        errors = merge_outputs(files, collection.key_column, schema, previous_output)
    processes.barrier()
    return written, errors


def _row(key_column: str, key, path) -> dict:
    return {"index": key, "path": path} if key_column == "index" else {"path": path}


def _scores(model, pixel_values: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        logits = model(pixel_values=pixel_values.to(model.device, model.dtype)).logits
    return torch.sigmoid(logits.float()).cpu().numpy()
