"""HSVLT model: shapes, loss, training signal, save/load, faithfulness to the reference equations."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from reference_hsvlt import random_authors_state_dict, reference_logits

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification, HSVLTModel
from transformers_hsvlt.conversion import convert_authors_state_dict


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
    """HSVLT-S with 80 labels has exactly the parameters the authors' forward uses (label embeddings are a buffer)."""
    model = HSVLTForMultiLabelClassification(HSVLTConfig(num_labels=80))
    assert sum(p.numel() for p in model.parameters()) == 97_183_472
    assert model.hsvlt.label_embeddings.weight.shape == (80, 768)
    assert "hsvlt.label_embeddings.weight" in model.state_dict()


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
    ],
)
def test_bad_pixel_values(config, pixel_values, message):
    with pytest.raises(ValueError, match=message):
        build(config)(pixel_values)


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
    for name in ("configuration_hsvlt.py", "modeling_hsvlt.py"):
        assert (tmp_path / name).exists()
    reloaded = HSVLTForMultiLabelClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(reloaded.hsvlt.label_embeddings.weight, model.hsvlt.label_embeddings.weight)
    assert reloaded.config.id2label == config.id2label
    assert reloaded.config.auto_map["AutoModel"] == "modeling_hsvlt.HSVLTForMultiLabelClassification"
    assert reloaded.config.auto_map["AutoModelForImageClassification"] == "modeling_hsvlt.HSVLTForMultiLabelClassification"


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
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_config_defaults_are_hsvlt_s():
    config = HSVLTConfig()
    assert config.depths == [3, 3, 27, 3]
    assert config.hidden_sizes == [96, 192, 384, 768]
    assert (config.num_attention_heads, config.label_embedding_size, config.image_size) == (1, 768, 448)
    assert (config.layer_scale_init_value, config.layer_norm_eps, config.drop_path_rate) == (1e-6, 1e-6, 0.0)
    assert config.problem_type == "multi_label_classification"


@pytest.mark.parametrize(
    "depths, dims, heads, label_size, num_labels",
    [([1, 1, 2, 1], [8, 16, 24, 32], 1, 12, 5), ([2, 1, 1, 1], [8, 16, 24, 32], 2, 10, 3), ([1, 2], [6, 12], 3, 7, 4)],
)
@pytest.mark.parametrize("fold", [True, False])
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


def test_gradient_checkpointing_gives_same_gradients(config):
    model = build(config).train()
    pixel_values = torch.rand(2, 3, 64, 64)
    labels = torch.randint(0, 2, (2, 5)).float()

    def gradients():
        model.zero_grad()
        model(pixel_values, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.modules() if hasattr(layer, "label_attention"))
    checkpointed = gradients()
    assert checkpointed.keys() == plain.keys()
    for name, expected in plain.items():
        torch.testing.assert_close(checkpointed[name], expected, rtol=1e-5, atol=1e-6)
