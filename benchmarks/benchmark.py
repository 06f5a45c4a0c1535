"""Speed, memory and MACs of HSVLT-S against a plain ConvNeXt-S, on one machine in one run (not a test).

Measured models (random weights, nothing is downloaded):

* `HSVLT-S`: `HSVLTForMultiLabelClassification(HSVLTConfig(num_labels=80, fold_label_attention=True))`, IVLA with
  the key/value projections folded onto the label queries; in eager inference with the cached weight products
  (`W_q^T W_k`, `W_p W_v`, `vis_project` fused with the queries, see `HSVLTWeightProducts`).
* `HSVLT-S straightforward`: the same weights with `fold_label_attention=False` (the authors' form).
* `ConvNeXt-S`: transformers' `ConvNextModel(ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[96, 192, 384, 768]))`,
  the visual hierarchy HSVLT-S is built on, without any label side.

Backends (`--backends`):

* `eager`: the PyTorch modules as they are.
* `compile`: `torch.compile(model)` (default mode), compiled separately for inference and training (the
  compilation time is reported, not timed). Under `torch.compile` HSVLT uses the folded form without cached products.
* `compile-reduce-overhead`: `torch.compile(model, mode="reduce-overhead")`: on CUDA the compiled graphs are recorded
  as CUDA graphs and replayed, which removes the per-kernel launch cost (each step starts with
  `torch.compiler.cudagraph_mark_step_begin()`); on the CPU it compiles like `compile`.
  `--compile-backend` chooses torch.compile's backend (`inductor` by default; `aot_eager` traces the same graphs
  without generating code, which checks the path in seconds but ignores the mode).
* `onnxruntime`: inference only. HSVLT-S exported with `transformers_hsvlt.export.export_onnx` (its weight products
  are folded into constants by ONNX Runtime when the session is created), ConvNeXt-S with `torch.onnx.export(...,
  dynamo=True)` of its pooled output; one `InferenceSession` (CPU provider, default graph optimisations,
  `intra_op_num_threads` = the torch thread count).

For every model, backend, memory format and precision it reports the multiply-accumulates per image
(`FlopCounterMode` FLOPs / 2, counted on an eager forward of the form the backend runs, after a warm-up forward so
that the one-time weight products are not counted), the median time of an inference forward (`eval()`,
`torch.no_grad()`) and of a training step (`train()`, forward + backward of a loss, gradients reset before each
step) over `--repeats` rounds, images/s, and for the PyTorch backends the peak memory of each step:

* CPU: the peak of the bytes held by torch's CPU allocator during the step, above what was held before it (weights,
  inputs), from the allocation and free events recorded by `torch.profiler.profile(profile_memory=True)` in an extra,
  untimed step. It counts tensors (activations, temporaries, gradients), not the C allocator's caches or the
  interpreter, so it is the CPU counterpart of `torch.cuda.max_memory_allocated`, not an RSS figure.
* CUDA: `torch.cuda.max_memory_allocated()` during the step minus the memory the weights and inputs held before
  the first step, so that the memory pools of CUDA graphs (allocated when they are recorded) are counted.

The cases are measured in interleaved rounds (each round times every case once, in an order rotated from round to
round) so that the load of a shared machine affects them alike; the medians over rounds are reported. All inference
rounds come first, then all training rounds, each phase after one untimed step per case: HSVLT-S's weight products
(dropped by `train()`) are computed once, as in real inference, not before every timed forward. Times are
wall-clock by default; `--clock cpu` times the CPU time of the process instead, which with `--threads 1` leaves out
the time the process waited for a CPU on a busy machine. `--busy-processes N` starts N busy-looping processes (a
machine shared with other work) before anything else and stops them at the end; `--threads auto` takes as many threads
as CPUs are idle then (`idle_cpus`). On CUDA it also measures bf16 autocast and
searches the largest training batch that fits in memory (doubling, then bisection on out-of-memory errors).

`--size tiny` measures four-stage models one block deep and 8-32 channels wide instead of the small ones: it checks the whole
path (a CUDA setup, a compile backend) in seconds; its figures mean nothing.

The runs behind `benchmarks/results.md` (CPU) are listed there.
"""

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import transformers
from torch import nn
from torch.profiler import profile
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode
from transformers import ConvNextConfig, ConvNextModel

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification
from transformers_hsvlt.export import export_onnx
from transformers_hsvlt.threads import idle_cpus


FOLDED, STRAIGHTFORWARD, CONVNEXT = "HSVLT-S", "HSVLT-S straightforward", "ConvNeXt-S"
MODEL_KEYS = {"hsvlt": FOLDED, "straightforward": STRAIGHTFORWARD, "convnext": CONVNEXT}
MODES = ("inference", "training")
COMPILE_MODES = {"compile": "default", "compile-reduce-overhead": "reduce-overhead"}
BACKENDS = ("eager", *COMPILE_MODES, "onnxruntime")
SIZES = {  # size -> (HSVLTConfig arguments, ConvNextConfig arguments)
    "small": ({}, {"depths": [3, 3, 27, 3], "hidden_sizes": [96, 192, 384, 768]}),
    "tiny": (
        {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32], "label_embedding_size": 12},
        {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]},
    ),
}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK_DESCRIPTIONS = {
    "wall": "wall-clock time (`time.perf_counter`)",
    "cpu": "CPU time of the process (`time.process_time`): with one thread, the time the step actually ran, without "
    "the time it waited for a CPU on a shared machine; with more threads it adds up the threads, spinning included",
}


@dataclass
class Measurement:
    """Everything measured for one model under one backend, memory format and precision."""

    model: str
    backend: str
    memory_format: str
    precision: str
    macs_per_image: float = 0.0
    setup_seconds: float = 0.0
    seconds: dict[str, list[float]] = field(default_factory=lambda: {mode: [] for mode in MODES})
    peak_bytes: dict[str, float] = field(default_factory=dict)
    max_batch_size: int | None = None

    def median(self, mode: str) -> float | None:
        return statistics.median(self.seconds[mode]) if self.seconds[mode] else None


@dataclass
class Case:
    """A measurement and the step functions that produce it (`mode -> step()`, only the supported modes)."""

    measurement: Measurement
    model: nn.Module
    steps: dict[str, Callable[[], None]]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--num-labels", type=int, default=80)
    parser.add_argument(
        "--threads",
        default=None,
        help="torch.set_num_threads: a number, or `auto` for the CPUs idle at the start (see `idle_cpus`); default: "
        "torch's choice (one per core).",
    )
    parser.add_argument("--repeats", type=int, default=5, help="Timed rounds; the median over rounds is reported.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps per case and mode before the rounds.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--models", default="hsvlt,straightforward,convnext", help=f"Comma-separated: {', '.join(MODEL_KEYS)}."
    )
    parser.add_argument("--backends", default="eager", help=f"Comma-separated: {', '.join(BACKENDS)}.")
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile's backend for the compile backends."
    )
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="small", help="small: HSVLT-S and ConvNeXt-S; tiny: a quick check."
    )
    parser.add_argument("--modes", default="inference,training", help="Comma-separated: inference, training.")
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
    parser.add_argument(
        "--busy-processes", type=int, default=0, help="Busy-looping processes competing for the CPUs during the rounds."
    )
    parser.add_argument("--no-memory", action="store_true", help="Skip the (untimed) peak-memory steps.")
    parser.add_argument("--max-batch-limit", type=int, default=1024, help="Upper bound of the CUDA batch-size search.")
    parser.add_argument("--output", default=None, help="Write the markdown report there (also printed).")
    return parser.parse_args(argv)


def build_models(num_labels: int, names: list[str], size: str = "small") -> dict[str, nn.Module]:
    """The measured models, HSVLT folded and straightforward sharing the same random weights."""
    torch.manual_seed(0)
    hsvlt_arguments, convnext_arguments = SIZES[size]

    def hsvlt(fold_label_attention: bool) -> HSVLTForMultiLabelClassification:
        config = HSVLTConfig(**hsvlt_arguments, num_labels=num_labels, fold_label_attention=fold_label_attention)
        return HSVLTForMultiLabelClassification(config)

    folded = hsvlt(fold_label_attention=True)
    models = {FOLDED: folded}
    if STRAIGHTFORWARD in names:
        models[STRAIGHTFORWARD] = hsvlt(fold_label_attention=False)
        models[STRAIGHTFORWARD].load_state_dict(folded.state_dict())
    if CONVNEXT in names:
        models[CONVNEXT] = ConvNextModel(ConvNextConfig(**convnext_arguments))
    return {name: models[name] for name in names}


def make_inputs(name: str, batch_size: int, image_size: int, num_labels: int, device: str, memory_format: str) -> dict:
    """Random images in [0, 1] (and random targets for HSVLT, whose training loss is its own BCE)."""
    generator = torch.Generator().manual_seed(batch_size)
    pixel_values = torch.rand(batch_size, 3, image_size, image_size, generator=generator).to(device)
    if memory_format == "channels_last":
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
    inputs = {"pixel_values": pixel_values}
    if name != CONVNEXT:
        labels = torch.randint(0, 2, (batch_size, num_labels), generator=generator)
        inputs["labels"] = labels.float().to(device)
    return inputs


def autocast(precision: str, device: str):
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inference_step(model: nn.Module, inputs: dict, precision: str, device: str) -> None:
    model.eval()
    with torch.no_grad(), autocast(precision, device):
        model(inputs["pixel_values"])


def training_step(model: nn.Module, inputs: dict, precision: str, device: str) -> None:
    """Forward + backward of HSVLT's own BCE on random targets, or of the mean square of ConvNeXt's pooled features."""
    model.train()
    model.zero_grad(set_to_none=True)
    with autocast(precision, device):
        if "labels" in inputs:
            loss = model(**inputs).loss
        else:
            loss = model(inputs["pixel_values"]).pooler_output.float().pow(2).mean()
    loss.backward()


class PooledOutput(nn.Module):
    """ConvNeXt reduced to `pixel_values -> pooler_output`, for its ONNX export."""

    def __init__(self, model: ConvNextModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values).pooler_output


def onnx_session(name: str, model: nn.Module, inputs: dict, directory: Path):
    """Export `model` and open an ONNX Runtime session on it (CPU provider, torch's thread count)."""
    import onnxruntime

    path = directory / f"{name.replace(' ', '_')}.onnx"
    batch_size, _, image_size, _ = inputs["pixel_values"].shape
    if name == CONVNEXT:
        with torch.no_grad():
            torch.onnx.export(
                PooledOutput(model).eval(),
                (inputs["pixel_values"].contiguous(),),
                path,
                input_names=["pixel_values"],
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    else:
        export_onnx(model, path, image_size=image_size, batch_size=batch_size, dynamic_batch=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def make_steps(case: Measurement, model: nn.Module, inputs: dict, modes: list[str], args, directory: Path) -> dict:
    """The step functions of one case; compiles or exports first (the time it takes goes to `setup_seconds`)."""
    device, precision = args.device, case.precision
    start = time.perf_counter()
    if case.backend == "onnxruntime":
        session = onnx_session(case.model, model, inputs, directory)
        feed = {"pixel_values": inputs["pixel_values"].contiguous().cpu().numpy()}
        steps = {"inference": lambda: session.run(None, feed)}
    else:
        runnable = compiled(model, case.backend, args.compile_backend)
        steps = {
            "inference": lambda: inference_step(runnable, inputs, precision, device),
            "training": lambda: training_step(runnable, inputs, precision, device),
        }
        if case.backend == "compile-reduce-overhead":
            steps = {mode: starting_a_cuda_graph_step(step) for mode, step in steps.items()}
    steps = {mode: step for mode, step in steps.items() if mode in modes}
    for step in steps.values():
        step()  # compiles, creates the weight products
    case.setup_seconds = time.perf_counter() - start
    return steps


def compiled(model: nn.Module, backend: str, compile_backend: str) -> nn.Module:
    """`model` as the backend runs it: itself for `eager`, else `torch.compile` with the backend's mode. Every case
    compiles the same forward functions again (for another model, mode or precision), so dynamo's limit on
    recompilations (8 by default, after which it silently runs the function eagerly) is raised to cover them."""
    if backend not in COMPILE_MODES:
        return model
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    return torch.compile(model, mode=COMPILE_MODES[backend], backend=compile_backend)


def starting_a_cuda_graph_step(step: Callable[[], None]) -> Callable[[], None]:
    """`step` preceded by `cudagraph_mark_step_begin()`: under `reduce-overhead` the outputs of a replayed CUDA graph
    live in its memory pool, and marking each step lets the next replay reuse that pool (a no-op on the CPU)."""

    def marked_step() -> None:
        torch.compiler.cudagraph_mark_step_begin()
        step()

    return marked_step


def count_cpu_flash_attention() -> None:
    """Make `FlopCounterMode` count SDPA's CPU kernel (it counts the CUDA ones only), which HSVLT's eager inference with
    one head runs."""
    operation = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if operation not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(operation)(
            lambda query, key, value, *args, out_shape=None, **kwargs: flop_counter.sdpa_flop_count(query, key, value)
        )


def count_macs(model: nn.Module, backend: str, inputs: dict, precision: str, device: str) -> float:
    """Multiply-accumulates per image of one eager forward of the form `backend` runs: the inference form (weight
    products, warmed up first) for `eager` and `onnxruntime`, the training form (folded, no products) for the compile
    backends."""
    count_cpu_flash_attention()
    counted = inference_step_in_training_form if backend in COMPILE_MODES else inference_step
    counted(model, inputs, precision, device)
    counter = FlopCounterMode(display=False)
    with counter:
        counted(model, inputs, precision, device)
    model.eval()
    return counter.get_total_flops() / 2 / inputs["pixel_values"].shape[0]


def inference_step_in_training_form(model: nn.Module, inputs: dict, precision: str, device: str) -> None:
    """A forward without gradients in training mode (drop path 0: the same outputs), which never uses the products."""
    model.train()
    with torch.no_grad(), autocast(precision, device):
        model(inputs["pixel_values"])


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


def cuda_peak_bytes(step, held_before_setup: int) -> float:
    """Peak of the CUDA memory allocated during `step()`, above what the weights and inputs held before the first step
    (so a CUDA graph's memory pool, allocated when the graph was recorded and held since, counts)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return float(torch.cuda.max_memory_allocated() - held_before_setup)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(step, device: str, clock: str) -> float:
    synchronize(device)
    start = CLOCKS[clock]()
    step()
    synchronize(device)
    return CLOCKS[clock]() - start


def fits_in_memory(name: str, model: nn.Module, batch_size: int, args, memory_format: str, precision: str) -> bool:
    """Whether one training step at `batch_size` runs without an out-of-memory error."""
    try:
        inputs = make_inputs(name, batch_size, args.image_size, args.num_labels, args.device, memory_format)
        training_step(model, inputs, precision, args.device)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


def largest_batch(fits: Callable[[int], bool], limit: int) -> int:
    """The largest batch size up to `limit` for which `fits(batch_size)` (0 if not even one image): doubling, then
    bisection between the last size that fitted and the first that did not."""
    low, high = 0, 1
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


@contextlib.contextmanager
def busy_processes(count: int):
    """`count` busy-looping Python processes for the duration of the block (stopped by their process ids)."""
    processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def prepare_cases(args, directory: Path) -> list[Case]:
    device, modes = args.device, args.modes.split(",")
    precisions = (args.precisions or ("fp32,bf16" if device.startswith("cuda") else "fp32")).split(",")
    models = build_models(args.num_labels, [MODEL_KEYS[key] for key in args.models.split(",")], args.size)
    cases = []
    for memory_format in args.memory_formats.split(","):
        layout = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
        for precision in precisions:
            for backend in args.backends.split(","):
                for name, model in models.items():
                    model = model.to(device=device, memory_format=layout)
                    measurement = Measurement(name, backend, memory_format, precision)
                    inputs = make_inputs(name, args.batch_size, args.image_size, args.num_labels, device, memory_format)
                    single = make_inputs(name, 1, args.image_size, args.num_labels, device, memory_format)
                    measurement.macs_per_image = count_macs(model, backend, single, precision, device)
                    model.zero_grad(set_to_none=True)
                    held_before_setup = torch.cuda.memory_allocated() if device.startswith("cuda") else 0
                    steps = make_steps(measurement, model, inputs, modes, args, directory)
                    for mode, step in steps.items():
                        for _ in range(args.warmup):
                            step()
                        if backend != "onnxruntime" and not args.no_memory:  # right after warm-up steps of the mode
                            model.zero_grad(set_to_none=True)
                            measurement.peak_bytes[mode] = (
                                cuda_peak_bytes(step, held_before_setup)
                                if device.startswith("cuda")
                                else cpu_peak_bytes(step)
                            )
                    cases.append(Case(measurement, model, steps))
                    print(f"prepared {name} ({backend}, {memory_format}, {precision})", flush=True)
    return cases


def measure(args) -> list[Measurement]:
    with tempfile.TemporaryDirectory() as directory:
        cases = prepare_cases(args, Path(directory))
        for mode in MODES:
            timed_cases = [case for case in cases if mode in case.steps]
            for step in (case.steps[mode] for case in timed_cases):
                step()  # e.g. HSVLT's weight products, dropped by the training steps, are computed again here
            for round_index in range(args.repeats):
                shift = round_index % max(len(timed_cases), 1)
                for case in timed_cases[shift:] + timed_cases[:shift]:
                    case.measurement.seconds[mode].append(timed(case.steps[mode], args.device, args.clock))
                print(f"{mode} round {round_index + 1}/{args.repeats} done", flush=True)
    if args.device.startswith("cuda"):
        for case in cases:
            m = case.measurement
            if m.backend == "eager":
                fits = partial(
                    fits_in_memory, m.model, case.model, args=args, memory_format=m.memory_format, precision=m.precision
                )
                m.max_batch_size = largest_batch(fits, args.max_batch_limit)
    return [case.measurement for case in cases]


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


def ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.3f}" if numerator and denominator else "n/a"


def ratio_rows(by_model: dict[str, Measurement]) -> list[tuple[str, str, str]]:
    """(quantity, value, target) rows comparing HSVLT-S with ConvNeXt-S and with the straightforward form."""
    folded, straightforward, convnext = (by_model.get(name) for name in (FOLDED, STRAIGHTFORWARD, CONVNEXT))
    rows = []
    if folded:
        rows.append(("GMACs / image, HSVLT-S", f"{folded.macs_per_image / 1e9:.2f}", "<= 40"))
    if folded and convnext:
        rows += [
            ("MACs, HSVLT-S / ConvNeXt-S", ratio(folded.macs_per_image, convnext.macs_per_image), ""),
            (
                "inference time, HSVLT-S / ConvNeXt-S",
                ratio(folded.median("inference"), convnext.median("inference")),
                "<= 1.2",
            ),
            (
                "training time, HSVLT-S / ConvNeXt-S",
                ratio(folded.median("training"), convnext.median("training")),
                "<= 1.2",
            ),
        ]
        if folded.peak_bytes.get("training") and convnext.peak_bytes.get("training"):
            rows.append(
                (
                    "peak training memory, HSVLT-S / ConvNeXt-S",
                    ratio(folded.peak_bytes["training"], convnext.peak_bytes["training"]),
                    "",
                )
            )
    if folded and straightforward:
        rows += [
            (
                "inference speed-up, HSVLT-S vs straightforward",
                ratio(straightforward.median("inference"), folded.median("inference")),
                "",
            ),
            (
                "training speed-up, HSVLT-S vs straightforward",
                ratio(straightforward.median("training"), folded.median("training")),
                "",
            ),
        ]
    return [row for row in rows if row[1] != "n/a"]


def backend_rows(measurements: list[Measurement]) -> list[str]:
    """Speed-ups of `compile` and `onnxruntime` over `eager`, per model, mode, memory format and precision."""
    by_key = {(m.model, m.backend, m.memory_format, m.precision): m for m in measurements}
    lines = []
    for m in measurements:
        eager = by_key.get((m.model, "eager", m.memory_format, m.precision))
        if m.backend == "eager" or eager is None:
            continue
        for mode in MODES:
            if m.median(mode) and eager.median(mode):
                speed_up = ratio(eager.median(mode), m.median(mode))
                lines.append(f"| {m.model} | {m.backend} | {mode} | {m.memory_format} | {m.precision} | {speed_up} |")
    return lines


def milliseconds(seconds: float | None) -> str:
    return f"{seconds * 1e3:.0f}" if seconds else "n/a"


def per_second(batch_size: int, seconds: float | None) -> str:
    return f"{batch_size / seconds:.2f}" if seconds else "n/a"


def mebibytes(value: float | None) -> str:
    return f"{value / 2**20:.0f}" if value is not None else "n/a"


def report(measurements: list[Measurement], args, machine: str, loads: tuple[str, str]) -> str:
    batch_size, cuda = args.batch_size, args.device.startswith("cuda")
    size = "" if args.size == "small" else f" `--size {args.size}`: a check of the code path, not a measurement."
    threads = " (`--threads auto`: the CPUs idle at the start)" if args.threads == "auto" else ""
    busy = f" {args.busy_processes} busy-looping process(es) of ours ran throughout." if args.busy_processes else ""
    setup = (
        f"{datetime.date.today().isoformat()}, {machine}{threads}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}. Batch {batch_size}, {args.image_size}x{args.image_size}, "
        f"{args.num_labels} labels; median of {args.repeats} interleaved rounds after {args.warmup} warm-up "
        f"step(s) per case and mode. Load average {loads[0]} at the start, {loads[1]} at the end.{busy} "
        f"Times are the {CLOCK_DESCRIPTIONS[args.clock]}. Produced by `benchmarks/benchmark.py`.{size}"
    )
    memory = (
        "`torch.cuda.max_memory_allocated()` during the step, above the memory allocated before it."
        if cuda
        else "peak of the bytes held by torch's CPU allocator during the step, above what it held before "
        "(weights, inputs), from `torch.profiler` allocation events: activations, temporaries and gradients, "
        "not an RSS figure (PyTorch backends only)."
    )
    header = (
        "| model | backend | memory format | precision | GMACs / image | setup s | inference ms | inference img/s "
        "| training ms | training img/s | peak MiB inference | peak MiB training |"
        + (" largest training batch |" if cuda else "")
    )
    modes = (
        "Inference: `eval()`, `torch.no_grad()`, one forward. Training: `train()`, forward + backward of a loss "
        "(HSVLT: its BCE; ConvNeXt: mean square of the pooled features). Setup: compilation or export + session "
        f"creation, and the first steps. Peak memory: {memory}"
    )
    lines = [
        "# HSVLT-S vs ConvNeXt-S: speed, memory and MACs",
        "",
        setup,
        "",
        modes,
        "",
        header,
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if cuda else ""),
    ]
    for m in measurements:
        row = (
            f"| {m.model} | {m.backend} | {m.memory_format} | {m.precision} | {m.macs_per_image / 1e9:.2f} | "
            f"{m.setup_seconds:.0f} | {milliseconds(m.median('inference'))} | "
            f"{per_second(batch_size, m.median('inference'))} | {milliseconds(m.median('training'))} | "
            f"{per_second(batch_size, m.median('training'))} | {mebibytes(m.peak_bytes.get('inference'))} | "
            f"{mebibytes(m.peak_bytes.get('training'))} |"
        )
        lines.append(row + (f" {m.max_batch_size} |" if cuda else ""))

    lines += ["", "Ratios (time ratios from the medians):", ""]
    lines += ["| backend | memory format | precision | quantity | value | target |", "|---|---|---|---|---:|---|"]
    groups: dict[tuple[str, str, str], dict[str, Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.backend, m.memory_format, m.precision), {})[m.model] = m
    for (backend, memory_format, precision), by_model in groups.items():
        lines += [
            f"| {backend} | {memory_format} | {precision} | {quantity} | {value} | {target} |"
            for quantity, value, target in ratio_rows(by_model)
        ]
    speed_ups = backend_rows(measurements)
    if speed_ups:
        lines += ["", "Speed-up over eager (eager median / backend median):", ""]
        lines += ["| model | backend | mode | memory format | precision | speed-up |", "|---|---|---|---|---|---:|"]
        lines += speed_ups

    lines += ["", "Per-round times (ms), in round order, for judging the noise:", ""]
    for m in measurements:
        for mode in MODES:
            if m.seconds[mode]:
                times = ", ".join(f"{seconds * 1e3:.0f}" for seconds in m.seconds[mode])
                lines.append(f"- {m.model}, {m.backend}, {m.memory_format}, {m.precision}, {mode}: {times}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[Measurement]:
    args = parse_args(argv)
    if args.clock == "cpu" and args.device != "cpu":
        raise ValueError("--clock cpu measures host CPU time: use it with --device cpu.")
    if "onnxruntime" in args.backends.split(",") and args.device != "cpu":
        raise ValueError("--backends onnxruntime runs on the CPU provider: use it with --device cpu.")
    with busy_processes(args.busy_processes):
        if args.threads is not None:
            torch.set_num_threads(idle_cpus() if args.threads == "auto" else int(args.threads))
        load_at_start = load_average()
        measurements = measure(args)
        load_at_end = load_average()
    text = report(measurements, args, machine_description(args), (load_at_start, load_at_end))
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return measurements


if __name__ == "__main__":
    main()
