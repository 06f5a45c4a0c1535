"""The files of an output: `OutputFiles` (the rows, the errors, the run record and the processes' part files),
reading rows back (a row cut short by a kill is skipped), writing JSON Lines or Parquet (`RowWriter`, `row_schema`)
and the final merge of the parts into one output sorted by key."""

import heapq
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq


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
