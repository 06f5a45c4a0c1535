"""How the cost of each architecture grows with the number of labels, measured on this CPU (not a test).

```bash
OMP_NUM_THREADS=1 nice -n 5 python benchmarks/labels.py --output benchmarks/labels.md
```

Every architecture is built at its paper preset (448 px; `--preset tiny` for a quick check) through its registry entry
with a random label side of the right shapes (`compare_family.paper_size_model`: random weights, label names
`label 0`, `label 1`, ..., random label vectors and co-occurrence counts where the architecture needs them), once per
label count of `--num-labels`. For each it reports, batch 1:

* GMACs per image of an inference forward (`eval()`, `torch.no_grad()`): `FlopCounterMode` FLOPs / 2, counted after a
  warm-up forward, so one-time work cached by the model (HSVLT's IVLA weight products) is not counted per image.
  Everything the model recomputes at every forward is counted: PatchCT and PVLR run their CLIP text tower on the
  prompts of every label at every forward (nothing is cached), so its cost is part of their figures.
* Aten operations of one inference forward (`operations.AtenOperationCounter`, after the warm-up).
* Inference time: the CPU time of the process (`time.process_time`, with one thread the time the process computed,
  not the time it waited for a CPU), median of `--repeats` rounds; in each round every architecture of the label count
  runs once, in turn, so that a change in the machine's load hits them alike.
* Peak memory of an inference forward and of a training step (forward and backward of the loss): the peak of the
  bytes held by torch's CPU allocator during the step above what it held before (`benchmark.cpu_peak_bytes`).
* Training steps at the label counts of `--training-labels` (the two smaller ones predict the largest one's memory):
  peak memory and the CPU time of one step after a warm-up step.

A label count is skipped for an architecture when the counts already measured predict, by linear extrapolation in
the number of labels, float32 weights or a training step's peak above `--memory-limit`, or an inference forward
longer than `--max-forward-seconds`; the table says so, and says what was predicted. The per-label cost is the
difference of GMACs between the two largest measured label counts, divided by the difference of labels.
"""

import argparse
import datetime
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
import transformers


sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import cpu_peak_bytes, load_average, machine_description  # noqa: E402
from compare_family import ARCHITECTURES, gmacs, inference, paper_size_model, training_step  # noqa: E402
from operations import AtenOperationCounter  # noqa: E402


LABEL_COUNTS = (20, 80, 1000, 4000)
GIB = 2**30


@dataclass
class Row:
    """The measurements of one architecture at one label count (`None`: not measured; `skipped` says why)."""

    architecture: str
    num_labels: int
    parameters: int | None = None
    macs: float | None = None
    operations: int | None = None
    inference_seconds: list[float] = field(default_factory=list)
    inference_bytes: float | None = None
    training_seconds: float | None = None
    training_bytes: float | None = None
    skipped: str = ""
    training_skipped: str = ""

    @property
    def gmacs(self) -> float | None:
        return None if self.macs is None else self.macs / 1e9


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--num-labels", nargs="+", type=int, default=list(LABEL_COUNTS))
    parser.add_argument("--training-labels", nargs="+", type=int, default=[80, 1000, 4000])
    parser.add_argument("--preset", help="Another preset than each architecture's paper preset, e.g. `tiny`.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-limit", type=float, default=8.0, help="GB (1e9 bytes).")
    parser.add_argument("--max-forward-seconds", type=float, default=180.0)
    parser.add_argument("--output", type=Path, help="Also write the Markdown report here.")
    return parser.parse_args(argv)


def extrapolate(rows: list[Row], value, num_labels: int) -> float | None:
    """`value(row)` at `num_labels`, on the line through the two largest label counts that have it (`None` if fewer)."""
    known = [(row.num_labels, value(row)) for row in rows if value(row) is not None]
    if len(known) < 2:
        return None
    (x0, y0), (x1, y1) = known[-2:]
    return y1 + (y1 - y0) / (x1 - x0) * (num_labels - x1)


def reason_to_skip(rows: list[Row], num_labels: int, args) -> str:
    """Why `num_labels` would not fit the limits, predicted from the smaller label counts in `rows` ("" if it fits)."""
    weights = extrapolate(rows, lambda row: row.parameters, num_labels)
    if weights is not None and 4 * weights > args.memory_limit * 1e9:
        return f"predicted {weights / 1e9:.1f} B parameters, {4 * weights / 1e9:.0f} GB of float32 weights"
    seconds = extrapolate(rows, lambda row: statistics.median(row.inference_seconds or [None]), num_labels)
    if seconds is not None and seconds > args.max_forward_seconds:
        return f"predicted {seconds:.0f} s of CPU per inference forward"
    return ""


def reason_not_to_train(rows: list[Row], num_labels: int, args) -> str:
    peak = extrapolate(rows, lambda row: row.training_bytes, num_labels)
    if peak is not None and peak > args.memory_limit * 1e9:
        return f"predicted peak {peak / 1e9:.1f} GB"
    return ""


def operation_count(model, pixel_values) -> int:
    """Aten operations of one inference forward."""
    with torch.no_grad(), AtenOperationCounter() as counter:
        model.eval()(pixel_values=pixel_values)
    return counter.count


def cpu_seconds(step) -> float:
    start = time.process_time()
    step()
    return time.process_time() - start


def measure_label_count(num_labels: int, history: dict[str, list[Row]], args) -> list[Row]:
    """Every architecture at `num_labels`: counts and memory one after the other, then the interleaved timing rounds."""
    rows, cases = [], []
    for name in args.architectures:
        row = Row(name, num_labels, skipped=reason_to_skip(history[name], num_labels, args))
        rows.append(row)
        if row.skipped:
            continue
        torch.manual_seed(0)
        model = paper_size_model(name, num_labels, args.preset)
        size = model.config.image_size
        pixel_values = torch.rand(1, 3, size, size)
        row.parameters = sum(parameter.numel() for parameter in model.parameters())
        row.macs = gmacs(model, pixel_values) * 1e9  # its first forward is the warm-up
        row.operations = operation_count(model, pixel_values)
        row.inference_bytes = cpu_peak_bytes(partial(inference, model, pixel_values))
        if num_labels in args.training_labels:
            row.training_skipped = reason_not_to_train(history[name], num_labels, args)
        if num_labels in args.training_labels and not row.training_skipped:
            labels = (torch.rand(1, num_labels) < 0.1).float()
            row.training_bytes = cpu_peak_bytes(partial(training_step, model, pixel_values, labels))
            row.training_seconds = cpu_seconds(partial(training_step, model, pixel_values, labels))
        cases.append((row, partial(inference, model, pixel_values)))
    for _ in range(args.repeats):
        for row, step in cases:  # interleaved: load changes hit every architecture alike
            row.inference_seconds.append(cpu_seconds(step))
    return rows


def measure(args, started: datetime.datetime, load_at_start: str) -> list[Row]:
    """Every label count in increasing order; the report is written after each one (an interrupted run keeps what it
    measured)."""
    history = {name: [] for name in args.architectures}
    rows = []
    for num_labels in sorted(args.num_labels):
        for row in measure_label_count(num_labels, history, args):
            history[row.architecture].append(row)
            rows.append(row)
            print(f"{row.architecture} {num_labels} labels: {row.gmacs} GMACs, {row.skipped}", file=sys.stderr)
        if args.output:
            args.output.write_text(report(rows, args, started, (load_at_start, load_average())), encoding="utf-8")
    return rows


def per_label_gmacs(rows: list[Row]) -> float | None:
    """GMACs per extra label: the slope between the two largest label counts measured."""
    measured = [row for row in rows if row.macs is not None]
    if len(measured) < 2:
        return None
    first, last = measured[-2:]
    return (last.gmacs - first.gmacs) / (last.num_labels - first.num_labels)


def number(value: float | None, form: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{form}}{unit}"


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| architecture | labels | parameters | GMACs / image | aten operations | inference (CPU time) | "
        "peak memory, inference | training step: peak memory, CPU time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.architecture} | {row.num_labels:,} | not run: {row.skipped} | | | | | |")
            continue
        training = ""
        if row.training_bytes is not None:
            training = f"{row.training_bytes / GIB:.2f} GiB, {row.training_seconds:.1f} s"
        elif row.training_skipped:
            training = f"not run: {row.training_skipped}"
        milliseconds = 1000 * statistics.median(row.inference_seconds)
        lines.append(
            f"| {row.architecture} | {row.num_labels:,} | {row.parameters / 1e6:.1f} M | {row.gmacs:.4g} | "
            f"{row.operations:,} | {milliseconds:,.0f} ms | {row.inference_bytes / 2**20:,.0f} MiB | {training} |"
        )
    return lines


def per_label_table(rows: list[Row], architectures: list[str]) -> list[str]:
    lines = ["| architecture | GMACs per extra label per image | between |", "| --- | ---: | --- |"]
    for name in architectures:
        measured = [row for row in rows if row.architecture == name and row.macs is not None]
        slope = per_label_gmacs(measured)
        between = " and ".join(f"{row.num_labels:,}" for row in measured[-2:]) + " labels"
        lines.append(f"| {name} | {number(slope, '.4g')} | {between} |")
    return lines


def report(rows: list[Row], args, started: datetime.datetime, loads: tuple[str, str]) -> str:
    preset = f"`{args.preset}` preset" if args.preset else "paper preset"
    conditions = (
        f"{started:%Y-%m-%d %H:%M} UTC, {machine_description(SimpleNamespace(device='cpu'))}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}; load average {loads[0]} at the start, {loads[1]} at the end. "
        f"Every architecture at its {preset}, batch 1, float32; inference times are the median CPU time of {args.repeats} interleaved rounds."
    )
    return "\n".join(
        [
            "# Label-count scaling",
            "",
            "`OMP_NUM_THREADS=1 nice -n 5 python benchmarks/labels.py --output benchmarks/labels.md` (method: the "
            "script's docstring).",
            "",
            conditions,
            "",
            *table(rows),
            "",
            "Cost of each extra label (inference, per image):",
            "",
            *per_label_table(rows, args.architectures),
            "",
        ]
    )


def main(argv=None) -> list[Row]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = load_average()
    rows = measure(args, started, load_at_start)
    print(report(rows, args, started, (load_at_start, load_average())))
    return rows


if __name__ == "__main__":
    main()
