"""The family side by side, measured by one command: parameters, GMACs, CPU inference and training-step time, peak
memory, and the mAP of each architecture's `tiny` preset on the embedded digits default.

```bash
# the digits column: train each tiny preset with the same command first
for model in hsvlt msrn patchct pvlr; do hsvlt-train --model $model --output_dir runs/$model-digits; done
python benchmarks/compare_family.py --digits-runs runs --output benchmarks/family.md
```

Every architecture is built at its paper preset (448 px, 80 labels, random weights: speed and memory do not depend
on the values) through its registry entry. Times are medians over `--repeats` runs, the architectures interleaved in
each round so that a change in the machine's load hits all of them alike; peak memory is the largest amount held by
torch's CPU allocator during one step (`benchmark.cpu_peak_bytes`), batch 1.
"""

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from benchmark import count_cpu_flash_attention
from torch.utils.flop_counter import FlopCounterMode

from transformers_hsvlt.registry import LabelCooccurrence, LabelSide, get_architecture


sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import cpu_peak_bytes  # noqa: E402


ARCHITECTURES = ("hsvlt", "msrn", "patchct", "pvlr")
LABEL_VECTOR_WIDTHS = {"hsvlt": 768, "msrn": 300}  # BERT-base (HSVLT's authors), GloVe (MSRN's authors)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--num-labels", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--digits-runs", type=Path, help="Folder holding <architecture>-digits/eval_results.json.")
    parser.add_argument("--output", type=Path, help="Also write the Markdown table here.")
    return parser.parse_args(argv)


def paper_size_model(name: str, num_labels: int, preset: str | None = None) -> torch.nn.Module:
    """The architecture at its paper preset (or at `preset`, e.g. `tiny`), with random weights and a random label side
    of the right shapes."""
    architecture = get_architecture(name)
    names = [f"label {index}" for index in range(num_labels)]
    rng = np.random.default_rng(0)
    side = LabelSide(names=names)
    if "embeddings" in architecture.label_inputs:
        side.embeddings = torch.randn(num_labels, LABEL_VECTOR_WIDTHS.get(name, 300))
    if "cooccurrence" in architecture.label_inputs:
        present = (rng.random((500, num_labels)) < 0.05).astype(np.float64)
        pairs = present.T @ present
        np.fill_diagonal(pairs, 0)
        side.cooccurrence = LabelCooccurrence(counts=present.sum(0), pair_counts=pairs)
    config = architecture.presets[preset or architecture.default_preset].config
    return architecture.build(dict(config), side, None)


def inference(model, pixel_values) -> None:
    model.eval()
    with torch.no_grad():
        model(pixel_values=pixel_values)


def training_step(model, pixel_values, labels) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    model(pixel_values=pixel_values, labels=labels).loss.backward()


def gmacs(model, pixel_values) -> float:
    """Multiply-accumulates of one evaluation forward, after a warm-up forward (so that one-time work, such as HSVLT's
    cached weight products, is not counted per image)."""
    inference(model, pixel_values)
    count_cpu_flash_attention()
    counter = FlopCounterMode(display=False)
    with counter:
        inference(model, pixel_values)
    return counter.get_total_flops() / 2 / 1e9


def digits_map(runs: Path | None, name: str) -> str:
    path = runs / f"{name}-digits" / "eval_results.json" if runs else None
    if path is None or not path.is_file():
        return "not run"
    results = json.loads(path.read_text())
    return f"{results['mAP']:.1f} (chance {results['chance_mAP']:.1f})"


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {name: paper_size_model(name, args.num_labels) for name in args.architectures}
    inputs = {}
    for name, model in models.items():
        size = model.config.image_size
        inputs[name] = (torch.rand(1, 3, size, size), (torch.rand(1, args.num_labels) < 0.1).float())
    rows = {name: {"params": sum(p.numel() for p in model.parameters()) / 1e6} for name, model in models.items()}
    for name, model in models.items():
        pixel_values, labels = inputs[name]
        rows[name]["gmacs"] = gmacs(model, pixel_values)
        training_step(model, pixel_values, labels)  # warm-up
        rows[name]["inference_mib"] = cpu_peak_bytes(partial(inference, model, pixel_values)) / 2**20
        rows[name]["training_mib"] = cpu_peak_bytes(partial(training_step, model, pixel_values, labels)) / 2**20
    times = {name: {"inference": [], "training": []} for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():  # interleaved: load changes hit every architecture alike
            pixel_values, labels = inputs[name]
            start = time.perf_counter()
            inference(model, pixel_values)
            times[name]["inference"].append(time.perf_counter() - start)
            start = time.perf_counter()
            training_step(model, pixel_values, labels)
            times[name]["training"].append(time.perf_counter() - start)
    lines = [
        f"{args.num_labels} labels, 448 px, batch 1, CPU, {args.threads} thread(s), median of {args.repeats} interleaved "
        "runs; peak memory held by torch's CPU allocator during one step.",
        "",
        "| architecture | parameters | GMACs / image | inference | training step | peak memory (inference / training) | digits mAP (tiny preset) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, row in rows.items():
        inference_ms = 1000 * statistics.median(times[name]["inference"])
        training_ms = 1000 * statistics.median(times[name]["training"])
        lines.append(
            f"| {name} | {row['params']:.1f} M | {row['gmacs']:.1f} | {inference_ms:.0f} ms | {training_ms:.0f} ms | "
            f"{row['inference_mib']:.0f} / {row['training_mib']:.0f} MiB | {digits_map(args.digits_runs, name)} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(f"# The family side by side\n\n`python benchmarks/compare_family.py`\n\n{table}\n")


if __name__ == "__main__":
    main()
