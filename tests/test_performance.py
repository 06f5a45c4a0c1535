"""Speed-related forms of the model give the same numbers: folded vs straightforward IVLA, channels-last, bf16 autocast,
torch.compile, gradient checkpointing (also through Trainer)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from operations import AtenOperationCounter
from reference_hsvlt import random_authors_state_dict, reference_logits
from transformers import ConvNextConfig, ConvNextForImageClassification

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification
from transformers_hsvlt.hsvlt.conversion import convert_authors_state_dict, rename_authors_key
from transformers_hsvlt.modeling_hsvlt_attention import HSVLTVisualLinguisticAttention
from transformers_hsvlt.modeling_hsvlt_encoder import HSVLTLayer
from transformers_hsvlt.multilabel_losses import multilabel_loss


def count_cpu_flash_attention():
    """`FlopCounterMode` counts SDPA's CUDA kernels but not the CPU one that eager inference with one head runs."""
    from torch.utils import flop_counter

    operation = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if operation not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(operation)(
            lambda query, key, value, *args, out_shape=None, **kwargs: flop_counter.sdpa_flop_count(query, key, value)
        )


def build_pair(**overrides):
    """A folded and a straightforward model with the same weights, in train mode (drop path 0: deterministic)."""
    torch.manual_seed(0)
    folded = HSVLTForMultiLabelClassification(tiny_config(fold_label_attention=True, **overrides))
    straightforward = HSVLTForMultiLabelClassification(tiny_config(fold_label_attention=False, **overrides))
    straightforward.load_state_dict(folded.state_dict())
    return folded.train(), straightforward.train()


def loss_and_gradients(model, pixel_values, labels, **kwargs):
    model.zero_grad(set_to_none=True)
    outputs = model(pixel_values, labels=labels, **kwargs)
    outputs.loss.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return outputs, gradients


def assert_same_gradients(actual, expected, rtol=1e-5, atol=1e-5):
    assert actual.keys() == expected.keys()
    for name, gradient in expected.items():
        try:
            torch.testing.assert_close(actual[name], gradient, rtol=rtol, atol=atol)
        except AssertionError as error:
            raise AssertionError(f"gradient of {name}: {error}") from None


@pytest.mark.parametrize(
    "overrides, batch_size, image_size",
    [
        ({}, 2, 64),
        ({"num_attention_heads": 2}, 3, 64),
        ({"num_attention_heads": 4, "hidden_sizes": [8, 16, 24, 32]}, 2, 96),
        ({"num_attention_heads": 2, "depths": [2, 1], "hidden_sizes": [12, 20], "label_embedding_size": 7}, 2, 40),
        ({"num_attention_heads": 4, "depths": [1, 1, 1], "hidden_sizes": [16, 24, 40], "patch_size": 2}, 1, 48),
    ],
)
def test_folded_attention_matches_straightforward(overrides, batch_size, image_size):
    """Same logits, attention maps, loss and gradients of every parameter, for 1, 2 and 4 heads and several widths."""
    folded, straightforward = build_pair(**overrides)
    pixel_values = torch.rand(batch_size, 3, image_size, image_size)
    labels = torch.randint(0, 2, (batch_size, folded.config.num_labels)).float()
    kwargs = {"labels": labels, "output_attentions": True}
    folded_outputs, folded_gradients = loss_and_gradients(folded, pixel_values, **kwargs)
    expected_outputs, expected_gradients = loss_and_gradients(straightforward, pixel_values, **kwargs)
    torch.testing.assert_close(folded_outputs.logits, expected_outputs.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(folded_outputs.loss, expected_outputs.loss, rtol=1e-5, atol=1e-5)
    for actual, expected in zip(folded_outputs.attentions, expected_outputs.attentions, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert_same_gradients(folded_gradients, expected_gradients)
    assert expected_outputs.logits.std() > 0.01
    # every IVLA weight receives a gradient, so the comparison covers the folded key and value products
    assert any(name.endswith("label_attention.key.weight") for name in folded_gradients)
    assert any(name.endswith("label_attention.value.weight") for name in folded_gradients)


@pytest.mark.parametrize("num_heads, num_labels, num_tokens", [(1, 80, 49), (3, 7, 200), (2, 1, 1)])
def test_attention_forms_agree_at_module_level(num_heads, num_labels, num_tokens):
    """Including shapes where folding is not the cheaper form (more labels than tokens, several heads)."""
    config = tiny_config(num_attention_heads=num_heads, hidden_sizes=[12, 12, 12, 12])
    torch.manual_seed(0)
    attention = HSVLTVisualLinguisticAttention(config, dim=12)
    label_features, visual_tokens = torch.randn(2, num_labels, 12), torch.randn(2, num_tokens, 12)
    config.fold_label_attention = True
    folded, folded_map = attention(label_features, visual_tokens, output_attentions=True)
    config.fold_label_attention = False
    expected, expected_map = attention(label_features, visual_tokens, output_attentions=True)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(folded_map, expected_map, rtol=1e-5, atol=1e-6)
    assert folded_map.shape == (2, num_heads, num_labels, num_tokens)
    assert attention(label_features, visual_tokens)[1] is None


def test_channels_last_gives_the_same_outputs_without_copying_tokens():
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).eval()
    pixel_values = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(pixel_values, output_hidden_states=True)
    model.to(memory_format=torch.channels_last)
    blocks = []
    for layer in model.modules():
        if isinstance(layer, HSVLTLayer):
            layer.register_forward_hook(lambda module, args, output: blocks.append((args[0], output[0])))
    with torch.no_grad():
        outputs = model(pixel_values.contiguous(memory_format=torch.channels_last), output_hidden_states=True)
    torch.testing.assert_close(outputs.logits, expected.logits, rtol=1e-5, atol=1e-6)
    for actual, reference in zip(outputs.hidden_states, expected.hidden_states, strict=True):
        torch.testing.assert_close(actual, reference, rtol=1e-5, atol=1e-5)
        assert actual.is_contiguous(memory_format=torch.channels_last)
    assert len(blocks) == sum(model.config.depths)
    for block_input, block_output in blocks:
        # (B, H, W, C) maps, contiguous: the tokens (B, H*W, C) and the pointwise rows are views, not copies
        assert block_input.is_contiguous() and block_output.is_contiguous()


def test_bf16_autocast_forward_and_backward():
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).train()
    pixel_values = torch.rand(2, 3, 64, 64)
    labels = torch.randint(0, 2, (2, model.config.num_labels)).float()
    expected, expected_gradients = loss_and_gradients(model, pixel_values, labels)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(pixel_values, labels=labels, output_attentions=True)
    outputs.loss.backward()
    assert all(features.dtype == torch.bfloat16 for features in outputs.multimodal_features)
    assert all(attention.dtype == torch.bfloat16 for attention in outputs.attentions)
    torch.testing.assert_close(outputs.logits.float(), expected.logits, rtol=0.05, atol=0.02)
    torch.testing.assert_close(outputs.loss.float(), expected.loss, rtol=0.02, atol=0.01)
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert gradients.keys() == expected_gradients.keys()
    assert all(gradient.dtype == torch.float32 and torch.isfinite(gradient).all() for gradient in gradients.values())
    cosine = torch.nn.functional.cosine_similarity(
        torch.cat([g.flatten() for g in gradients.values()]),
        torch.cat([expected_gradients[name].flatten() for name in gradients]),
        dim=0,
    )
    assert cosine > 0.99


@pytest.mark.parametrize("output_attentions", [False, True])
@pytest.mark.slow
def test_torch_compile_fullgraph_inference(output_attentions):
    """`fullgraph=True` raises on any graph break (input checks, block loop, outputs); the eager backend keeps the test
    fast while tracing exactly what inductor would get. Under `torch.compile` the folded form runs without the eager
    weight products, so the outputs agree to float rounding."""
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config(num_attention_heads=2)).eval()
    pixel_values = torch.rand(2, 3, 64, 64)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected = model(pixel_values, output_attentions=output_attentions)
        outputs = compiled(pixel_values, output_attentions=output_attentions)
    torch.testing.assert_close(outputs.logits, expected.logits, rtol=1e-5, atol=1e-6)
    if output_attentions:
        assert len(outputs.attentions) == sum(model.config.depths)
        for actual, reference in zip(outputs.attentions, expected.attentions, strict=True):
            torch.testing.assert_close(actual, reference, rtol=1e-5, atol=1e-6)
    else:
        assert outputs.attentions is None


@pytest.mark.slow
def test_torch_compile_fullgraph_training_step():
    """Forward and backward through AOTAutograd (the autograd graph inductor compiles), without graph breaks. The loss
    is computed outside the compiled graph: the shared loss checks the label values (a data-dependent branch)."""
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).train()
    pixel_values = torch.rand(2, 3, 64, 64)
    labels = torch.randint(0, 2, (2, model.config.num_labels)).float()
    expected, expected_gradients = loss_and_gradients(model, pixel_values, labels)
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    outputs = compiled(pixel_values)
    multilabel_loss(outputs.logits, labels, model.config).backward()
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    torch.testing.assert_close(outputs.logits, expected.logits, rtol=1e-6, atol=1e-6)
    assert_same_gradients(gradients, expected_gradients)


@pytest.mark.slow
def test_inductor_compiles_one_block():
    """Inductor (the default backend) lowers a whole block, attention map included; one small block keeps the
    compilation time to seconds."""
    torch.manual_seed(0)
    layer = HSVLTLayer(tiny_config(num_attention_heads=2), dim=16).eval()
    hidden_states, label_features = torch.randn(2, 8, 8, 16), torch.randn(2 * 5, 16)
    compiled = torch.compile(layer, fullgraph=True)
    with torch.no_grad():
        expected = layer(hidden_states, label_features, True)
        outputs = compiled(hidden_states, label_features, True)
    for actual, reference in zip(outputs, expected, strict=True):
        torch.testing.assert_close(actual, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_activation_checkpointing_kwargs_give_same_gradients(use_reentrant):
    """What `Trainer(gradient_checkpointing=True, gradient_checkpointing_kwargs=...)` turns on."""
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).train()
    pixel_values = torch.rand(2, 3, 64, 64)
    labels = torch.randint(0, 2, (2, model.config.num_labels)).float()
    expected, expected_gradients = loss_and_gradients(model, pixel_values, labels)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert all(layer.gradient_checkpointing for layer in model.modules() if isinstance(layer, HSVLTLayer))
    outputs, gradients = loss_and_gradients(model, pixel_values, labels)
    torch.testing.assert_close(outputs.logits, expected.logits, rtol=0, atol=0)
    # reentrant checkpointing gives zeros instead of `None` to the parameters the loss does not use (the last gate)
    unused = gradients.keys() - expected_gradients.keys()
    assert all(not gradients.pop(name).any() for name in unused)
    assert_same_gradients(gradients, expected_gradients, rtol=1e-5, atol=1e-6)


def test_trainer_with_activation_checkpointing(tmp_path):
    """`TrainingArguments(activation_checkpointing=True)` (formerly `gradient_checkpointing`, still an alias)."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    dataset = [
        {"pixel_values": torch.rand(3, 64, 64), "labels": torch.randint(0, 2, (model.config.num_labels,)).float()}
        for _ in range(4)
    ]
    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": True},
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-3,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    result = Trainer(model=model, args=arguments, train_dataset=dataset).train()
    assert all(layer.gradient_checkpointing for layer in model.modules() if isinstance(layer, HSVLTLayer))
    assert torch.isfinite(torch.tensor(result.training_loss))
    changed = [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert any(".label_attention.key." in name for name in changed)
    assert any(".pwconv1." in name for name in changed)


def attention_modules(model):
    return [module for module in model.modules() if isinstance(module, HSVLTVisualLinguisticAttention)]


def straightforward_logits(model, pixel_values):
    """Logits of the authors' form (no folding, no weight products) with `model`'s current weights, in float64."""
    config = copy.deepcopy(model.config)
    config.fold_label_attention = False
    reference = HSVLTForMultiLabelClassification(config).double().eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        return reference(pixel_values.double()).logits


def cached_logits(model, pixel_values):
    """Logits of an eval-mode model without gradients, so with the weight products."""
    with torch.no_grad():
        return model.eval()(pixel_values).logits


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_weight_products_match_the_straightforward_form(num_heads):
    torch.manual_seed(0)
    config = tiny_config(num_attention_heads=num_heads, fold_label_attention=True)
    model = HSVLTForMultiLabelClassification(config).eval()
    pixel_values = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        outputs = model(pixel_values, output_attentions=True)
    assert all(module.weight_products is not None for module in attention_modules(model))
    expected = straightforward_logits(model, pixel_values)
    torch.testing.assert_close(outputs.logits.double(), expected, rtol=1e-5, atol=1e-5)
    assert expected.std() > 0.01
    model.train()  # the training form gives the same attention maps
    with torch.no_grad():
        training_form = model(pixel_values, output_attentions=True)
    for actual, reference in zip(outputs.attentions, training_form.attentions, strict=True):
        torch.testing.assert_close(actual, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_heads, used", [(1, True), (4, False)])
def test_weight_products_only_where_they_save_work(num_heads, used):
    """With `fold_label_attention=None`, the products are computed only in blocks where the folded form with them
    costs fewer multiply-adds: always with one head, never for the tiny 4-head model (5 labels, 4-256 tokens)."""
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config(num_attention_heads=num_heads)).eval()
    cached_logits(model, torch.rand(1, 3, 64, 64))
    assert all((module.weight_products is not None) == used for module in attention_modules(model))


def test_weight_products_save_label_side_work():
    """Counted multiply-adds: the products remove `2 * K * C^2` per block (query-key and value-proj products)."""
    from torch.utils.flop_counter import FlopCounterMode

    count_cpu_flash_attention()

    torch.manual_seed(0)
    config = tiny_config(fold_label_attention=True)
    model = HSVLTForMultiLabelClassification(config)
    pixel_values = torch.rand(1, 3, 64, 64)

    def macs(training):
        model.train(training)
        with torch.no_grad():
            model(pixel_values)  # computes the products (once) where they are used
            counter = FlopCounterMode(display=False)
            with counter:
                model(pixel_values)
        return counter.get_total_flops() // 2

    saved = sum(
        2 * config.num_labels * width**2
        for depth, width in zip(config.depths, config.hidden_sizes)
        for _ in range(depth)
    )
    assert macs(training=True) - macs(training=False) == saved


def test_weight_products_are_never_used_in_training_or_with_gradients():
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config())
    pixel_values, labels = torch.rand(2, 3, 64, 64), torch.randint(0, 2, (2, 5)).float()
    model.train()
    with torch.no_grad():
        model(pixel_values)
    assert all(module.weight_products is None for module in attention_modules(model))
    model.eval()
    model(pixel_values, labels=labels).loss.backward()  # eval mode with gradients: the weights themselves are used
    assert all(module.weight_products is None for module in attention_modules(model))
    assert all(
        module.key.weight.grad is not None and module.key.weight.grad.abs().sum() > 0
        for module in attention_modules(model)
    )
    model.eval()
    cached_logits(model, pixel_values)
    assert all(module.weight_products is not None for module in attention_modules(model))
    kept = [module.weight_products for module in attention_modules(model)]
    model.eval()
    assert all(module.weight_products is products for module, products in zip(attention_modules(model), kept))
    model.train()
    assert all(module.weight_products is None for module in attention_modules(model))  # train() drops them


def _optimizer_step(model):
    """In eval mode (no `train()` call, which would drop the products): the version counters must catch the update."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = model(torch.rand(2, 3, 64, 64), labels=torch.randint(0, 2, (2, 5)).float()).loss
    loss.backward()
    optimizer.step()


def _load_state_dict(model, assign=False):
    torch.manual_seed(1)
    other = HSVLTForMultiLabelClassification(tiny_config())
    model.load_state_dict(other.state_dict(), assign=assign)


def _in_place_edit(model):
    with torch.no_grad():
        for module in attention_modules(model):
            module.vis_project.bias.add_(0.5)
            module.value.weight.mul_(1.5)


def _new_tensors(model):
    """What `model.to(device)` does: every parameter gets a new tensor (`param.data = fn(param)`)."""
    model._apply(lambda tensor: tensor * 0.8 if tensor.is_floating_point() else tensor)


def _dtype_round_trip(model):
    model.bfloat16()  # rounds every weight to 8 significant bits
    model.float()


@pytest.mark.parametrize(
    "change",
    [
        _optimizer_step,
        _load_state_dict,
        lambda model: _load_state_dict(model, assign=True),
        _in_place_edit,
        _new_tensors,
        _dtype_round_trip,
    ],
    ids=["optimizer-step", "load-state-dict", "load-state-dict-assign", "in-place", "new-tensors", "dtype-round-trip"],
)
def test_weight_products_follow_weight_changes(change):
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).eval()
    pixel_values = torch.rand(2, 3, 64, 64)
    before = cached_logits(model, pixel_values)
    stale = [module.weight_products for module in attention_modules(model)]
    assert all(products is not None for products in stale)
    change(model)
    after = cached_logits(model, pixel_values)
    assert all(module.weight_products is not old for module, old in zip(attention_modules(model), stale, strict=True))
    expected = straightforward_logits(model, pixel_values)
    torch.testing.assert_close(after.double(), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-4)  # the change mattered, so stale products would be caught


def test_weight_products_follow_dtype_and_device():
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).eval()
    pixel_values = torch.rand(2, 3, 64, 64)
    cached_logits(model, pixel_values)
    model.double()
    logits = cached_logits(model, pixel_values.double())
    products = attention_modules(model)[0].weight_products
    assert logits.dtype == products.label_input.dtype == products.attended_output.dtype == torch.float64
    torch.testing.assert_close(logits, straightforward_logits(model, pixel_values), rtol=1e-10, atol=1e-10)
    # a device move gives every weight a tensor on the other device (tested above with new tensors); the device is
    # also part of the key:
    sources = attention_modules(model)[0].product_sources()
    assert products.is_current(sources)
    assert not products.is_current(tuple(source.to("meta") for source in sources))


def test_weight_products_under_autocast_keep_the_weights_dtype():
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).eval()
    pixel_values = torch.rand(2, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(pixel_values)
    assert attention_modules(model)[0].weight_products.label_input.dtype == torch.float32
    torch.testing.assert_close(
        cached_logits(model, pixel_values).double(), straightforward_logits(model, pixel_values), rtol=1e-5, atol=1e-5
    )
    assert not any("weight_products" in key for key in model.state_dict())


def autograd_node_names(tensor):
    """Names of every node of the autograd graph that produced `tensor`."""
    names, pending, seen = [], [tensor.grad_fn], set()
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        pending.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize(
    "overrides, fold",
    [
        ({}, True),
        ({}, False),
        ({}, None),  # the last stage's 4 tokens are fewer than the 5 labels: straightforward form there
        ({"depths": [2, 1], "hidden_sizes": [6, 12], "label_embedding_size": 7}, True),
    ],
)
def test_hand_written_label_update_gives_the_module_gradients(overrides, fold):
    """With one head, the label side of a block is one autograd node with a hand-written backward (folded or
    straightforward form); with attention maps requested, autograd runs through the modules instead. Same loss and
    gradients of every parameter."""
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config(fold_label_attention=fold, **overrides)).train()
    pixel_values = torch.rand(2, 3, 64, 64)
    labels = torch.randint(0, 2, (2, model.config.num_labels)).float()
    fused_outputs, fused_gradients = loss_and_gradients(model, pixel_values, labels)
    module_outputs, module_gradients = loss_and_gradients(model, pixel_values, labels, output_attentions=True)
    assert autograd_node_names(fused_outputs.loss).count("HSVLTLabelUpdateBackward") == sum(model.config.depths)
    assert "HSVLTLabelUpdateBackward" not in autograd_node_names(module_outputs.loss)
    torch.testing.assert_close(fused_outputs.logits, module_outputs.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused_outputs.loss, module_outputs.loss, rtol=1e-5, atol=1e-6)
    assert_same_gradients(fused_gradients, module_gradients, rtol=1e-5, atol=1e-6)
    assert len(fused_gradients) == len(list(model.parameters()))


def operation_counts(model, pixel_values, labels):
    """Aten operations of an eager inference forward (after a warm-up that computes the weight products) and of a
    training step (forward and backward)."""
    model.eval()
    with torch.no_grad():
        model(pixel_values)
        with AtenOperationCounter() as inference:
            model(pixel_values)
    model.train()
    with AtenOperationCounter() as training:
        model(pixel_values, labels=labels).loss.backward()
    return inference.count, training.count


@pytest.mark.slow
def test_hsvlt_s_issues_at_most_twice_convnext_s_operations():
    """HSVLT-S and ConvNeXt-S at 224x224, batch 2, 80 labels. The counts are deterministic: HSVLT-S issues 1,090
    operations per inference forward and 4,014 per training step, ConvNeXt-S 560 and 2,025."""
    torch.manual_seed(0)
    pixel_values, labels = torch.rand(2, 3, 224, 224), torch.randint(0, 2, (2, 80)).float()
    hsvlt = HSVLTForMultiLabelClassification(HSVLTConfig(num_labels=80))
    convnext = ConvNextForImageClassification(
        ConvNextConfig(
            depths=[3, 3, 27, 3],
            hidden_sizes=[96, 192, 384, 768],
            num_labels=80,
            problem_type="multi_label_classification",
        )
    )
    hsvlt_inference, hsvlt_training = operation_counts(hsvlt, pixel_values, labels)
    convnext_inference, convnext_training = operation_counts(convnext, pixel_values, labels)
    assert (convnext_inference, convnext_training) == (560, 2025)
    assert hsvlt_inference <= 2 * convnext_inference
    assert hsvlt_training <= 2 * convnext_training and hsvlt_training <= 4_020


@pytest.mark.parametrize("num_labels, image_size", [(5, 64), (7, 96)])
def test_hand_written_backwards_give_the_gradients_of_the_functional_reference(num_labels, image_size):
    """The block's autograd Functions ([`HSVLTVisualUpdate`], [`HSVLTLabelUpdate`]) against autograd through the
    functional reference of the paper's equations: the loss and the gradient of every parameter (to 1e-5 relative)."""
    depths, dims, label_size = [1, 2, 1, 1], [8, 16, 24, 32], 12
    state = random_authors_state_dict(depths, dims, label_size, num_labels, with_unused=False)
    converted, unexpected = convert_authors_state_dict(state)
    state = {key: tensor.requires_grad_() for key, tensor in state.items()}
    label_embeddings = torch.randn(num_labels, label_size)
    config = tiny_config(
        depths=depths,
        hidden_sizes=dims,
        label_embedding_size=label_size,
        id2label={index: f"label {index}" for index in range(num_labels)},
        fold_label_attention=True,
    )
    model = HSVLTForMultiLabelClassification(config).train()
    converted["hsvlt.label_embeddings.weight"] = label_embeddings
    model.load_state_dict(converted)
    pixel_values = torch.rand(2, 3, image_size, image_size)
    labels = torch.randint(0, 2, (2, num_labels)).float()
    outputs = model(pixel_values, labels=labels)
    outputs.loss.backward()
    node_names = autograd_node_names(outputs.loss)
    assert node_names.count("HSVLTVisualUpdateBackward") == node_names.count("HSVLTLabelUpdateBackward") == 5
    expected_logits = reference_logits(state, pixel_values, label_embeddings)
    expected_loss = F.binary_cross_entropy_with_logits(expected_logits, labels)
    expected_loss.backward()
    torch.testing.assert_close(outputs.loss, expected_loss, rtol=1e-5, atol=1e-6)
    parameters = dict(model.named_parameters())
    compared = 0
    for key, tensor in state.items():
        name = rename_authors_key(key)
        if name not in parameters:  # the last block's gate, which reaches no logit
            assert tensor.grad is None
            continue
        gradient = parameters[name].grad
        expected = tensor.grad.view(gradient.shape)
        scale = expected.abs().max()
        torch.testing.assert_close(gradient / scale, expected / scale, rtol=1e-5, atol=1e-5, msg=name)
        compared += 1
    assert compared == len(parameters)
