"""Peak CPU memory of MSRN's per-channel semantic attention, chunked over labels or not.

COCO-sized MSRN (ResNet-101, 80 labels, 4 groups, 448x448). Every measurement runs in a fresh subprocess: the model
is built, the peak resident set size is reset (`/proc/self/clear_refs`, Linux), one inference forward (no_grad) or
one training step (forward + backward, no optimizer) runs, and the peak (`VmHWM`) is read. Reported: the peak over
the resident size before the step (the step's own memory) and the absolute peak.

    python benchmarks/msrn_memory.py --batch-sizes 1 2 --output benchmarks/msrn_memory.md
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


CHUNK_SIZES = (None, 16)
"""Unchunked (the authors' form, all 84 labels and groups at once) and the default `attention_label_chunk_size`."""


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(mode: str, chunk_size: int | None, batch_size: int, threads: int) -> dict:
    """One measurement in this process (see the module docstring)."""
    import numpy as np
    import torch

    from transformers_hsvlt import MSRNConfig, MSRNForMultiLabelClassification
    from transformers_hsvlt.registry import LabelCooccurrence

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = MSRNConfig(id2label={index: str(index) for index in range(80)}, attention_label_chunk_size=chunk_size)
    model = MSRNForMultiLabelClassification(config)
    rng = np.random.default_rng(0)
    pair_counts = rng.integers(0, 50, (80, 80)).astype(np.float64)
    pair_counts = np.triu(pair_counts, 1) + np.triu(pair_counts, 1).T
    model.set_label_graph(torch.randn(80, 300), LabelCooccurrence(pair_counts.max(1) * 2, pair_counts))
    pixel_values = torch.randn(batch_size, 3, 448, 448)
    labels = (torch.rand(batch_size, 80) < 0.05).float()
    model.train(mode == "training")
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    if mode == "training":
        model(pixel_values, labels=labels).loss.backward()
    else:
        with torch.no_grad():
            model(pixel_values)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    return {"step_mib": (peak - before) / 1024, "peak_mib": peak / 1024, "seconds": seconds}


def run_all(batch_sizes: list[int], threads: int) -> list[dict]:
    rows = []
    for batch_size in batch_sizes:
        for mode in ("inference", "training"):
            for chunk_size in CHUNK_SIZES:
                command = [sys.executable, __file__, "--measure", mode, str(chunk_size), str(batch_size), str(threads)]
                output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                row = {"mode": mode, "chunk": chunk_size, "batch": batch_size, **json.loads(output.splitlines()[-1])}
                print(row, flush=True)
                rows.append(row)
    return rows


def markdown(rows: list[dict], threads: int) -> str:
    lines = [
        "# MSRN: peak memory of the per-channel semantic attention",
        "",
        "COCO-sized MSRN (ResNet-101, 80 labels, K = 4 groups, 448x448 input, 310.6 M parameters = 1,185 MiB of",
        f"float32 weights), CPU, {threads} threads. `python benchmarks/msrn_memory.py`: one fresh process per row; the",
        "peak resident memory is reset after the model is built, then one step runs. *Step* is the peak over the",
        "resident size before the step (what the step itself needs: activations, and for training the gradients of",
        "all parameters, 1,185 MiB); *peak* is the process's absolute peak during the step.",
        "",
        "| step | chunk (labels) | batch | step MiB | peak MiB | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        chunk = "all 84 (authors)" if row["chunk"] is None else str(row["chunk"])
        lines.append(
            f"| {row['mode']} | {chunk} | {row['batch']} | {row['step_mib']:,.0f} | {row['peak_mib']:,.0f} | "
            f"{row['seconds']:.1f} |"
        )
    lines += [
        "",
        "The per-channel attention of level 1 alone is (batch, 784 positions, 84 labels and groups, 512 channels):",
        "129 MiB per image and tensor, and the authors' form holds several such tensors at once (product, softmax,",
        "weighted tokens), and for training keeps them for the backward pass at every level. Chunked (16 labels at",
        "a time, each chunk recomputed in the backward pass) the step needs:",
        "",
    ]
    by_key = {(row["mode"], row["batch"], row["chunk"]): row for row in rows}
    for (mode, batch, chunk), row in by_key.items():
        unchunked = by_key.get((mode, batch, None))
        if chunk is not None and unchunked is not None:
            saved = unchunked["step_mib"] - row["step_mib"]
            lines.append(f"- {mode}, batch {batch}: {saved:,.0f} MiB less than the authors' form.")
    lines += [
        "",
        "Times are single runs on a shared 2-core machine (other processes were running): they are noisy; the",
        "recomputation adds one attention forward per level and chunk to the backward pass.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--measure", nargs=4, metavar=("MODE", "CHUNK", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        mode, chunk, batch, threads = args.measure
        print(json.dumps(measure(mode, None if chunk == "None" else int(chunk), int(batch), int(threads))))
        return
    table = markdown(run_all(args.batch_sizes, args.threads), args.threads)
    print(table)
    if args.output:
        args.output.write_text(table)


if __name__ == "__main__":
    main()
