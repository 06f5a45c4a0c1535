"""Speed, memory and MACs of HSVLT-S against a plain ConvNeXt-S, on one machine in one run (not a test).

Measured models (random weights, nothing is downloaded):

* `HSVLT-S folded`: `HSVLTForMultiLabelClassification(HSVLTConfig(num_labels=80))`, IVLA with the key/value
  projections folded onto the label queries (the default).
* `HSVLT-S straightforward`: the same weights with `fold_label_attention=False` (the authors' form).
* `ConvNeXt-S`: transformers' `ConvNextModel(ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[96, 192, 384, 768]))`,
  the visual hierarchy HSVLT-S is built on, without any label side.

For every model, memory format and precision it reports the multiply-accumulates per image (`FlopCounterMode` FLOPs
/ 2, counted on a forward pass), the median time of an inference forward (`eval()`, `torch.no_grad()`) and of a
training step (`train()`, forward + backward of a loss, gradients reset before each step) over `--repeats` rounds,
images/s, and the peak memory of each step:

* CPU: the peak of the bytes held by torch's CPU allocator during the step, above what was held before it (weights,
  inputs), from the allocation and free events recorded by `torch.profiler.profile(profile_memory=True)` in an extra,
  untimed step. It counts tensors (activations, temporaries, gradients), not the C allocator's caches or the
  interpreter, so it is the CPU counterpart of `torch.cuda.max_memory_allocated`, not an RSS figure.
* CUDA: `torch.cuda.max_memory_allocated()` during the step minus `torch.cuda.memory_allocated()` before it.

The models are measured in interleaved rounds (each round times every model once, in an order rotated from round to
round) so that the load of a shared machine affects them alike; the medians over rounds are reported. Times are
wall-clock by default; `--clock cpu` times the CPU time of the process instead, which with `--threads 1` leaves out
the time the process waited for a CPU on a busy machine. On CUDA it also measures bf16 autocast and searches the
largest training batch that fits in memory (doubling, then bisection on out-of-memory errors).

The runs behind `benchmarks/results.md` (CPU):

    python benchmarks/benchmark.py --threads 1 --clock cpu --batch-size 1 --repeats 9 \
        --memory-formats contiguous,channels_last --output results_1_thread.md
    python benchmarks/benchmark.py --threads 2 --batch-size 1 --repeats 7 \
        --memory-formats contiguous,channels_last --output results_2_threads.md
"""

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch
import transformers
from torch import nn
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode
from transformers import ConvNextConfig, ConvNextModel

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification

FOLDED, STRAIGHTFORWARD, CONVNEXT = "HSVLT-S folded", "HSVLT-S straightforward", "ConvNeXt-S"
MODES = ("inference", "training")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK_DESCRIPTIONS = {
    "wall": "wall-clock time (`time.perf_counter`)",
    "cpu": "CPU time of the process (`time.process_time`): with one thread, the time the step actually ran, without "
    "the time it waited for a CPU on a shared machine; with more threads it adds up the threads, spinning included",
}


@dataclass
class Measurement:
    """Everything measured for one model in one memory format and precision."""

    model: str
    memory_format: str
    precision: str
    macs_per_image: float = 0.0
    seconds: dict[str, list[float]] = field(default_factory=lambda: {mode: [] for mode in MODES})
    peak_bytes: dict[str, float] = field(default_factory=dict)
    max_batch_size: int | None = None

    def median(self, mode: str) -> float:
        return statistics.median(self.seconds[mode])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--num-labels", type=int, default=80)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice).")
    parser.add_argument("--repeats", type=int, default=5, help="Timed rounds; the median over rounds is reported.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps per model and mode before the rounds.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--memory-formats", default="contiguous", help="Comma-separated: contiguous, channels_last (model and input)."
    )
    parser.add_argument(
        "--precisions",
        default=None,
        help="Comma-separated: fp32, bf16 (bf16 autocast). Default: fp32 on CPU, fp32,bf16 on CUDA.",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time. cpu: CPU time of the process, steadier with --threads 1 on a shared machine.",
    )
    parser.add_argument("--max-batch-limit", type=int, default=1024, help="Upper bound of the CUDA batch-size search.")
    parser.add_argument("--output", default=None, help="Write the markdown report there (also printed).")
    return parser.parse_args(argv)


def build_models(num_labels: int) -> dict[str, nn.Module]:
    """The three measured models, HSVLT-S folded and straightforward sharing the same random weights."""
    torch.manual_seed(0)
    folded = HSVLTForMultiLabelClassification(HSVLTConfig(num_labels=num_labels, fold_label_attention=True))
    straightforward = HSVLTForMultiLabelClassification(HSVLTConfig(num_labels=num_labels, fold_label_attention=False))
    straightforward.load_state_dict(folded.state_dict())
    convnext = ConvNextModel(ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[96, 192, 384, 768]))
    return {FOLDED: folded, STRAIGHTFORWARD: straightforward, CONVNEXT: convnext}


def make_inputs(model: nn.Module, batch_size: int, image_size: int, device: str, memory_format: str) -> dict:
    """Random images in [0, 1] (and random targets for HSVLT, whose training loss is its own BCE)."""
    generator = torch.Generator().manual_seed(batch_size)
    pixel_values = torch.rand(batch_size, 3, image_size, image_size, generator=generator).to(device)
    if memory_format == "channels_last":
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
    inputs = {"pixel_values": pixel_values}
    if isinstance(model, HSVLTForMultiLabelClassification):
        labels = torch.randint(0, 2, (batch_size, model.config.num_labels), generator=generator)
        inputs["labels"] = labels.float().to(device)
    return inputs


def training_loss(model: nn.Module, inputs: dict) -> torch.Tensor:
    """HSVLT: its BCE on random targets. ConvNeXt (no head): the mean square of its pooled features."""
    if isinstance(model, HSVLTForMultiLabelClassification):
        return model(**inputs).loss
    return model(inputs["pixel_values"]).pooler_output.float().pow(2).mean()


def run_step(model: nn.Module, inputs: dict, mode: str, precision: str, device: str) -> None:
    """One inference forward (eval, no_grad) or one training step (train, forward + backward)."""
    autocast = (
        torch.autocast(device_type=device, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    if mode == "inference":
        model.eval()
        with torch.no_grad(), autocast:
            model(inputs["pixel_values"])
    else:
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = training_loss(model, inputs)
        loss.backward()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_step(model: nn.Module, inputs: dict, mode: str, precision: str, device: str, clock: str) -> float:
    synchronize(device)
    start = CLOCKS[clock]()
    run_step(model, inputs, mode, precision, device)
    synchronize(device)
    return CLOCKS[clock]() - start


def count_macs(model: nn.Module, inputs: dict, precision: str, device: str) -> float:
    """Multiply-accumulates per image of one inference forward: FLOPs counted by `FlopCounterMode`, halved."""
    counter = FlopCounterMode(display=False)
    with counter:
        run_step(model, inputs, "inference", precision, device)
    return counter.get_total_flops() / 2 / inputs["pixel_values"].shape[0]


def cpu_peak_bytes(step) -> float:
    """Peak of the bytes held by torch's CPU allocator during `step()`, above what it held before: the running sum of
    the allocation (+) and free (-) events recorded by the profiler, in time order."""
    with profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = [event for event in profiler.profiler.kineto_results.events() if event.name() == "[memory]"]
    events = [event for event in events if event.device_type() == torch.autograd.DeviceType.CPU]
    held, peak = 0, 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        held += event.nbytes()
        peak = max(peak, held)
    return float(peak)


def cuda_peak_bytes(step) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return float(torch.cuda.max_memory_allocated() - before)


def peak_bytes(model: nn.Module, inputs: dict, mode: str, precision: str, device: str) -> float:
    def step():
        run_step(model, inputs, mode, precision, device)

    model.zero_grad(set_to_none=True)
    return cuda_peak_bytes(step) if device.startswith("cuda") else cpu_peak_bytes(step)


def fits_in_memory(model: nn.Module, batch_size: int, args, memory_format: str, precision: str) -> bool:
    """Whether one training step at `batch_size` runs without a CUDA out-of-memory error."""
    try:
        inputs = make_inputs(model, batch_size, args.image_size, args.device, memory_format)
        run_step(model, inputs, "training", precision, args.device)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


def largest_batch(model: nn.Module, args, memory_format: str, precision: str) -> int:
    """The largest training batch that fits (0 if not even one image): doubling, then bisection."""
    low, high = 0, 1
    while high <= args.max_batch_limit and fits_in_memory(model, high, args, memory_format, precision):
        low, high = high, high * 2
    high = min(high, args.max_batch_limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits_in_memory(model, middle, args, memory_format, precision) else (low, middle)
    return low


def measure(args) -> list[Measurement]:
    device = args.device
    memory_formats = args.memory_formats.split(",")
    precisions = (args.precisions or ("fp32,bf16" if device.startswith("cuda") else "fp32")).split(",")
    models = build_models(args.num_labels)
    cases = [
        (Measurement(name, memory_format, precision), model)
        for memory_format in memory_formats
        for precision in precisions
        for name, model in models.items()
    ]

    def prepare(measurement: Measurement, model: nn.Module) -> tuple[nn.Module, dict]:
        memory_format = torch.channels_last if measurement.memory_format == "channels_last" else torch.contiguous_format
        model = model.to(device=device, memory_format=memory_format)
        return model, make_inputs(model, args.batch_size, args.image_size, device, measurement.memory_format)

    for measurement, model in cases:
        model, inputs = prepare(measurement, model)
        single = make_inputs(model, 1, args.image_size, device, measurement.memory_format)
        measurement.macs_per_image = count_macs(model, single, measurement.precision, device)
        for mode in MODES:
            for _ in range(args.warmup):
                run_step(model, inputs, mode, measurement.precision, device)
            measurement.peak_bytes[mode] = peak_bytes(model, inputs, mode, measurement.precision, device)
        print(f"prepared {measurement.model} ({measurement.memory_format}, {measurement.precision})", flush=True)

    for round_index in range(args.repeats):
        shift = round_index % len(cases)
        for measurement, model in cases[shift:] + cases[:shift]:
            model, inputs = prepare(measurement, model)
            for mode in MODES:
                seconds = timed_step(model, inputs, mode, measurement.precision, device, args.clock)
                measurement.seconds[mode].append(seconds)
        print(f"round {round_index + 1}/{args.repeats} done", flush=True)

    if device.startswith("cuda"):
        for measurement, model in cases:
            model, _ = prepare(measurement, model)
            measurement.max_batch_size = largest_batch(model, args, measurement.memory_format, measurement.precision)
    return [measurement for measurement, _ in cases]


def machine_description(args) -> str:
    if args.device.startswith("cuda"):
        return torch.cuda.get_device_name()
    model_name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model_name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    return f"{model_name} ({os.cpu_count()} logical CPUs), {torch.get_num_threads()} torch thread(s)"


def load_average() -> str:
    """The 1-minute load average (runnable processes), which says how shared the machine was."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.3f}"


def ratio_rows(folded: Measurement, straightforward: Measurement, convnext: Measurement) -> list[tuple[str, str, str]]:
    """(quantity, value, target) rows comparing the folded form with ConvNeXt-S and with the straightforward form."""
    return [
        ("GMACs / image, folded HSVLT-S", f"{folded.macs_per_image / 1e9:.2f}", "<= 40"),
        ("MACs, folded / ConvNeXt-S", ratio(folded.macs_per_image, convnext.macs_per_image), ""),
        ("MACs, straightforward / ConvNeXt-S", ratio(straightforward.macs_per_image, convnext.macs_per_image), ""),
        (
            "inference time, folded / ConvNeXt-S",
            ratio(folded.median("inference"), convnext.median("inference")),
            "<= 1.2",
        ),
        (
            "training time, folded / ConvNeXt-S",
            ratio(folded.median("training"), convnext.median("training")),
            "<= 1.3",
        ),
        (
            "inference speed-up, folded vs straightforward",
            ratio(straightforward.median("inference"), folded.median("inference")),
            ">= 1.25",
        ),
        (
            "training speed-up, folded vs straightforward",
            ratio(straightforward.median("training"), folded.median("training")),
            "",
        ),
        (
            "peak training memory, folded / ConvNeXt-S",
            ratio(folded.peak_bytes["training"], convnext.peak_bytes["training"]),
            "",
        ),
        (
            "peak training memory, folded / straightforward",
            ratio(folded.peak_bytes["training"], straightforward.peak_bytes["training"]),
            "",
        ),
    ]


def report(measurements: list[Measurement], args, loads: tuple[str, str]) -> str:
    batch_size, cuda = args.batch_size, args.device.startswith("cuda")
    setup = (
        f"{datetime.date.today().isoformat()}, {machine_description(args)}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}. Batch {batch_size}, {args.image_size}x{args.image_size}, "
        f"{args.num_labels} labels; median of {args.repeats} interleaved rounds after {args.warmup} warm-up "
        f"step(s) per model and mode. Load average {loads[0]} at the start, {loads[1]} at the end. "
        f"Times are the {CLOCK_DESCRIPTIONS[args.clock]}. Produced by `benchmarks/benchmark.py`."
    )
    memory = (
        "`torch.cuda.max_memory_allocated()` during the step, above the memory allocated before it."
        if cuda
        else "peak of the bytes held by torch's CPU allocator during the step, above what it held before "
        "(weights, inputs), from `torch.profiler` allocation events: activations, temporaries and gradients, "
        "not an RSS figure."
    )
    header = (
        "| model | memory format | precision | GMACs / image | inference ms | inference img/s | training ms "
        "| training img/s | peak MiB inference | peak MiB training |" + (" largest training batch |" if cuda else "")
    )
    modes = (
        "Inference: `eval()`, `torch.no_grad()`, one forward. Training: `train()`, forward + backward of a loss "
        f"(HSVLT: its BCE; ConvNeXt: mean square of the pooled features). Peak memory: {memory}"
    )
    lines = [
        "# HSVLT-S vs ConvNeXt-S: speed, memory and MACs",
        "",
        setup,
        "",
        modes,
        "",
        header,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if cuda else ""),
    ]
    for m in measurements:
        row = (
            f"| {m.model} | {m.memory_format} | {m.precision} | {m.macs_per_image / 1e9:.2f} | "
            f"{m.median('inference') * 1e3:.0f} | {batch_size / m.median('inference'):.2f} | "
            f"{m.median('training') * 1e3:.0f} | {batch_size / m.median('training'):.2f} | "
            f"{m.peak_bytes['inference'] / 2**20:.0f} | {m.peak_bytes['training'] / 2**20:.0f} |"
        )
        lines.append(row + (f" {m.max_batch_size} |" if cuda else ""))

    lines += ["", "Ratios (time ratios from the medians):", ""]
    lines += ["| memory format | precision | quantity | value | target |", "|---|---|---|---:|---|"]
    by_key = {(m.model, m.memory_format, m.precision): m for m in measurements}
    for memory_format, precision in dict.fromkeys((m.memory_format, m.precision) for m in measurements):
        folded, straightforward, convnext = (
            by_key[(name, memory_format, precision)] for name in (FOLDED, STRAIGHTFORWARD, CONVNEXT)
        )
        lines += [
            f"| {memory_format} | {precision} | {quantity} | {value} | {target} |"
            for quantity, value, target in ratio_rows(folded, straightforward, convnext)
        ]

    lines += ["", "Per-round times (ms), in round order, for judging the noise:", ""]
    for m in measurements:
        for mode in MODES:
            times = ", ".join(f"{seconds * 1e3:.0f}" for seconds in m.seconds[mode])
            lines.append(f"- {m.model}, {m.memory_format}, {m.precision}, {mode}: {times}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.clock == "cpu" and args.device != "cpu":
        raise ValueError("--clock cpu measures host CPU time: use it with --device cpu.")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_at_start = load_average()
    measurements = measure(args)
    text = report(measurements, args, (load_at_start, load_average()))
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
