"""PatchCT (reconstruction): the CT cost, adaptive layer and cosine logits on hand-computed cases, the CLIP towers,
open vocabulary and the Trainer contract. Remote-code loading of PatchCT and PVLR checkpoints (one fresh process for
both) is tested in test_pvlr.py."""

import importlib
import math

import pytest
import torch
from clip_fixtures import (
    NAMES,
    VISION_CONFIG,
    tiny_config,
    tiny_model,
    tiny_tokenizer,
)
from conftest import assert_same_update, parameters_after_one_update
from PIL import Image

from transformers_hsvlt import MultiLabelImageProcessor, PatchCTConfig, PatchCTForMultiLabelClassification, PatchCTModel
from transformers_hsvlt.modeling_patchct import (
    backward_navigator,
    conditional_transport_cost,
    cosine_similarities,
    forward_navigator,
    label_prior,
)
from transformers_hsvlt.multilabel_losses import asymmetric_loss
from transformers_hsvlt.registry import LabelSide
from transformers_hsvlt.weights.clip import word_level_clip_tokenizer


E = math.e


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def two_patch_similarities():
    """Patches along x and y (not unit length: the cosine normalises them), labels along x and y: s = identity."""
    patches = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    return cosine_similarities(patches, labels)


def test_navigators_and_ct_cost_by_hand():
    similarities = two_patch_similarities()
    torch.testing.assert_close(similarities, torch.eye(2)[None])
    # Only label 0 present: q = (1, 0). Forward: both patches send everything to label 0. Backward (tau 1): label 0
    # picks patch 0 with e / (e + 1), patch 1 with 1 / (e + 1).
    prior = label_prior(torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(forward_navigator(similarities, prior, 1.0), torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))
    torch.testing.assert_close(backward_navigator(similarities, 1.0)[0, :, 0], torch.tensor([E / (E + 1), 1 / (E + 1)]))
    # cost c = 1 - s: forward = (1/2)(c[0,0] + c[1,0]) = 1/2; backward = 1 / (e + 1).
    beta = 0.3
    expected = beta * 0.5 + (1 - beta) / (E + 1)
    torch.testing.assert_close(conditional_transport_cost(similarities, prior, beta, 1.0), torch.tensor([expected]))
    # Both labels: q = (1/2, 1/2); each patch sends e/(e+1) to its own label (cost 0), 1/(e+1) to the other (cost 1).
    both = label_prior(torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(conditional_transport_cost(similarities, both, beta, 1.0), torch.tensor([1 / (E + 1)]))


def test_ct_temperature_sharpens_the_navigators():
    similarities = two_patch_similarities()
    prior = label_prior(torch.tensor([[1.0, 0.0]]))
    tau = 0.5  # backward: label 0 picks patch 1 with exp(0) / (exp(2) + exp(0))
    torch.testing.assert_close(
        conditional_transport_cost(similarities, prior, 0.0, tau), torch.tensor([1 / (math.exp(2) + 1)])
    )


def test_label_prior_ignores_minus_one_and_images_without_labels_cost_nothing():
    prior = label_prior(torch.tensor([[1.0, -1.0, 1.0], [0.0, -1.0, 0.0], [0.5, 1.0, 0.5]]))
    torch.testing.assert_close(prior, torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0], [0.25, 0.5, 0.25]]))
    similarities = torch.rand(3, 4, 3) * 2 - 1
    costs = conditional_transport_cost(similarities, prior, 0.5, 0.1)
    assert costs[1] == 0 and torch.isfinite(costs).all() and (costs[[0, 2]] > 0).all()


def test_transport_cost_averages_images_and_layers(tokenizer):
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer, names=["cat", "dog"], ct_temperature=1.0)
    model.config.ct_beta = 0.3
    similarities = two_patch_similarities().expand(2, -1, -1)
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # the second image has no label: it counts 0 in the mean
    one_image = 0.3 * 0.5 + 0.7 / (E + 1)
    torch.testing.assert_close(model.transport_cost([similarities], labels), torch.tensor(one_image / 2))
    torch.testing.assert_close(
        model.transport_cost([similarities, torch.zeros(2, 2, 2)], labels), torch.tensor((one_image + 1) / 2 / 2)
    )  # all-zero similarities: every cost is 1, so the labelled image's CT cost is 1


def test_adaptive_layer_and_cosine_logits_by_hand(tokenizer):
    model = tiny_model(
        PatchCTForMultiLabelClassification,
        tokenizer,
        projection_dim=4,
        adapter_reduction=4,
        adapter_ratio=0.5,
        logit_scale_init_value=math.log(10.0),
        logit_bias_init_value=-1.0,
    )
    with torch.no_grad():
        model.adapter.fc1.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        model.adapter.fc2.weight.copy_(torch.tensor([[1.0], [0.0], [0.0], [-1.0]]))
    image_embeds = torch.tensor([[2.0, -1.0, 0.0, 0.0]])
    # fc1 -> 2, ReLU -> 2, fc2 -> (2, 0, 0, -2), ReLU -> (2, 0, 0, 0); h = x + 0.5 * (2, 0, 0, 0) = (3, -1, 0, 0)
    adapted = model.adapter(image_embeds)
    torch.testing.assert_close(adapted, torch.tensor([[3.0, -1.0, 0.0, 0.0]]))
    label_embeds = torch.tensor([[5.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    expected = 10 * torch.tensor([[3 / math.sqrt(10), -1 / math.sqrt(10), 0.0]]) - 1
    torch.testing.assert_close(model.logits(adapted, label_embeds), expected)


def test_logit_scale_is_learnable_with_clip_initial_value(tokenizer):
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer)
    assert model.logits.logit_scale.requires_grad and model.logits.logit_bias is None
    assert math.isclose(model.logits.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-4)


def test_loss_is_asl_plus_weighted_ct_cost(tokenizer):
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer, ct_weight=0.5, ct_layers=[1, -1])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    outputs = model(torch.randn(2, 3, 32, 32), labels=labels)
    asl = asymmetric_loss(outputs.logits, labels, gamma_negative=4.0, gamma_positive=0.0, clip=0.05)
    assert outputs.transport_cost > 0
    torch.testing.assert_close(outputs.loss, asl + 0.5 * outputs.transport_cost)


def test_outputs_at_a_larger_input_with_interpolated_position_embeddings(tokenizer):
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer, ct_layers=[1, -1], image_size=64)
    outputs = model.patchct(torch.randn(2, 3, 64, 64), output_attentions=True, output_hidden_states=True)
    assert outputs.image_embeds.shape == (2, 16) and outputs.label_embeds.shape == (3, 16)
    assert [s.shape for s in outputs.patch_label_similarities] == [(2, 64, 3)] * 2
    assert len(outputs.hidden_states) == 3 and outputs.hidden_states[-1].shape == (2, 65, 32)
    for similarities, attention in zip(outputs.patch_label_similarities, outputs.attentions):
        assert attention.shape == (2, 3, 8, 8)  # backward navigator pi(n | k) on the 8x8 patch grid
        torch.testing.assert_close(attention.sum(dim=(-2, -1)), torch.ones(2, 3))
        torch.testing.assert_close(attention.flatten(2), torch.softmax(similarities / 0.1, dim=1).transpose(1, 2))
    assert not torch.allclose(*outputs.patch_label_similarities)  # two different layers


def test_text_tower_is_frozen_and_image_tower_trains(tokenizer):
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer).train()
    model(torch.randn(2, 3, 32, 32), labels=torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])).loss.backward()
    towers = model.patchct.towers
    text = [*towers.text_model.parameters(), *towers.text_projection.parameters()]
    assert all(not parameter.requires_grad and parameter.grad is None for parameter in text)
    assert all(parameter.grad is not None for parameter in towers.visual_projection.parameters())
    assert towers.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert model.adapter.fc1.weight.grad is not None and model.logits.logit_scale.grad is not None


def test_open_vocabulary(tokenizer, tmp_path):
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer)
    pixel_values = torch.randn(2, 3, 32, 32)
    logits = model(pixel_values).logits
    swapped = model(pixel_values, **model.class_name_inputs(["dog", "cat"], tokenizer)).logits
    torch.testing.assert_close(swapped, logits[:, [1, 0]])  # PatchCT scores every label on its own
    model.set_class_names(["tree", "cat"], tokenizer)
    assert model.config.id2label == {0: "tree", 1: "cat"} and model.config.label2id == {"tree": 0, "cat": 1}
    assert model.patchct.class_input_ids.shape == (2, model.config.text_config.max_position_embeddings)
    new_logits = model(pixel_values).logits
    torch.testing.assert_close(new_logits[:, 1], logits[:, 0])
    model.save_pretrained(tmp_path)
    reloaded = PatchCTForMultiLabelClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.id2label == {0: "tree", 1: "cat"}
    torch.testing.assert_close(reloaded(pixel_values).logits, new_logits)


def test_bad_inputs_are_refused(tokenizer):
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer)
    pixel_values = torch.randn(1, 3, 32, 32)
    with pytest.raises(TypeError):
        model(pixel_values, label_embeddings=torch.zeros(3, 16))
    with pytest.raises(ValueError, match="none of them"):
        model(pixel_values, class_input_ids=model.patchct.class_input_ids)
    with pytest.raises(ValueError, match="multiples of the patch size"):
        model(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match="set_class_names"):
        PatchCTModel(tiny_config(PatchCTConfig, tokenizer))(pixel_values)
    with pytest.raises(ValueError, match="unique"):
        model.set_class_names(["cat", "cat"], tokenizer)
    other_tokenizer = word_level_clip_tokenizer(["only a few words"])  # its end token is another id
    with pytest.raises(ValueError, match="eos_token_id"):
        model.set_class_names(["cat"], other_tokenizer)


@pytest.mark.parametrize(
    "field, value, message",
    [("ct_beta", 1.5, "ct_beta"), ("ct_layers", [5], "ct_layers"), ("adapter_reduction", 5, "adapter_reduction")],
)
def test_config_checks(tokenizer, field, value, message):
    with pytest.raises(Exception, match=message):
        tiny_config(PatchCTConfig, tokenizer, **{field: value})


def test_trainer_accumulation_equals_one_larger_batch(tokenizer, tmp_path):
    torch.manual_seed(0)
    pixels = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, -1.0], [1.0, 1.0, 0.0]])
    dataset = [{"pixel_values": pixel, "labels": label} for pixel, label in zip(pixels, labels)]
    start = tiny_model(PatchCTForMultiLabelClassification, tokenizer, ct_layers=[1, -1]).state_dict()

    def update(batch_size, accumulation_steps):
        model = tiny_model(PatchCTForMultiLabelClassification, tokenizer, ct_layers=[1, -1])
        model.load_state_dict(start)
        return parameters_after_one_update(model, dataset, batch_size, accumulation_steps, tmp_path)

    accumulated, whole = update(2, 2), update(4, 1)
    assert any(not torch.equal(value, start[name]) for name, value in whole.items())
    assert_same_update(start, accumulated, whole)


@pytest.mark.parametrize("entry", ["patchct", "pvlr"])
def test_registry_entries_build_tiny_models_with_heatmaps(entry):
    """Both CLIP-based entries (PVLR's too, to build the shared machinery once): `build` from random towers with a
    word-level tokenizer, the heatmap functions, the image tower's learning-rate prefix and the paper facts."""
    architecture = importlib.import_module(f"transformers_hsvlt.{entry}.architecture").ARCHITECTURE
    names = ["zero", "one", "two"]
    model = architecture.build(architecture.presets["tiny"].config, LabelSide(names=names), None).eval()
    assert model.config.id2label == dict(enumerate(names)) and model.config.model_type == entry
    tokens = model.class_name_tokenizer.convert_ids_to_tokens(model.base_model.class_input_ids[1, :3])
    assert tokens == ["<|startoftext|>", "one", "<|endoftext|>"]
    processor = MultiLabelImageProcessor(size={"height": 64, "width": 64}, **architecture.image_processor_defaults)
    pixel_values = processor(Image.new("RGB", (80, 60), (122, 116, 104)), return_tensors="pt")["pixel_values"]
    assert pixel_values.abs().max() < 0.02  # CLIP's mean colour (to 8 bits) normalises to about 0
    outputs = model(pixel_values, output_attentions=True, output_hidden_states=True)
    stages = architecture.heatmap_stages(model.config)
    maps = [architecture.attention_maps(outputs, model.config, stage) for stage in range(stages)]
    assert [tuple(heatmap.shape) for heatmap in maps] == [(1, 3, 4, 4)] * stages  # 16-px patches of 64 px
    hidden_size = model.config.vision_config.hidden_size
    assert [tuple(f.shape) for f in architecture.feature_maps(outputs, model.config)] == [
        (1, hidden_size, 4, 4)
    ] * stages
    image_tower = [name for name, _ in model.named_parameters() if name.startswith(tuple(architecture.lr_multipliers))]
    assert any(".vision_model." in name for name in image_tower) and not any(".text_" in name for name in image_tower)
    assert architecture.label_inputs == ("names",) and architecture.paper.reconstruction
    assert "not checked against the paper" in architecture.paper.summary


def test_towers_start_from_a_local_clip_checkpoint(tmp_path):
    """`--backbone DIR` (or a Hub id) of a saved `CLIPModel` and its tokenizer: the towers and projections are CLIP's
    weights one to one, and the tokenizer is CLIP's."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from transformers_hsvlt.registry import LabelSide
    from transformers_hsvlt.weights.clip import build_clip_classifier, text_config_for_tokenizer

    tokenizer = tiny_tokenizer()
    clip = CLIPModel(
        CLIPConfig(
            text_config=text_config_for_tokenizer({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                                   "num_attention_heads": 4, "max_position_embeddings": 24}, tokenizer),
            vision_config=VISION_CONFIG,
            projection_dim=16,
        )
    )  # fmt: skip
    clip.save_pretrained(tmp_path / "clip")
    tokenizer.save_pretrained(tmp_path / "clip")
    model = build_clip_classifier(
        PatchCTForMultiLabelClassification, {"image_size": 32}, LabelSide(names=NAMES), str(tmp_path / "clip")
    )
    towers = model.base_model.towers.state_dict()
    for name, tensor in clip.state_dict().items():
        if name != "logit_scale":
            torch.testing.assert_close(towers[name], tensor, rtol=0, atol=0)
    assert model.class_name_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert model(torch.rand(1, 3, 32, 32)).logits.shape == (1, len(NAMES))
