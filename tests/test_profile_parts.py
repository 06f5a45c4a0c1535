"""`benchmarks/profile_parts.py`: the CPU time and operations of a training step and of an inference forward of a tiny
HSVLT are attributed to every part (ConvNeXt, IVLA label side, CSA, head), and add up."""

import profile_parts
import pytest
import torch
from benchmark import inference_step, training_step
from conftest import tiny_config
from operations import AtenOperationCounter

from transformers_hsvlt import HSVLTForMultiLabelClassification


pytestmark = pytest.mark.usefixtures("one_thread")
MODEL_PARTS = (profile_parts.CONVNEXT, profile_parts.LABEL_SIDE, profile_parts.CSA, profile_parts.HEAD)


def tiny_model_and_step(mode, **overrides):
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config(**overrides))
    inputs = {"pixel_values": torch.rand(2, 3, 64, 64), "labels": torch.randint(0, 2, (2, 5)).float()}
    step = training_step if mode == "training" else inference_step
    return model, lambda: step(model, inputs, "fp32", "cpu")


def parameters_per_part(model):
    """How many parameters each part has, from their names."""
    counts = dict.fromkeys(MODEL_PARTS, 0)
    for name, _ in model.named_parameters():
        if name.startswith("classifier."):
            counts[profile_parts.HEAD] += 1
        elif any(f".{module}." in name for module in ("label_projection", "label_attention", "label_gate")):
            counts[profile_parts.LABEL_SIDE] += 1
        else:
            counts[profile_parts.CONVNEXT] += 1
    return counts


def dispatched_operations(step):
    with AtenOperationCounter() as counter:
        step()
    return counter.count


@pytest.mark.parametrize("mode", ["training", "inference"])
@pytest.mark.parametrize("overrides", [{}, {"num_attention_heads": 2}])  # one head: the label side as one Function
def test_every_part_gets_time_and_operations_and_they_add_up(mode, overrides):
    model, step = tiny_model_and_step(mode, **overrides)
    step()  # warm-up (the weight products of eager inference)
    parts = profile_parts.profile_steps(model, step, steps=2)
    phases = (profile_parts.FORWARD, profile_parts.BACKWARD) if mode == "training" else (profile_parts.FORWARD,)
    for part in MODEL_PARTS:
        for phase in phases:
            assert parts.milliseconds(part, phase) > 0, (part, phase)
            assert parts.operation_count(part, phase) >= 1, (part, phase)
    if mode == "inference":
        assert parts.milliseconds(phase=profile_parts.BACKWARD) == 0
    by_part = [parts.operation_count(part) for part in profile_parts.PARTS]
    assert sum(by_part) == parts.operation_count()
    assert sum(parts.milliseconds(part) for part in profile_parts.PARTS) == pytest.approx(parts.milliseconds())
    assert all(count == int(count) for count in by_part)  # the same operations in both profiled steps
    if not overrides:
        # as the operation-count test's dispatch counter counts them (which, where autograd saves an operation's output,
        # as in the label side of blocks with two heads, also counts `detach` calls made only under a dispatch mode)
        assert parts.operation_count() == dispatched_operations(step)
    if mode == "training":
        # the backward's nodes found their forward operations' parts: one gradient accumulation per parameter of the
        # part, every node of the hand-written label update on the label side
        accumulations = {part: parts.nodes[part, "torch::autograd::AccumulateGrad"] / 2 for part in MODEL_PARTS}
        assert accumulations == parameters_per_part(model)
        label_updates = {part for part, node in parts.nodes if node == "HSVLTLabelUpdateBackward"}
        assert label_updates == (set() if overrides else {profile_parts.LABEL_SIDE})
    lines = profile_parts.table(mode, parts, unprofiled_ms=1.0)
    assert lines[-3].startswith("| **total** |") and "100.0%" in lines[-3]


def test_part_scopes_are_removed_afterwards():
    model, step = tiny_model_and_step("inference")
    with profile_parts.part_scopes(model) as scopes:
        step()
        assert scopes.frames == []  # every scope opened during the forward was closed
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in model.modules())
    assert all("forward_flat" not in vars(module) for module in model.modules())


@pytest.mark.parametrize("mode", ["training", "inference"])
def test_the_label_side_configuration_changes_only_the_label_side(mode):
    """One IVLA head or two: other label-side operations (one head: SDPA in inference, one autograd Function in
    training), the same ConvNeXt, CSA and head: no label-side operation is attributed to another part."""
    counts = []
    for overrides in ({}, {"num_attention_heads": 2}):
        model, step = tiny_model_and_step(mode, **overrides)
        step()
        parts = profile_parts.profile_steps(model, step, steps=1)
        counts.append({part: parts.operation_count(part) for part in profile_parts.PARTS})
    one_head, two_heads = counts
    assert one_head[profile_parts.LABEL_SIDE] != two_heads[profile_parts.LABEL_SIDE]
    for part in (profile_parts.CONVNEXT, profile_parts.CSA, profile_parts.HEAD):
        assert one_head[part] == two_heads[part], part
