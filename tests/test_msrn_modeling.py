"""MSRN: the module against the functional reference over the authors' keys, the adjacency, chunked attention, sizes,
outputs and loss."""

import pytest
import torch
from reference_msrn import (  # noqa: F401 (single_thread: an autouse fixture)
    random_authors_state_dict,
    random_cooccurrence,
    reference_adjacency,
    reference_msrn,
    single_thread,
    tiny_msrn_config,
)

from transformers_hsvlt import MSRNConfig, MSRNForMultiLabelClassification, MSRNModel
from transformers_hsvlt.modeling_msrn_graph import normalized_adjacency
from transformers_hsvlt.msrn.conversion import convert_authors_state_dict
from transformers_hsvlt.registry import LabelCooccurrence


def converted_model(config, seed=0):
    """Our model loaded with a random authors' state dict, with a random label graph; returns it and the inputs of
    the reference."""
    state_dict = random_authors_state_dict(config, seed=seed)
    counts, pair_counts = random_cooccurrence(config.num_labels, seed=seed)
    vectors = torch.randn(config.num_labels, config.label_embedding_size, generator=torch.Generator().manual_seed(seed))
    model = MSRNForMultiLabelClassification(config).eval()
    converted, unexpected = convert_authors_state_dict(state_dict)
    assert not unexpected
    model.load_state_dict(converted, strict=False)
    model.set_label_graph(vectors, LabelCooccurrence(counts, pair_counts))
    return model, (state_dict, vectors, counts, pair_counts)


@pytest.mark.parametrize(
    ("num_labels", "num_groups", "height", "width", "chunk"),
    [(5, 2, 64, 64, None), (7, 3, 96, 80, 2), (3, 1, 70, 128, 16), (12, 4, 64, 64, 5)],
)
def test_matches_functional_reference(num_labels, num_groups, height, width, chunk):
    config = tiny_msrn_config(num_labels, num_groups, attention_label_chunk_size=chunk)
    model, (state_dict, vectors, counts, pair_counts) = converted_model(config, seed=num_labels)
    pixel_values = torch.randn(2, 3, height, width)
    with torch.no_grad():
        outputs = model(pixel_values, labels=torch.ones(2, num_labels))
        base = model.msrn(pixel_values)
    logits, group_loss, label_embed, group_embed, assign_mat = reference_msrn(
        state_dict, pixel_values, vectors, counts, pair_counts, config.backbone_config.depths
    )
    assert logits.abs().max() > 1e-3  # a meaningful comparison
    torch.testing.assert_close(outputs.logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs.group_loss, group_loss.reshape(()), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(base.label_features, label_embed, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base.group_features, group_embed, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base.group_assignments, assign_mat, rtol=1e-5, atol=1e-5)


def test_adjacency_is_the_authors_and_has_edges():
    counts, pair_counts = random_cooccurrence(9, seed=3)
    expected = reference_adjacency(counts, pair_counts)
    found = normalized_adjacency(torch.from_numpy(counts), torch.from_numpy(pair_counts), 0.4, 0.25)
    off_diagonal = expected - torch.diag(expected.diagonal())
    assert (off_diagonal > 0).sum() >= 3
    torch.testing.assert_close(found.float(), expected, rtol=1e-6, atol=1e-7)


def test_adjacency_cached_until_the_counts_change():
    model = MSRNModel(tiny_msrn_config(6, 2))
    graph = model.label_graph
    assert torch.equal(graph.adjacency(), torch.eye(6))  # no counts yet: no edges
    first = graph.adjacency()
    assert graph.adjacency() is first
    counts, pair_counts = random_cooccurrence(6, seed=1)
    model.set_label_graph(torch.randn(6, 12), LabelCooccurrence(counts, pair_counts), [f"n{i}" for i in range(6)])
    torch.testing.assert_close(graph.adjacency(), reference_adjacency(counts, pair_counts))
    other_counts, other_pair_counts = random_cooccurrence(6, seed=2)
    for statistics in ((counts, pair_counts), (other_counts, other_pair_counts)):  # no adjacency() in between
        model.set_label_graph(torch.randn(6, 12), LabelCooccurrence(*statistics))
    torch.testing.assert_close(graph.adjacency(), reference_adjacency(other_counts, other_pair_counts))
    with torch.no_grad():
        graph.label_pair_counts.zero_()  # in-place change (e.g. load_state_dict) invalidates the cache
    assert torch.equal(graph.adjacency(), torch.eye(6))
    assert model.config.id2label[5] == "n5"
    model.set_label_graph(torch.randn(6, 12), LabelCooccurrence(counts * 10000, pair_counts * 10000))
    model.to(torch.float16)  # the counts stay exact integers (COCO's exceed float16's range)
    assert graph.label_counts.dtype == torch.long and graph.label_counts.max() > 65504
    assert graph.adjacency().dtype == torch.float16
    torch.testing.assert_close(
        graph.adjacency().float(), reference_adjacency(counts, pair_counts), rtol=1e-3, atol=1e-3
    )
    with pytest.raises(ValueError, match="label_counts must be whole numbers"):
        model.set_label_graph(torch.randn(6, 12), LabelCooccurrence(counts + 0.5, pair_counts))


def test_chunked_attention_equals_unchunked_with_gradients():
    torch.manual_seed(0)
    chunked = MSRNForMultiLabelClassification(tiny_msrn_config(9, 3, attention_label_chunk_size=2)).train()
    whole = MSRNForMultiLabelClassification(tiny_msrn_config(9, 3, attention_label_chunk_size=None)).train()
    whole.load_state_dict(chunked.state_dict())
    pixel_values, labels = torch.randn(2, 3, 64, 64), (torch.rand(2, 9) < 0.5).float()
    results = []
    for model in (chunked, whole):
        outputs = model(pixel_values, labels=labels)
        outputs.loss.backward()
        grads = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
        results.append((outputs, model(pixel_values, output_attentions=True).attentions, grads))
    (chunked_out, chunked_maps, chunked_grads), (whole_out, whole_maps, whole_grads) = results
    torch.testing.assert_close(chunked_out.logits, whole_out.logits, rtol=1e-6, atol=1e-6)
    for level in range(3):
        torch.testing.assert_close(chunked_maps[level], whole_maps[level])
    assert chunked_grads.keys() == whole_grads.keys()
    for name in ("msrn.level_projections.0.weight", "msrn.label_semantics.0.weight", "head.hidden.weight"):
        assert chunked_grads[name].abs().max() > 0
    for name, grad in chunked_grads.items():
        torch.testing.assert_close(grad, whole_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_paper_model_has_the_authors_parameter_count():
    config = MSRNConfig(id2label={index: str(index) for index in range(80)})
    assert config.num_groups == 4
    assert config.backbone_config.depths == [3, 4, 23, 3]
    assert config.backbone_config.downsample_in_bottleneck is False  # ResNet v1.5: stride in the 3x3 convolution
    with torch.device("meta"):
        model = MSRNForMultiLabelClassification(config)
    assert sum(parameter.numel() for parameter in model.parameters()) == 310_630_384
    assert model.head.hidden.weight.shape == (2048, 84 * 1536)


def test_outputs_shapes_and_attention_maps():
    config = tiny_msrn_config(6, 2)
    model = MSRNForMultiLabelClassification(config).eval()
    with torch.no_grad():
        outputs = model(torch.randn(3, 3, 128, 96), output_attentions=True, output_hidden_states=True)
        base = model.msrn(torch.randn(3, 3, 128, 96))
    sizes = [(8, 6), (4, 3), (2, 1)]  # input / 16, / 32, / 64
    assert outputs.logits.shape == (3, 6)
    assert [tuple(level.shape) for level in outputs.hidden_states] == [(3, 24, *size) for size in sizes]
    assert [tuple(maps.shape) for maps in outputs.attentions] == [(3, 6, *size) for size in sizes]
    assert [tuple(maps.shape) for maps in outputs.group_attentions] == [(3, 2, *size) for size in sizes]
    for maps in outputs.attentions + outputs.group_attentions:
        torch.testing.assert_close(maps.sum((-1, -2)), torch.ones(maps.shape[:2]))
    assert base.label_representations.shape == (3, 6, 72) and base.group_representations.shape == (3, 2, 72)
    assert base.attentions is None and base.hidden_states is None
    assert outputs.loss is None and outputs.group_loss is None


def test_loss_is_multilabel_loss_plus_group_loss():
    config = tiny_msrn_config(5, 2)
    model = MSRNForMultiLabelClassification(config).eval()
    pixel_values, labels = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0, -1, 1, 0], [0, 0, 1, 1, 0]])
    with torch.no_grad():
        outputs = model(pixel_values, labels=labels)
        base = model.msrn(pixel_values)
    valid = labels != -1
    bce = torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits[valid], labels[valid])
    nearest = base.group_features[base.group_assignments.argmax(1)]
    group_loss = 1e-4 * (base.label_features - nearest).norm(dim=1).sum()
    assert group_loss > 0
    torch.testing.assert_close(outputs.group_loss, group_loss)
    torch.testing.assert_close(outputs.loss, bce + group_loss)
    model.config.multilabel_loss = "asl"
    with torch.no_grad():
        assert not torch.allclose(model(pixel_values, labels=labels).loss, outputs.loss)


def test_save_and_reload_keeps_the_label_graph(tmp_path):
    model, _ = converted_model(tiny_msrn_config(5, 2))
    model.save_pretrained(tmp_path)
    reloaded = MSRNForMultiLabelClassification.from_pretrained(tmp_path).eval()
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values).logits, model(pixel_values).logits)
    torch.testing.assert_close(reloaded.msrn.label_graph.adjacency(), model.msrn.label_graph.adjacency())
    assert reloaded.config.num_groups == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(backbone_config={"model_type": "resnet", "hidden_sizes": [8, 16, 32], "depths": [1, 1, 1]}), "4 stages"),
        (dict(attention_label_chunk_size=0), "attention_label_chunk_size"),
        (dict(semantic_size=0), "semantic_size"),
        (dict(multilabel_loss="focal"), "multilabel_loss"),
        (dict(backbone_config={"model_type": "convnext"}), "ResNetConfig"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_msrn_config(**overrides)


def test_bad_inputs_are_refused():
    model = MSRNForMultiLabelClassification(tiny_msrn_config(4, 1))
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(TypeError, match="num_items_in_batch"):
        model(torch.randn(1, 3, 64, 64), num_items_in_batch=3)
    with pytest.raises(ValueError, match="label_pair_counts must have shape"):
        model.set_label_graph(torch.randn(4, 12), LabelCooccurrence(torch.ones(4).numpy(), torch.ones(3, 3).numpy()))
