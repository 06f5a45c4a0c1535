"""Where HSVLT-S's CPU time and operations go, per part (ConvNeXt, IVLA label side, CSA, head), for one training step
and one inference forward, from `torch.profiler` (not a test).

Measured model: HSVLT-S, `HSVLTConfig(num_labels=80)` with random weights (`build_models` of `benchmark.py`), batch 2,
448x448, fp32, CPU, one thread by default. A training step is `benchmark.training_step` (`train()`, forward + backward
of HSVLT's BCE on random targets), an inference forward `benchmark.inference_step` (`eval()`, `torch.no_grad()`; the
warm-up forward computes IVLA's weight products). After `--warmup` untimed steps of a mode, `--steps` steps run under
one `torch.profiler.profile` (CPU activity); the tables give means per step. The CPU time of the same steps without
the profiler (`time.process_time`, median) is given below each table, to compare with (the profiler's overhead and,
on a machine shared with other work, the time spent waiting for a CPU).

Parts:

* ConvNeXt: the stem, the downsampling layers and the ConvNeXt block of every HSVLT block (depthwise convolution,
  LayerNorm, MLP, layer scale, residual).
* IVLA label side: the label embeddings, the label projections of the stages, and in every block IVLA (label
  projections, attention over the block's tokens), the label residual and the label gate.
* CSA: cross-scale aggregation, the concatenation of every stage's multi-modal features per label.
* head: the per-label classifier and the loss.
* other: the rest: input checks, layout changes between stages, and in the backward the gradient of the loss
  (`ones_like`) and what the autograd engine runs outside its nodes.

Forward: the module hooks of `part_scopes` open `torch.profiler.record_function` scopes named `part: <part>` (module
class names as in `modeling_hsvlt.py`, `modeling_hsvlt_encoder.py` and `modeling_hsvlt_attention.py`, the same before
and after issue 21). The model
opens an `other` scope, which switches to `CSA` when `HSVLTModel` returns (CSA is a `torch.cat` in the model's
forward, no module) and to `head` when the classifier starts, so the loss counts for the head. Stages, blocks and the
stem open `ConvNeXt` scopes; a block's scope switches to the label side when its IVLA starts (forward pre-hook of
`HSVLTVisualLinguisticAttention`, or its `forward_flat` method, which the blocks call directly since issue 21) and
closes with the block. The autograd Functions with hand-written backwards of issue 21 (`HSVLTVisualUpdate`,
`HSVLTLabelUpdate`) appear in the profile under their names and count for their part (`FUNCTION_PARTS`). Every event
counts for the innermost part scope or Function around it.

Backward: each `autograd::engine::evaluate_function: <Node>` event carries the `sequence_nr` of its autograd node,
which the forward operation that created the node also carries (the last forward event with that number, as the
number is only taken when a node is created): the node's events count for that operation's part. Gradient
accumulation into the parameters (`AccumulateGrad`, no sequence number) counts for the part of the node evaluated
just before it (the engine runs a parameter's `AccumulateGrad` as soon as its gradient is ready).

CPU time: the self CPU time of every event (its time minus its children's), summed per part, so that nothing counts
twice and the Python code between operations counts for the scope it runs in. The profiler times intervals on the
wall clock: on a machine shared with other work they include the time the thread waited for a CPU, which the CPU
time of the unprofiled steps leaves out. Operations: counted as `AtenOperationCounter` (a `TorchDispatchMode`) in
`tests/test_performance.py` counts them: every aten operation called from Python or by autograd, views included,
where an operation that is only a composition of others (`CompositeImplicitAutograd`: `linear`, `matmul`,
`softmax`, ...) counts as the operations it calls, and what an operation's kernel calls itself is not counted. Where
autograd saves an operation's output for the backward (softmax, relu, tanh), the dispatch mode also counts a
`detach` when it is saved and when it is unpacked, which only happen under a dispatch mode: the code before issue 21
has 212 of them in a training step of HSVLT-S at 448x448 (the dispatch mode counts 9,050, this script 8,838), the
code after it none.

On another checkout of the package (e.g. the code before issue 21), run this script with that checkout's sources
first on the path:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/profile_parts.py --label main --output /tmp/parts_main.md
    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/other/checkout/src python benchmarks/profile_parts.py --label before

The runs behind `benchmarks/results.md` ("Per-part profile (issue 21)") are listed there.
"""

import argparse
import contextlib
import datetime
import functools
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import transformers
from benchmark import FOLDED, build_models, inference_step, load_average, make_inputs, training_step
from torch import nn
from torch.autograd.profiler import record_function
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile


CONVNEXT, LABEL_SIDE, CSA, HEAD, OTHER = "ConvNeXt", "IVLA label side", "CSA", "head", "other"
PARTS = (CONVNEXT, LABEL_SIDE, CSA, HEAD, OTHER)
FORWARD, BACKWARD = "forward", "backward"
SCOPE_PREFIX = "part: "
NODE_PREFIX = "autograd::engine::evaluate_function: "

OPENED_BY = {
    "HSVLTForMultiLabelClassification": OTHER,
    "HSVLTEmbeddings": CONVNEXT,
    "HSVLTLabelEmbeddings": LABEL_SIDE,
    "HSVLTStage": CONVNEXT,
    "HSVLTLayer": CONVNEXT,
}
"""Module class -> the part of the scope its forward opens (and closes when it returns)."""
OPENED_BY_NAME = {"label_projection": LABEL_SIDE}
"""Module attribute name -> the part of the scope its forward opens (the stages' label projections are `nn.Linear`)."""
SWITCHED_BEFORE = {
    "HSVLTVisualLinguisticAttention": LABEL_SIDE,
    "HSVLTLabelResidualGate": LABEL_SIDE,
    "HSVLTLabelwiseHead": HEAD,
}
"""Module class -> the part the innermost open scope switches to when its forward starts."""
SWITCHED_AFTER = {"HSVLTModel": CSA}
"""Module class -> the part the innermost open scope switches to when its forward returns."""
SWITCHING_METHODS = {"HSVLTVisualLinguisticAttention": "forward_flat"}
"""Module class -> a method that blocks call directly (no module hook fires), which switches like `SWITCHED_BEFORE`."""
FUNCTION_PARTS = {"HSVLTVisualUpdate": CONVNEXT, "HSVLTLabelUpdate": LABEL_SIDE}
"""Autograd Functions (by name, as the profiler records their forward) -> their part."""


class PartScopes:
    """Open `record_function` scopes named after parts: one frame per open module scope, whose scope `switch` closes
    and replaces by another part's (the frames stay nested, so the profiler's event tree stays a tree)."""

    def __init__(self):
        self.frames: list[tuple[str, record_function]] = []

    @staticmethod
    def _open(part: str) -> tuple[str, record_function]:
        scope = record_function(SCOPE_PREFIX + part)
        scope.__enter__()
        return part, scope

    def enter(self, part: str) -> None:
        self.frames.append(self._open(part))

    def exit(self) -> None:
        self.frames.pop()[1].__exit__(None, None, None)

    def switch(self, part: str) -> None:
        if self.frames[-1][0] != part:
            self.exit()
            self.enter(part)


@contextlib.contextmanager
def part_scopes(model: nn.Module) -> Iterator[PartScopes]:
    """Hooks (and method wrappers, see `SWITCHING_METHODS`) on `model`'s modules that open and switch the part scopes
    during its forwards; removed at the end."""
    scopes, handles, wrapped = PartScopes(), [], []
    for name, module in model.named_modules():
        kind = type(module).__name__
        opened = OPENED_BY.get(kind) or OPENED_BY_NAME.get(name.rsplit(".", 1)[-1])
        if opened:
            handles.append(module.register_forward_pre_hook(lambda module, args, part=opened: scopes.enter(part)))
            handles.append(module.register_forward_hook(lambda module, args, output: scopes.exit()))
        if kind in SWITCHED_BEFORE:
            part = SWITCHED_BEFORE[kind]
            handles.append(module.register_forward_pre_hook(lambda module, args, part=part: scopes.switch(part)))
        if kind in SWITCHED_AFTER:
            part = SWITCHED_AFTER[kind]
            handles.append(module.register_forward_hook(lambda module, args, output, part=part: scopes.switch(part)))
        method_name = SWITCHING_METHODS.get(kind)
        if method_name and hasattr(module, method_name):
            setattr(module, method_name, _switching(scopes, SWITCHED_BEFORE[kind], getattr(module, method_name)))
            wrapped.append((module, method_name))
    try:
        yield scopes
    finally:
        for handle in handles:
            handle.remove()
        for module, method_name in wrapped:
            delattr(module, method_name)


def _switching(scopes: PartScopes, part: str, method: Callable) -> Callable:
    @functools.wraps(method)
    def switched(*args, **kwargs):
        scopes.switch(part)
        return method(*args, **kwargs)

    return switched


@functools.cache
def is_composite(name: str) -> bool:
    """Whether the aten operation `name` (e.g. `aten::linear`) only runs other operations: every overload but the
    `out=` ones is `CompositeImplicitAutograd` (the profiler records no overload names)."""
    packet = getattr(torch.ops.aten, name.removeprefix("aten::"), None)
    if packet is None:
        return False
    flags = []
    for overload in packet.overloads():
        if overload.endswith("out"):
            continue
        qualified = name if overload == "default" else f"{name}.{overload}"
        with contextlib.suppress(RuntimeError):  # overloads listed but not registered with the dispatcher
            flags.append(torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CompositeImplicitAutograd"))
    return bool(flags) and all(flags)


def is_counted_operation(event: FunctionEvent) -> bool:
    return event.name.startswith("aten::") and not is_composite(event.name)


@dataclass
class PartProfile:
    """Self CPU time (microseconds) and operations per `(part, phase)`, and the autograd nodes evaluated in the backward
    per `(part, node name)`, summed over `steps` profiled steps."""

    steps: int
    cpu_us: Counter = field(default_factory=Counter)
    operations: Counter = field(default_factory=Counter)
    nodes: Counter = field(default_factory=Counter)

    def milliseconds(self, part: str | None = None, phase: str | None = None) -> float:
        return _total(self.cpu_us, part, phase) / 1e3 / self.steps

    def operation_count(self, part: str | None = None, phase: str | None = None) -> float:
        return _total(self.operations, part, phase) / self.steps


def _total(counts: Counter, part: str | None, phase: str | None) -> float:
    return sum(
        value
        for (key_part, key_phase), value in counts.items()
        if part in (None, key_part) and phase in (None, key_phase)
    )


def attribute(events: list[FunctionEvent], steps: int) -> PartProfile:
    """Self CPU time and operations of the profiled `events` per part and phase (see the module docstring): the trees
    under a part scope are the forward, all other trees (autograd nodes, the gradient of the loss) the backward."""
    result = PartProfile(steps)
    node_parts: dict[int, str] = {}  # sequence number -> part of the forward event that created the node
    last_node_part = OTHER

    def part_of(event: FunctionEvent, part: str, phase: str) -> str:
        nonlocal last_node_part
        if phase == FORWARD:
            if event.name.startswith(SCOPE_PREFIX):
                part = event.name.removeprefix(SCOPE_PREFIX)
            part = FUNCTION_PARTS.get(event.name, part)
            if event.sequence_nr >= 0:
                node_parts[event.sequence_nr] = part  # visited in time order: the last event with it created the node
        elif event.name.startswith(NODE_PREFIX):
            if event.sequence_nr >= 0:
                last_node_part = node_parts.get(event.sequence_nr, OTHER)
            part = last_node_part  # `AccumulateGrad` runs right after the node that gave the gradient
            result.nodes[part, event.name.removeprefix(NODE_PREFIX)] += 1
        return part

    def visit(event: FunctionEvent, part: str, phase: str, inside_operation: bool) -> None:
        part = part_of(event, part, phase)
        result.cpu_us[part, phase] += event.self_cpu_time_total
        result.operations[part, phase] += not inside_operation and is_counted_operation(event)
        inside_operation = inside_operation or is_counted_operation(event)
        for child in sorted(event.cpu_children, key=lambda child: child.time_range.start):
            visit(child, part, phase, inside_operation)

    for root in sorted((event for event in events if event.cpu_parent is None), key=lambda e: e.time_range.start):
        visit(root, OTHER, FORWARD if root.name.startswith(SCOPE_PREFIX) else BACKWARD, False)
    return result


def profile_steps(model: nn.Module, step: Callable[[], None], steps: int) -> PartProfile:
    """Run `step()` `steps` times under `torch.profiler` with `model`'s part scopes and attribute the events."""
    with part_scopes(model), profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    return attribute(list(profiler.events()), steps)


def unprofiled_milliseconds(step: Callable[[], None], steps: int) -> float:
    """Median CPU time of the process over `steps` runs of `step()`, without the profiler."""
    times = []
    for _ in range(steps):
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="", help="Which code was profiled (e.g. `before`, `after`), for the title.")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--num-labels", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps per mode before the profiled ones.")
    parser.add_argument("--steps", type=int, default=3, help="Profiled steps per mode (and unprofiled, timed ones).")
    parser.add_argument("--modes", default="training,inference", help="Comma-separated: training, inference.")
    parser.add_argument("--output", default=None, help="Write the markdown report there (also printed).")
    return parser.parse_args(argv)


def table(mode: str, parts: PartProfile, unprofiled_ms: float) -> list[str]:
    """The markdown table of one mode: per part forward and backward ms, share of the CPU time, operations."""
    total_ms = parts.milliseconds()
    backward = mode == "training"
    header = "| part | forward ms | backward ms | share | operations (forward + backward) |"
    if not backward:
        header = "| part | forward ms | share | operations |"
    lines = [header, "|---|---:|---:|---:|---:|" if backward else "|---|---:|---:|---:|"]
    for part in (*PARTS, None):
        name = part or "**total**"
        forward_ms, backward_ms = parts.milliseconds(part, FORWARD), parts.milliseconds(part, BACKWARD)
        share = f"{100 * (forward_ms + backward_ms) / total_ms:.1f}%"
        operations = parts.operation_count(part)
        if backward:
            split = f"{parts.operation_count(part, FORWARD):,.0f} + {parts.operation_count(part, BACKWARD):,.0f}"
            lines.append(f"| {name} | {forward_ms:,.1f} | {backward_ms:,.1f} | {share} | {operations:,.0f} ({split}) |")
        else:
            lines.append(f"| {name} | {forward_ms:,.1f} | {share} | {operations:,.0f} |")
    lines += ["", f"Without the profiler: {unprofiled_ms:,.0f} ms of CPU time per step (median of the same steps)."]
    return lines


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_models(args.num_labels, [FOLDED])[FOLDED]
    inputs = make_inputs(FOLDED, args.batch_size, args.image_size, args.num_labels, "cpu", "contiguous")
    step_functions = {
        "training": lambda: training_step(model, inputs, "fp32", "cpu"),
        "inference": lambda: inference_step(model, inputs, "fp32", "cpu"),
    }
    loads, sections = [load_average()], []
    for mode in args.modes.split(","):
        step = step_functions[mode]
        for _ in range(args.warmup):
            step()
        parts = profile_steps(model, step, args.steps)
        unprofiled_ms = unprofiled_milliseconds(step, args.steps)
        loads.append(load_average())
        title = "Training step (forward + backward)" if mode == "training" else "Inference forward (eval, no_grad)"
        sections += [f"### {title}, {args.label}".rstrip(", "), "", *table(mode, parts, unprofiled_ms), ""]
    setup = (
        f"{datetime.date.today().isoformat()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} thread(s). HSVLT-S, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"{args.num_labels} labels, fp32; mean of {args.steps} profiled steps after {args.warmup} warm-up step(s) per "
        f"mode; self CPU times from `torch.profiler`. Load average (1 min) {', '.join(loads)} at the start and after "
        f"each mode. Produced by `benchmarks/profile_parts.py`."
    )
    text = "\n".join([setup, "", *sections])
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
