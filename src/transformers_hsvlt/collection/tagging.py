"""The tagging run: the decision (label thresholds, labels above them), the run record that a resume must match, and
`tag_collection`, which scores the pending images batch by batch into this process's part files and has process 0
merge them into the output."""

import json
import os

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..image_processing_multilabel import calibrated_thresholds, decision_thresholds
from .arguments import CollectionArguments
from .output import OutputFiles, merge_outputs, row_schema, written_keys
from .processes import PendingBatches, Processes, own_count
from .sources import open_collection


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
    total = None if collection.size is None else own_count(collection.size - len(done), batch_size, processes)
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
