"""`benchmarks/labels.py`, the label-count scaling benchmark: its main path end to end on the tiny presets, and the
limits that keep it from building models that cannot fit."""

from types import SimpleNamespace

import labels as labels_benchmark
import pytest
import torch


def hsvlt_macs_per_label(config) -> int:
    """Multiply-adds of one more label in an HSVLT inference forward with the weight products: its projection into
    each stage, `6 C^2 + 2 H W C` in each block (the fused query/key and visual projections, the value/output
    product, `project_mm`, the gate's two layers, and the attention over the `H W` tokens), minus the last block's
    gate, which HSVLT does not have (the head's per-label dot products are not matrix products: not counted)."""
    in_sizes = [config.label_embedding_size, *config.hidden_sizes[:-1]]
    side = config.image_size // 4
    macs = -2 * config.hidden_sizes[-1] ** 2
    for stage, (depth, width) in enumerate(zip(config.depths, config.hidden_sizes, strict=True)):
        tokens = (side // 2**stage) ** 2
        macs += in_sizes[stage] * width + depth * (6 * width**2 + 2 * tokens * width)
    return macs


def test_main_measures_every_architecture_and_the_per_label_cost(tmp_path):
    threads = torch.get_num_threads()
    output = tmp_path / "labels.md"
    try:
        rows = labels_benchmark.main(
            ["--preset", "tiny", "--num-labels", "20", "5", "--training-labels", "20", "--repeats", "1"]
            + ["--output", str(output)]
        )
    finally:
        torch.set_num_threads(threads)
    assert [(row.architecture, row.num_labels) for row in rows] == [
        (name, count) for count in (5, 20) for name in ("hsvlt", "msrn", "patchct", "pvlr")
    ]
    by_key = {(row.architecture, row.num_labels): row for row in rows}
    for name in ("hsvlt", "msrn", "patchct", "pvlr"):
        small, large = by_key[name, 5], by_key[name, 20]
        assert not small.skipped and not large.skipped
        assert large.macs > small.macs and large.operations > 0 and small.inference_bytes > 0
        assert small.training_bytes is None and large.training_bytes > 0 and large.training_seconds > 0
    hsvlt_config = labels_benchmark.paper_size_model("hsvlt", 5, "tiny").config
    slope = (by_key["hsvlt", 20].macs - by_key["hsvlt", 5].macs) / 15
    assert slope == hsvlt_macs_per_label(hsvlt_config)

    report = output.read_text()
    assert "`tiny` preset" in report and "load average" in report and torch.__version__ in report
    table_rows = [line.split("|")[1:-1] for line in report.splitlines() if line.startswith("| hsvlt |")]
    gmacs_column = {int(cells[1]): float(cells[3]) for cells in table_rows if len(cells) == 8}
    assert gmacs_column == pytest.approx({5: by_key["hsvlt", 5].gmacs, 20: by_key["hsvlt", 20].gmacs}, rel=1e-3)
    per_label = next(cells for cells in table_rows if len(cells) == 3)
    assert float(per_label[1]) == pytest.approx(hsvlt_macs_per_label(hsvlt_config) / 1e9, rel=1e-3)
    assert per_label[2].strip() == "5 and 20 labels"


def fake_row(num_labels, parameters, seconds, training_bytes=None):
    return labels_benchmark.Row(
        "msrn", num_labels, parameters=parameters, inference_seconds=[seconds], training_bytes=training_bytes
    )


def test_label_counts_predicted_not_to_fit_are_skipped():
    """MSRN's head grows with the labels: 1.0 B parameters at 20 labels and 1.6 B at 80 predict 15 B at 1,000."""
    limits = SimpleNamespace(memory_limit=8.0, max_forward_seconds=180.0)
    rows = [fake_row(20, 1.0e9, 1.0), fake_row(80, 1.6e9, 2.0)]
    assert labels_benchmark.reason_to_skip(rows, 1000, limits) == (
        "predicted 10.8 B parameters, 43 GB of float32 weights"
    )
    assert labels_benchmark.reason_to_skip(rows[:1], 1000, limits) == ""  # one count predicts nothing
    slow = [fake_row(20, 1e6, 1.0), fake_row(80, 1e6, 10.0)]
    assert labels_benchmark.reason_to_skip(slow, 1000, limits) == ""  # 148 s predicted
    assert labels_benchmark.reason_to_skip(slow, 4000, limits) == "predicted 598 s of CPU per inference forward"
    training = [fake_row(80, 1e6, 1.0, 1e9), fake_row(1000, 1e6, 1.0, 3e9)]
    assert labels_benchmark.reason_not_to_train(training, 4000, limits) == "predicted peak 9.5 GB"
    assert labels_benchmark.reason_not_to_train(training, 2000, limits) == ""
