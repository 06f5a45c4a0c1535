"""HSVLT model: shapes, loss, training signal, save/load, faithfulness to the reference equations."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_update, parameters_after_one_update, tiny_config
from reference_hsvlt import random_authors_state_dict, reference_logits
from safetensors.torch import save_file

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification, HSVLTModel
from transformers_hsvlt.hsvlt.conversion import convert_authors_state_dict


def build(config, seed=0):
    torch.manual_seed(seed)
    return HSVLTForMultiLabelClassification(config).eval()


@pytest.mark.parametrize(
    "overrides, batch_size, image_size",
    [
        ({}, 1, 64),
        ({}, 3, 96),
        ({"num_attention_heads": 2, "hidden_sizes": [8, 16, 24, 32]}, 2, 64),
        ({"depths": [2, 1], "hidden_sizes": [6, 12], "label_embedding_size": 7}, 2, 40),
        ({"depths": [1, 1, 1], "hidden_sizes": [4, 8, 12], "num_attention_heads": 4, "patch_size": 2}, 2, 48),
    ],
)
def test_output_shapes(overrides, batch_size, image_size):
    config = tiny_config(**overrides)
    model = build(config)
    pixel_values = torch.rand(batch_size, 3, image_size, image_size)
    outputs = model(pixel_values, output_attentions=True, output_hidden_states=True)
    num_labels = config.num_labels
    assert outputs.logits.shape == (batch_size, num_labels)
    assert len(outputs.multimodal_features) == len(config.depths)
    assert len(outputs.hidden_states) == len(config.depths) + 1
    assert len(outputs.attentions) == sum(config.depths)
    side = image_size // config.patch_size
    expected_maps = [(batch_size, config.hidden_sizes[0], side, side)]
    for stage, width in enumerate(config.hidden_sizes):
        stage_side = side // 2**stage
        expected_maps.append((batch_size, width, stage_side, stage_side))
        assert outputs.multimodal_features[stage].shape == (batch_size, num_labels, width)
    assert [tuple(h.shape) for h in outputs.hidden_states] == expected_maps
    attention_shapes = [
        (batch_size, config.num_attention_heads, num_labels, (side // 2**stage) ** 2)
        for stage, depth in enumerate(config.depths)
        for _ in range(depth)
    ]
    assert [tuple(a.shape) for a in outputs.attentions] == attention_shapes
    for attention in outputs.attentions:
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))


def test_trainer_sees_only_labels_as_targets():
    from transformers.utils.generic import find_labels

    assert find_labels(HSVLTForMultiLabelClassification) == ["labels"]


def test_base_model_outputs(config):
    model = HSVLTModel(config).eval()
    outputs = model(torch.rand(2, 3, 64, 64))
    assert outputs.last_hidden_state.shape == (2, 32, 2, 2)
    assert outputs.label_features.shape == (2, 5, 32)
    assert outputs.hidden_states is None and outputs.attentions is None
    as_tuple = model(torch.rand(2, 3, 64, 64), return_dict=False)
    assert isinstance(as_tuple, tuple) and as_tuple[0].shape == (2, 32, 2, 2)


def test_hsvlt_s_parameter_count():
    """HSVLT-S with 80 labels has exactly the parameters that reach the authors' logits (label embeddings are a buffer):
    the 97,183,472 their forward uses minus the last block's label gate (2 x 768 x 768)."""
    model = HSVLTForMultiLabelClassification(HSVLTConfig(num_labels=80))
    assert sum(p.numel() for p in model.parameters()) == 97_183_472 - 2 * 768 * 768
    assert model.hsvlt.label_embeddings.weight.shape == (80, 768)
    assert "hsvlt.label_embeddings.weight" in model.state_dict()


@pytest.mark.slow
def test_loss_with_and_without_ignored_entries(config):
    model = build(config)
    torch.nn.init.normal_(model.classifier.bias)  # spread the logits so that masking changes the mean
    pixel_values = torch.rand(3, 3, 64, 64)
    labels = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.float)
    outputs = model(pixel_values, labels=labels)
    torch.testing.assert_close(outputs.loss, F.binary_cross_entropy_with_logits(outputs.logits, labels))

    ignored = labels.clone()
    ignored[0, 1] = ignored[2, 4] = ignored[1, 1] = -1
    keep = ignored != -1
    masked = model(pixel_values, labels=ignored)
    torch.testing.assert_close(masked.loss, F.binary_cross_entropy_with_logits(outputs.logits[keep], labels[keep]))
    assert not torch.isclose(masked.loss, outputs.loss)

    masked.loss.backward()
    assert model.classifier.weight.grad[1].abs().sum() > 0  # label 1 still has non-ignored entries

    all_ignored = model(pixel_values, labels=torch.full_like(labels, -1))
    assert all_ignored.loss.item() == 0.0


def test_loss_rejects_labels_of_wrong_shape(config):
    model = build(config)
    with pytest.raises(ValueError, match=r"labels.*\(2, 5\).*\(2, 4\)"):
        model(torch.rand(2, 3, 64, 64), labels=torch.zeros(2, 4))


@pytest.mark.parametrize(
    "pixel_values, message",
    [
        (None, "pixel_values"),
        (torch.rand(3, 64, 64), r"\(batch_size, 3, height, width\)"),
        (torch.rand(1, 4, 64, 64), r"got \(1, 4, 64, 64\)"),
        (torch.rand(1, 3, 16, 64), "at least 32"),
        ((torch.rand(1, 3, 64, 64) * 255).to(torch.uint8), "floating-point.*torch.uint8"),
        (torch.ones(1, 3, 64, 64, dtype=torch.long), "floating-point.*torch.int64"),
    ],
)
def test_bad_pixel_values(config, pixel_values, message):
    with pytest.raises(ValueError, match=message):
        build(config)(pixel_values)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.slow
def test_floating_pixel_values_are_converted_to_the_weights_dtype(config, dtype):
    model = build(config)
    pixel_values = torch.rand(2, 3, 64, 64)
    expected = model(pixel_values.to(dtype).float()).logits
    outputs = model(pixel_values.to(dtype), labels=torch.ones(2, 5))
    assert outputs.logits.dtype == torch.float32
    torch.testing.assert_close(outputs.logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("label_value", [2.0, -0.5, float("nan")])
def test_labels_other_than_targets_are_refused(config, label_value):
    labels = torch.zeros(2, 5)
    labels[1, 3] = label_value
    with pytest.raises(ValueError, match=r"`labels` must be 1 \(present\), 0 \(absent\), -1"):
        build(config)(torch.rand(2, 3, 64, 64), labels=labels)


def test_asl_loss_is_selected_by_the_config(config):
    from transformers_hsvlt.multilabel_losses import asymmetric_loss

    pixel_values, labels = torch.rand(2, 3, 64, 64), torch.tensor([[1.0, 0, 0, 1, -1], [0, 1, 0, 0, 0]])
    bce = build(config)(pixel_values, labels=labels)
    asl_config = tiny_config(multilabel_loss="asl", asl_gamma_negative=2.0, asl_gamma_positive=1.0, asl_clip=0.1)
    asl = build(asl_config)(pixel_values, labels=labels)
    torch.testing.assert_close(asl.logits, bce.logits)  # same seed, same weights
    expected = asymmetric_loss(bce.logits, labels, gamma_negative=2.0, gamma_positive=1.0, clip=0.1)
    torch.testing.assert_close(asl.loss, expected)
    assert not torch.isclose(asl.loss, bce.loss)


@pytest.mark.parametrize("model_class", [HSVLTModel, HSVLTForMultiLabelClassification])
def test_unknown_forward_arguments_are_refused(config, model_class):
    model = model_class(config).eval()
    pixel_values = torch.rand(1, 3, 64, 64)
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_items_in_batch'"):
        model(pixel_values, num_items_in_batch=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'lables'"):
        model(pixel_values, lables=torch.zeros(1, 5))
    assert isinstance(model(pixel_values, return_dict=False), tuple)  # what transformers itself passes still works
    assert model_class.accepts_loss_kwargs is False


@pytest.mark.slow
def test_trainer_gradient_accumulation_equals_one_larger_batch(config, tmp_path):
    """2 accumulation steps of 2 images give the same SGD update as one step of 4 images, with a plain `Trainer`."""
    generator = torch.Generator().manual_seed(0)
    dataset = [
        {
            "pixel_values": torch.rand(3, 64, 64, generator=generator),
            "labels": torch.randint(0, 2, (5,), generator=generator).float(),
        }
        for _ in range(4)
    ]
    initial = build(config).state_dict()

    def trained(batch_size, accumulation_steps):
        model = build(config).train()
        return parameters_after_one_update(model, dataset, batch_size, accumulation_steps, tmp_path / f"{batch_size}")

    accumulated, single = trained(2, 2), trained(4, 1)
    moved = [name for name in single if not torch.equal(single[name], initial[name])]
    assert any("label_attention.key" in name for name in moved) and "classifier.weight" in moved
    assert (single["classifier.weight"] - initial["classifier.weight"]).abs().max() > 1e-3
    assert_same_update(initial, accumulated, single)


def test_base_model_loads_from_classifier_checkpoint(config, tmp_path):
    """`HSVLTModel` (the `AutoModel` of a checkpoint) takes the `hsvlt.*` weights of a saved classifier."""
    from transformers import AutoModel, AutoModelForImageClassification

    classifier = build(config)
    torch.nn.init.normal_(classifier.hsvlt.encoder.stages[1].label_projection.weight)  # not the initialiser's values
    classifier.save_pretrained(tmp_path)
    pixel_values = torch.rand(2, 3, 64, 64)
    expected = classifier.hsvlt(pixel_values)
    base, loading_info = HSVLTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert loading_info["missing_keys"] == set() or not loading_info["missing_keys"]
    outputs = base.eval()(pixel_values)
    torch.testing.assert_close(outputs.label_features, expected.label_features, rtol=0, atol=0)
    torch.testing.assert_close(outputs.last_hidden_state, expected.last_hidden_state, rtol=0, atol=0)
    assert type(AutoModel.from_pretrained(tmp_path)) is HSVLTModel
    assert type(AutoModelForImageClassification.from_pretrained(tmp_path)) is HSVLTForMultiLabelClassification


@pytest.mark.slow
def test_overfits_one_batch(config):
    model = build(config).train()
    pixel_values = torch.rand(4, 3, 64, 64)
    labels = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 1], [1, 1, 0, 0, 0], [0, 0, 1, 0, 1]], dtype=torch.float)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model(pixel_values, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    predictions = (model.eval()(pixel_values).logits > 0).float()
    assert torch.equal(predictions, labels)


def test_save_and_load_round_trip(config, tmp_path):
    model = build(config)
    pixel_values = torch.rand(2, 3, 64, 64)
    expected = model(pixel_values).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    for name in (
        "configuration_hsvlt.py",
        "modeling_hsvlt.py",
        "modeling_hsvlt_attention.py",
        "modeling_hsvlt_backward.py",
        "modeling_hsvlt_encoder.py",
        "modeling_family.py",
        "multilabel_losses.py",
    ):
        assert (tmp_path / name).exists()
    reloaded = HSVLTForMultiLabelClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(reloaded.hsvlt.label_embeddings.weight, model.hsvlt.label_embeddings.weight)
    assert reloaded.config.id2label == config.id2label
    assert reloaded.config.auto_map["AutoModel"] == "modeling_hsvlt.HSVLTModel"
    assert (
        reloaded.config.auto_map["AutoModelForImageClassification"] == "modeling_hsvlt.HSVLTForMultiLabelClassification"
    )


def test_class_embeddings_argument_overrides_buffer(config):
    model = build(config)
    pixel_values = torch.rand(2, 3, 64, 64)
    other = torch.randn(5, 12)
    with_argument = model(pixel_values, class_embeddings=other).logits
    model.hsvlt.label_embeddings.weight.copy_(other)
    torch.testing.assert_close(with_argument, model(pixel_values).logits)
    with pytest.raises(ValueError, match=r"class_embeddings.*\(5, 12\).*got \(5, 11\)"):
        model(pixel_values, class_embeddings=torch.randn(5, 11))


def test_set_label_embeddings_keeps_known_rows(config):
    model = build(config)
    old_weight = model.classifier.weight.detach().clone()
    embeddings = torch.randn(3, 12)
    model.set_label_embeddings(embeddings, ["tree", "bus", "cat"])
    assert model.config.id2label == {0: "tree", 1: "bus", 2: "cat"}
    assert model.config.label2id == {"tree": 0, "bus": 1, "cat": 2}
    assert model.config.num_labels == 3
    torch.testing.assert_close(model.hsvlt.label_embeddings.weight, embeddings)
    torch.testing.assert_close(model.classifier.weight[0], old_weight[4])
    torch.testing.assert_close(model.classifier.weight[2], old_weight[0])
    assert model(torch.rand(1, 3, 64, 64)).logits.shape == (1, 3)


@pytest.mark.parametrize(
    "embeddings, names, message",
    [
        (torch.randn(2, 11), ["a", "b"], r"\(num_labels, 12\).*got \(2, 11\)"),
        (torch.randn(3, 12), ["a", "b"], "3 label embeddings for 2 label names"),
        (torch.randn(2, 12), ["a", "a"], r"duplicates: \['a'\]"),
        (torch.tensor([[float("nan")] * 12, [0.0] * 12]), ["a", "b"], "NaN"),
    ],
)
def test_set_label_embeddings_rejects_bad_input(config, embeddings, names, message):
    with pytest.raises(ValueError, match=message):
        build(config).set_label_embeddings(embeddings, names)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_sizes": [8, 16, 24, 30], "num_attention_heads": 4}, "divisible by num_attention_heads"),
        ({"depths": [1, 1, 1]}, "one entry per stage"),
        ({"depths": [1, 0, 1, 1]}, "depths must all be >= 1"),
        ({"id2label": {}}, "id2label is empty"),
        ({"id2label": None, "num_labels": 0}, "num_labels must be >= 1"),
        ({"problem_type": "single_label_classification"}, "multi_label_classification"),
        ({"drop_path_rate": 1.0}, r"drop_path_rate must be in \[0, 1\), got 1.0"),
        ({"drop_path_rate": -0.1}, r"drop_path_rate must be in \[0, 1\), got -0.1"),
        ({"patch_size": 0}, "patch_size must be >= 1, got 0"),
        ({"num_channels": -3}, "num_channels must be >= 1, got -3"),
        ({"image_size": 0}, "image_size must be >= 1, got 0"),
        (
            {"id2label": {0: "cat", 1: "dog", 2: "cat"}},
            r"id2label must name every label once, got duplicates \['cat'\]",
        ),
        ({"multilabel_loss": "focal"}, "multilabel_loss must be 'bce' or 'asl', got 'focal'"),
        ({"asl_gamma_negative": -1.0}, "asl_gamma_negative must be >= 0"),
        ({"asl_clip": 1.0}, r"asl_clip must be in \[0, 1\)"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_validate_architecture_is_the_strict_hook():
    """Checks run by `config.validate()` (and `save_pretrained`) after a field was changed in place."""
    config = tiny_config()
    config.drop_path_rate = 1.5
    with pytest.raises(Exception, match="drop_path_rate must be in") as error:
        config.validate()
    assert "validate_architecture" in str(error.value)


def test_config_defaults_are_hsvlt_s():
    config = HSVLTConfig()
    assert config.depths == [3, 3, 27, 3]
    assert config.hidden_sizes == [96, 192, 384, 768]
    assert (config.num_attention_heads, config.label_embedding_size, config.image_size) == (1, 768, 448)
    assert (config.layer_scale_init_value, config.layer_norm_eps, config.drop_path_rate) == (1e-6, 1e-6, 0.0)
    assert config.problem_type == "multi_label_classification"
    assert (config.multilabel_loss, config.asl_gamma_negative, config.asl_gamma_positive, config.asl_clip) == (
        "bce",
        4.0,
        0.0,
        0.05,
    )


@pytest.mark.parametrize(
    "depths, dims, heads, label_size, num_labels",
    [([1, 1, 2, 1], [8, 16, 24, 32], 1, 12, 5), ([2, 1, 1, 1], [8, 16, 24, 32], 2, 10, 3), ([1, 2], [6, 12], 3, 7, 4)],
)
@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.slow
def test_matches_functional_reference(depths, dims, heads, label_size, num_labels, fold):
    """Loaded with the same (authors'-format) weights, the module gives the reference equations' logits."""
    state = random_authors_state_dict(depths, dims, label_size, num_labels, seed=sum(depths) + heads)
    label_embeddings = torch.randn(num_labels, label_size)
    config = HSVLTConfig(
        depths=depths,
        hidden_sizes=dims,
        num_attention_heads=heads,
        label_embedding_size=label_size,
        num_labels=num_labels,
        fold_label_attention=fold,
    )
    model = HSVLTForMultiLabelClassification(config).eval()
    converted, unexpected = convert_authors_state_dict(state)
    converted["hsvlt.label_embeddings.weight"] = label_embeddings
    missing, unexpected_ours = model.load_state_dict(converted, strict=False)
    assert (missing, unexpected_ours, unexpected) == ([], [], [])
    pixel_values = torch.rand(2, 3, 64, 64)
    expected = reference_logits(state, pixel_values, label_embeddings, num_heads=heads)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).logits, expected, rtol=1e-5, atol=1e-5)
    assert expected.std() > 0.1  # the comparison is not between near-constant outputs


@pytest.mark.slow
def test_gradient_checkpointing_gives_same_gradients(config):
    model = build(config).train()
    pixel_values = torch.rand(2, 3, 64, 64)
    labels = torch.randint(0, 2, (2, 5)).float()

    def gradients():
        model.zero_grad()
        model(pixel_values, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.modules() if hasattr(layer, "label_attention"))
    checkpointed = gradients()
    assert checkpointed.keys() == plain.keys()
    for name, expected in plain.items():
        torch.testing.assert_close(checkpointed[name], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_class", [HSVLTModel, HSVLTForMultiLabelClassification])
def test_builds_on_the_meta_device(config, model_class):
    with torch.device("meta"):
        model = model_class(config)
    assert all(parameter.is_meta for parameter in model.parameters())


@pytest.mark.parametrize("overrides", [{}, {"depths": [2, 1], "hidden_sizes": [6, 12], "num_attention_heads": 2}])
@pytest.mark.slow
def test_every_parameter_receives_a_gradient_from_the_loss(overrides):
    model = build(tiny_config(**overrides)).train()
    model(torch.rand(2, 3, 64, 64), labels=torch.randint(0, 2, (2, 5)).float()).loss.backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []
    assert model.hsvlt.encoder.stages[-1].layers[-1].label_gate is None
    assert all(layer.label_gate is not None for stage in model.hsvlt.encoder.stages[:-1] for layer in stage.layers)


def test_checkpoints_with_the_unused_last_gate_still_load(config, tmp_path):
    model = build(config)
    model.save_pretrained(tmp_path)
    state = model.state_dict()
    last = f"hsvlt.encoder.stages.{config.num_stages - 1}.layers.{config.depths[-1] - 1}.label_gate"
    state[f"{last}.hidden.weight"] = torch.randn(32, 32)
    state[f"{last}.output.weight"] = torch.randn(32, 32)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    loaded, info = HSVLTForMultiLabelClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    pixel_values = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(pixel_values).logits, model(pixel_values).logits)
