"""Evaluation throughput: how fast one core decodes and resizes images, and how fast models score them.

```bash
python benchmarks/eval_throughput.py --output benchmarks/eval_throughput.md
```

- **Decode + resize per core**: `load_image` (full decode, EXIF, RGB) and `MultiLabelImageProcessor` (448x448) on 640x480
  JPEGs (the size of COCO photos), in this process on one thread: what one data-loader worker of `hsvlt-eval
  --num_workers N` delivers.
- **Model throughput**: images per second of the evaluation forward (`eval()`, `no_grad`, batch `--batch-size`) of
  HSVLT's `tiny` preset (64 px) and of HSVLT-S (448 px, 80 labels) on this CPU.
- **Workers a GPU needs**: a model that scores R images per second needs about R / (decode rate per core) workers.
"""

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification, MultiLabelImageProcessor
from transformers_hsvlt.hsvlt.architecture import PRESETS
from transformers_hsvlt.images import load_image


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="JPEGs decoded for the per-core rate.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def jpeg_files(count: int) -> list[bytes]:
    """Photo-like 640x480 JPEGs (smooth gradients plus noise, quality 90)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    files = []
    for _ in range(count):
        base = np.stack([x * rng.uniform(0.1, 0.4), y * rng.uniform(0.1, 0.5), (x + y) * rng.uniform(0.05, 0.2)], -1)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        files.append(buffer.getvalue())
    return files


def decode_rate(files: list[bytes], processor: MultiLabelImageProcessor) -> float:
    """Images per second decoded and resized on one core."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    for data in files:
        processor(load_image(data), return_tensors="pt")
    return len(files) / (time.perf_counter() - start)


def model_rate(model: torch.nn.Module, image_size: int, batch_size: int, repeats: int) -> float:
    """Images per second of the evaluation forward, median over `repeats` batches after a warm-up."""
    pixel_values = torch.rand(batch_size, 3, image_size, image_size)
    model.eval()
    times = []
    with torch.no_grad():
        model(pixel_values=pixel_values)
        for _ in range(repeats):
            start = time.perf_counter()
            model(pixel_values=pixel_values)
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def main(argv=None) -> None:
    args = parse_args(argv)
    decoded = decode_rate(jpeg_files(args.images), MultiLabelImageProcessor())
    torch.set_num_threads(args.threads)
    names = [f"label {index}" for index in range(80)]
    models = {
        "HSVLT tiny (64 px)": HSVLTForMultiLabelClassification(
            HSVLTConfig(id2label=dict(enumerate(names)), label_embedding_size=64, **PRESETS["tiny"].config)
        ),
        "HSVLT-S (448 px)": HSVLTForMultiLabelClassification(HSVLTConfig(id2label=dict(enumerate(names)))),
    }
    lines = [
        f"Decode + resize (640x480 JPEG -> 448x448 tensor) on one core: **{decoded:.1f} images/s**.",
        "",
        f"| model | images/s on this CPU ({args.threads} thread(s), batch {args.batch_size}) | workers to keep up |",
        "| --- | ---: | ---: |",
    ]
    for name, model in models.items():
        rate = model_rate(model, model.config.image_size, args.batch_size, args.repeats)
        lines.append(f"| {name} | {rate:.1f} | {max(1, round(rate / decoded + 0.5))} |")
    lines += [
        "",
        f"A GPU that scores HSVLT-S at R images/s needs about R / {decoded:.0f} decoding workers "
        f"(`hsvlt-eval --num_workers`): e.g. {round(300 / decoded + 0.5)} workers for 300 images/s.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(f"# Evaluation throughput\n\n`python benchmarks/eval_throughput.py`\n\n{table}\n")


if __name__ == "__main__":
    main()
