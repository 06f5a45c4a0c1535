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

from .arguments import CollectionArguments
from .output import read_jsonl_rows
from .processes import Processes
from .tagging import tag_collection


__all__ = ["CollectionArguments", "Processes", "read_jsonl_rows", "tag_collection"]
