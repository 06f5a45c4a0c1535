"""The README's quick start, run N times over seeds and thread counts: what a newcomer's `hsvlt-train` gives.

```bash
python benchmarks/quick_start.py --runs 4 --seeds 1 2 --threads 1 2 --output benchmarks/quick_start.md
```

Arguments it does not know go to `hsvlt-train` (a smoke test: `--digits_train_size 48 --num_train_epochs 1`).

Each run is the quick start's two commands, as a newcomer types them plus `--seed S --threads T`: `hsvlt-train`
(the embedded digits default: HSVLT's `tiny` preset, 20 epochs; its output in a fresh directory), then
`hsvlt-predict` on the six examples it saved. Runs go in order over the (seed, threads) pairs, seeds first, one at a
time; the table is rewritten after every run, so an interrupted benchmark keeps the runs it finished.
`--busy_processes N` runs N busy-looping processes alongside (a machine shared with other work, as in
`benchmark.py`). Per run: mAP,
CF1 and OF1 at threshold 0.5 and the lowest and highest per-class AP (from the run's `eval_results.json`), the
digits `hsvlt-predict` named and missed on the examples (their file names carry the true labels), the training's
wall time and the machine's load (1-minute load average, sampled every 10 s during training, mean and max). The
summary gives mean, standard deviation and range over the runs.
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmark import busy_processes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="How many runs (default 4).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="hsvlt-train --seed values (1 2).")
    parser.add_argument("--threads", nargs="+", default=["1", "2"], help="hsvlt-train --threads values (1 2).")
    parser.add_argument("--output", default="benchmarks/quick_start.md", help="The markdown table written.")
    parser.add_argument("--work_dir", default=None, help="Where the runs' checkpoints go (default: a temporary one).")
    parser.add_argument(
        "--busy_processes", type=int, default=0, help="Busy-looping processes competing for the CPUs (default 0)."
    )
    args, args.train_arguments = parser.parse_known_args(
        argv
    )  # the rest goes to hsvlt-train (e.g. a smoke test's sizes)
    return args


class LoadSampler:
    """The 1-minute load average every `interval` seconds while a run lasts."""

    def __init__(self, interval: float = 10.0):
        self.interval, self.samples, self.stopped = interval, [os.getloadavg()[0]], threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.stopped.wait(self.interval):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


def command(module: str, *arguments: str) -> list[str]:
    return [sys.executable, "-m", f"transformers_hsvlt.cli.{module}", *arguments]


def run_quick_start(seed: int, threads: str, output_dir: Path, train_arguments: list[str]) -> dict:
    """One quick start: train, then predict on the examples; its numbers."""
    train = command("train", "--seed", str(seed), "--threads", threads, "--output_dir", str(output_dir), "--quiet")
    train += train_arguments
    start = time.perf_counter()
    with LoadSampler() as load:
        printed = subprocess.run(train, check=True, capture_output=True, text=True).stdout
    if threads == "auto":  # hsvlt-train's first line: "hsvlt-train: N CPU thread(s) (--threads auto); ..."
        threads = f"auto ({printed.split()[1]})"
    minutes = (time.perf_counter() - start) / 60
    results = json.loads((output_dir / "eval_results.json").read_text())
    per_class = results["per_class_AP"]
    examples = sorted((output_dir / "examples").glob("*.png"))
    predict = command("predict", str(output_dir), *map(str, examples), "--json", "--threads", "auto")
    predictions = json.loads(subprocess.run(predict, check=True, capture_output=True, text=True).stdout)
    named = missed = wrong = 0
    for example, prediction in zip(examples, predictions):
        truth = set(example.stem.split("_", 1)[1].split("-")) - {"none"}
        found = {label["label"] for label in prediction["predictions"]}
        named, missed, wrong = named + len(truth & found), missed + len(truth - found), wrong + len(found - truth)
    lowest, highest = min(per_class, key=per_class.get), max(per_class, key=per_class.get)
    return {
        "seed": seed,
        "threads": threads,
        "mAP": results["mAP"],
        "CF1": results["CF1"],
        "OF1": results["OF1"],
        "chance_mAP": results["chance_mAP"],
        "lowest_AP": f"{per_class[lowest]:.2f} ({lowest})",
        "highest_AP": f"{per_class[highest]:.2f} ({highest})",
        "examples": f"{named} named, {missed} missed, {wrong} wrong",
        "minutes": minutes,
        "load": f"{statistics.fmean(load.samples):.1f} / {max(load.samples):.1f}",
    }


def spread(values: list[float]) -> str:
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {deviation:.2f} ({min(values):.2f}-{max(values):.2f})"


def write_table(path: Path, runs: list[dict]) -> None:
    columns = ["seed", "threads", "mAP", "CF1", "OF1", "chance_mAP", "lowest_AP", "highest_AP", "examples"]
    columns += ["minutes", "busy", "load"]
    lines = [
        "# Quick start, repeated (`benchmarks/quick_start.py`)",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs; `hsvlt-train --seed S --threads T`"
        " (otherwise the default) then `hsvlt-predict` on its six examples (threshold 0.5). threads: auto (N) is"
        " the count `--threads auto` chose. busy: busy-looping processes of the benchmark competing for the CPUs."
        " load: the 1-minute load average during training, mean / max.",
        "",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---:" for _ in columns) + " |",
    ]
    for run in runs:
        cells = [f"{run[name]:.2f}" if isinstance(run[name], float) else str(run[name]) for name in columns]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Over {len(runs)} run(s): mean ± standard deviation (min-max)", ""]
    for name in ("mAP", "CF1", "OF1", "minutes"):
        lines.append(f"- {name}: {spread([run[name] for run in runs])}")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    args = parse_args(argv)
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="quick_start_"))
    pairs = list(itertools.product(args.seeds, args.threads))
    runs = []
    for index in range(args.runs):
        seed, threads = pairs[index % len(pairs)]
        with busy_processes(args.busy_processes):
            run = run_quick_start(seed, threads, work_dir / f"run{index}", args.train_arguments)
        runs.append({**run, "busy": args.busy_processes})
        write_table(Path(args.output), runs)
        print(json.dumps(runs[-1]), flush=True)


if __name__ == "__main__":
    main()
