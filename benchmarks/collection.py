"""Tagging a collection: images per second and peak memory of `hsvlt-predict --input DIR --output tags.jsonl`.

```bash
python benchmarks/collection.py --output benchmarks/collection.md
```

- **Collections**: 640x480 JPEGs (the size of COCO photos; photo-like, see `eval_throughput.jpeg_files`), in 10
  folders. The 10,000-image collection repeats 1,000 distinct files under distinct names (hard links): every file is
  read and decoded.
- **Models**: HSVLT's `tiny` preset (64 px) and HSVLT-S (the paper size: 448 px, 80 labels), random weights (speed and
  memory do not depend on the values), saved as checkpoints.
- **Runs**: the real command in a subprocess, one process or two (`accelerate launch --multi_gpu --num_processes 2`,
  gloo on CPU), each process with `--threads 1` and `--num_workers 1` decoding worker. Reported: the wall clock of the
  whole command (start-up, model loading and the merge included), the tagging rate (images / seconds of process 0's
  progress bar) and the peak memory of all its processes together (the sum of their proportional set sizes, PSS,
  sampled every 0.25 s: shared pages are counted once).
- **Decode per core** and the time per 1,000 images it implies for a GPU run whose model keeps up (no GPU was used).
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import torch
from eval_throughput import decode_rate, jpeg_files

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification, MultiLabelImageProcessor
from transformers_hsvlt.hsvlt.architecture import PRESETS


PREDICT = ["-m", "transformers_hsvlt.cli.predict"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hsvlt-collection-benchmark"))
    parser.add_argument("--tiny-sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--paper-sizes", type=int, nargs="+", default=[48])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--decode-images", type=int, default=48, help="JPEGs decoded for the per-core rate.")
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def write_collection(directory: Path, size: int, distinct: list[bytes]) -> Path:
    """`size` JPEG paths in 10 folders, hard links to the `distinct` files written once."""
    if directory.exists() and sum(1 for _ in directory.rglob("*.jpg")) == size:
        return directory
    sources = directory.parent / "distinct"
    sources.mkdir(parents=True, exist_ok=True)
    for number, data in enumerate(distinct):
        path = sources / f"{number:05d}.jpg"
        if not path.exists():
            path.write_bytes(data)
    for number in range(size):
        folder = directory / f"folder{number % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"image{number:06d}.jpg"
        if not target.exists():
            os.link(sources / f"{number % len(distinct):05d}.jpg", target)
    return directory


def save_models(workdir: Path) -> dict[str, Path]:
    names = dict(enumerate(f"label {index}" for index in range(80)))
    configs = {
        "HSVLT tiny (64 px)": HSVLTConfig(id2label=names, label_embedding_size=64, **PRESETS["tiny"].config),
        "HSVLT-S (448 px)": HSVLTConfig(id2label=names),
    }
    paths = {}
    for name, config in configs.items():
        path = workdir / name.split()[1]
        if not (path / "config.json").exists():
            HSVLTForMultiLabelClassification(config).save_pretrained(path)
        paths[name] = path
    return paths


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_pss_while(process: subprocess.Popen) -> int:
    """The largest sum of PSS over `process` and its descendants, sampled until it ends."""
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        total = 0
        for member in [root, *root.children(recursive=True)]:
            try:
                total += member.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        peak = max(peak, total)
        time.sleep(0.25)
    return peak


def tag(checkpoint: Path, collection: Path, output: Path, processes: int, batch_size: int) -> dict:
    """Run the command once; returns wall seconds, tagging seconds (process 0's bar) and peak PSS bytes."""
    arguments = [str(checkpoint), "--input", str(collection), "--output", str(output), "--overwrite_output_dir",
                 "--batch_size", str(batch_size), "--threads", "1", "--num_workers", "1"]  # fmt: skip
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                     "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                     "--main_process_port", str(free_port())]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    process = subprocess.Popen([*launcher, *PREDICT, *arguments], stderr=subprocess.PIPE, text=True, env=env)
    stderr_lines = []
    reader = threading.Thread(target=lambda: stderr_lines.append(process.stderr.read()))
    reader.start()
    peak = peak_pss_while(process)
    reader.join()
    wall = time.perf_counter() - start
    stderr = "".join(stderr_lines)
    if process.returncode != 0:
        raise RuntimeError(f"tagging failed ({process.returncode}):\n{stderr[-3000:]}")
    elapsed = re.findall(r"tagging: 100%.*?\[(\d+):(\d+)<", stderr)
    minutes, seconds = elapsed[-1]
    return {"wall": wall, "tagging": int(minutes) * 60 + int(seconds), "peak": peak}


def main(argv=None) -> None:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    distinct = jpeg_files(1000)
    checkpoints = save_models(args.workdir)
    load = os.getloadavg()
    decoded_448 = decode_rate(jpeg_files(args.decode_images), MultiLabelImageProcessor())
    decoded_64 = decode_rate(jpeg_files(args.decode_images), MultiLabelImageProcessor(size={"height": 64, "width": 64}))
    lines = [
        "| model | images | processes | wall clock (s) | tagging rate (images/s) | peak memory (MiB, PSS) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    runs = [(name, size) for name in checkpoints for size in (args.tiny_sizes if "tiny" in name else args.paper_sizes)]
    for name, size in runs:
        collection = write_collection(args.workdir / f"collection-{size}", size, distinct[:size])
        for processes in (1, 2):
            result = tag(checkpoints[name], collection, args.workdir / "tags.jsonl", processes, args.batch_size)
            lines.append(
                f"| {name} | {size:,} | {processes} | {result['wall']:.0f} | {size / max(result['tagging'], 1):.1f} "
                f"| {result['peak'] / 2**20:.0f} |"
            )
            print(lines[-1], flush=True)
    load_after = os.getloadavg()
    per_thousand = ", ".join(f"{cores} cores: {1000 / (decoded_448 * cores):.1f} s" for cores in (1, 8, 32, 64))
    table = "\n".join(
        [
            f"Load average (1 min) at the start {load[0]:.1f}, at the end {load_after[0]:.1f}, on "
            f"{os.cpu_count()} cores; torch {torch.__version__}.",
            "",
            *lines,
            "",
            f"Decode + resize of a 640x480 JPEG on one core: **{decoded_448:.1f} images/s** to 448x448 (HSVLT-S), "
            f"{decoded_64:.1f} images/s to 64x64 (tiny).",
            "",
            "Time per 1,000 images on a GPU machine, if the GPU scores faster than the decoding workers deliver "
            f"(decode-bound; 1,000 / ({decoded_448:.1f} x cores)): {per_thousand}.",
        ]
    )
    print(table)
    if args.output:
        args.output.write_text(f"# Tagging a collection\n\n`python benchmarks/collection.py`\n\n{table}\n")


if __name__ == "__main__":
    main()
