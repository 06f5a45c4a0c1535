"""`benchmarks/benchmark.py` is run on GPUs by users and on this CPU by us: its whole path (tiny models, every backend
and precision a GPU run uses, the batch-size search, the CUDA report) is checked here on the CPU."""

from functools import partial

import benchmark as benchmark_script
import pytest
import torch


def table_rows(text: str) -> dict[tuple[str, str, str], list[str]]:
    """The main table's rows by (model, backend, precision)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) >= 12 and cells[1] in ("eager", "compile", "compile-reduce-overhead"):
            rows[(cells[0], cells[1], cells[3])] = cells
    return rows


@pytest.mark.slow
def test_every_backend_and_precision_of_a_gpu_run_measures_on_the_cpu(tmp_path, monkeypatch):
    """Eager and `torch.compile(mode="reduce-overhead")` (with `aot_eager`, which traces what inductor would compile,
    in seconds), fp32 and bf16 autocast, inference and training: every cell of the report is measured, and every
    reduce-overhead step starts a CUDA-graph step. (`compile` differs from `compile-reduce-overhead` only by its
    mode.)"""
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    output = tmp_path / "report.md"
    measurements = benchmark_script.main(
        [
            "--size", "tiny", "--image-size", "64", "--batch-size", "2", "--num-labels", "6", "--device", "cpu",
            "--models", "hsvlt", "--backends", "eager,compile-reduce-overhead",
            "--compile-backend", "aot_eager", "--precisions", "fp32,bf16", "--repeats", "2", "--threads", "1",
            "--output", str(output),
        ]
    )  # fmt: skip
    cases = {
        ("HSVLT-S", backend, precision)
        for backend in ("eager", "compile-reduce-overhead")
        for precision in ("fp32", "bf16")
    }
    assert {(m.model, m.backend, m.precision) for m in measurements} == cases
    for m in measurements:
        assert m.macs_per_image > 0 and m.setup_seconds > 0
        assert all(len(m.seconds[mode]) == 2 and min(m.seconds[mode]) > 0 for mode in ("inference", "training"))
        assert m.peak_bytes["inference"] > 0 and m.peak_bytes["training"] > m.peak_bytes["inference"]
    text = output.read_text()
    assert set(table_rows(text)) == cases
    assert "a check of the code path, not a measurement" in text
    assert "Speed-up over eager" in text and "compile-reduce-overhead | training | contiguous | bf16" in text
    steps_per_case_and_mode = 1 + 1 + 1 + 1 + 2  # setup, warm-up, memory, the untimed step before the rounds, rounds
    assert len(marks) == 2 * 2 * steps_per_case_and_mode  # precisions x modes


@pytest.mark.parametrize("limit", [1, 37, 64, 1024])
@pytest.mark.parametrize("capacity", [0, 1, 5, 37, 64, 500])
def test_largest_batch_finds_the_capacity_in_logarithmic_tries(capacity, limit):
    tried = []

    def fits(batch_size):
        tried.append(batch_size)
        return batch_size <= capacity

    assert benchmark_script.largest_batch(fits, limit) == min(capacity, limit)
    assert max(tried) <= limit and len(tried) <= 2 * limit.bit_length() + 1


def test_an_out_of_memory_error_ends_the_batch_search(monkeypatch):
    """`fits_in_memory` runs the real training step; one that runs out of memory above 3 images is caught, so the
    search stops at 3 and the model keeps no gradients from the failed tries."""
    (model,) = benchmark_script.build_models(4, [benchmark_script.FOLDED], "tiny").values()
    real_step = benchmark_script.training_step

    def step_with_three_images_of_memory(model, inputs, precision, device):
        if inputs["pixel_values"].shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        real_step(model, inputs, precision, device)

    monkeypatch.setattr(benchmark_script, "training_step", step_with_three_images_of_memory)
    args = benchmark_script.parse_args(["--image-size", "64", "--num-labels", "4", "--device", "cpu"])
    fits = partial(
        benchmark_script.fits_in_memory,
        benchmark_script.FOLDED,
        model,
        args=args,
        memory_format="contiguous",
        precision="fp32",
    )
    assert benchmark_script.largest_batch(fits, limit=16) == 3
    assert all(parameter.grad is None for parameter in model.parameters())


def test_the_cuda_report_gives_the_largest_training_batch():
    args = benchmark_script.parse_args(["--device", "cuda", "--batch-size", "4", "--repeats", "1"])
    measurement = benchmark_script.Measurement(
        benchmark_script.FOLDED, "compile-reduce-overhead", "contiguous", "bf16", 4e10
    )
    measurement.seconds = {"inference": [0.02], "training": [0.08]}
    measurement.peak_bytes = {"inference": 2**30, "training": 3 * 2**30}
    measurement.max_batch_size = 48
    text = benchmark_script.report([measurement], args, "a GPU", ("0.1", "0.2"))
    header, _, row = [line for line in text.splitlines() if line.startswith("|")][:3]
    assert header.endswith("largest training batch |")
    assert row == (
        "| HSVLT-S | compile-reduce-overhead | contiguous | bf16 | 40.00 | 0 | 20 | 200.00 | 80 | 50.00 | 1024 | 3072 "
        "| 48 |"
    )
    assert "a GPU" in text and "torch.cuda.max_memory_allocated()" in text
