"""PVLR (reconstruction): KAP, CAP, IFM, DMA and the similarity logits on hand-computed cases, the CLIP towers, open
vocabulary, the Trainer contract, and remote-code loading of PVLR and PatchCT checkpoints (one fresh process)."""

import math

import pytest
import torch
from clip_fixtures import (
    NAMES,
    clip_image_processor,
    run_checkpoints_in_fresh_process,
    tiny_config,
    tiny_model,
    tiny_tokenizer,
)
from conftest import assert_same_update, parameters_after_one_update
from PIL import Image

from transformers_hsvlt import PatchCTForMultiLabelClassification, PVLRConfig, PVLRForMultiLabelClassification
from transformers_hsvlt.modeling_pvlr import (
    PVLRDualModalAttentionLayer,
    PVLRFusion,
    label_attention_pooling,
)
from transformers_hsvlt.multilabel_losses import asymmetric_loss


SMALL = dict(num_context_tokens=4, num_attention_heads=2, fusion_intermediate_size=32, num_dma_layers=2)
"""A small PVLR head on the tiny towers."""


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def tiny_pvlr(tokenizer, names=NAMES, **overrides):
    return tiny_model(PVLRForMultiLabelClassification, tokenizer, names, **{**SMALL, **overrides})


def layer_norm(features, eps=1e-5):
    """LayerNorm with unit weight and zero bias, written out."""
    mean = features.mean(dim=-1, keepdim=True)
    variance = ((features - mean) ** 2).mean(dim=-1, keepdim=True)
    return (features - mean) / torch.sqrt(variance + eps)


def set_identity_attention(attention: torch.nn.MultiheadAttention) -> None:
    """Query, key, value and output projections = identity, no biases."""
    dim = attention.embed_dim
    with torch.no_grad():
        attention.in_proj_weight.copy_(torch.cat([torch.eye(dim)] * 3))
        attention.in_proj_bias.zero_()
        attention.out_proj.weight.copy_(torch.eye(dim))
        attention.out_proj.bias.zero_()


def one_head_config(tokenizer, **overrides):
    return tiny_config(
        PVLRConfig, tokenizer, projection_dim=4, num_attention_heads=1, fusion_intermediate_size=8, **overrides
    )


def test_context_prompt_with_the_template_words_equals_the_knowledge_prompt(tokenizer):
    """CAP with its 4 context vectors set to the embeddings of "a photo of a" is the KAP "A photo of a {name}.": the
    context replaces the 4 tokens after the start token, and the text tower runs on the embeddings as on the ids."""
    model = tiny_pvlr(tokenizer)
    base = model.pvlr
    template_ids = tokenizer("a photo of a", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        base.context_prompt.context.copy_(base.towers.text_model.embeddings.token_embedding.weight[template_ids])
        context_embeds = base.encode_context_prompts(base.class_context_input_ids, base.class_context_attention_mask)
        knowledge_embeds = base.towers.encode_text(base.class_input_ids, base.class_attention_mask)
    torch.testing.assert_close(context_embeds, knowledge_embeds, rtol=1e-5, atol=1e-5)
    assert base.class_context_input_ids[0, 1:5].eq(tokenizer.bos_token_id).all()  # the 4 placeholders


def test_knowledge_prompts_are_the_frozen_text_tower_on_the_template(tokenizer):
    model = tiny_pvlr(tokenizer).train()
    outputs = model.pvlr(torch.randn(2, 3, 32, 32))
    towers = model.pvlr.towers
    prompts = tokenizer([f"A photo of a {name}." for name in NAMES], padding=True, return_tensors="pt")
    expected = towers.text_projection(towers.text_model(**prompts).pooler_output)
    torch.testing.assert_close(outputs.knowledge_embeds, expected)
    assert not outputs.knowledge_embeds.requires_grad  # fixed prompts through the frozen tower: nothing to learn
    assert outputs.context_embeds.requires_grad  # the context vectors are learned through the frozen tower


def test_fusion_gate_and_norm_by_hand(tokenizer):
    fusion = PVLRFusion(one_head_config(tokenizer))
    with torch.no_grad():
        fusion.gate[2].weight.zero_()
        fusion.gate[2].bias.fill_(math.log(3.0))  # g = sigmoid(ln 3) = 3/4 for every channel
        fusion.feed_forward[2].weight.zero_()
        fusion.feed_forward[2].bias.zero_()
    set_identity_attention(fusion.self_attention)
    knowledge = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]])
    context = torch.tensor([[0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    mixed = layer_norm(0.75 * knowledge + 0.25 * context)
    # FFN adds 0; MHSA with identity projections over the 2 labels adds softmax(T T^T / 2) T
    expected = mixed + torch.softmax(mixed @ mixed.T / 2, dim=-1) @ mixed
    torch.testing.assert_close(fusion(knowledge, context), expected)


def test_dual_modal_attention_by_hand(tokenizer):
    layer = PVLRDualModalAttentionLayer(one_head_config(tokenizer))
    set_identity_attention(layer.text_attention)
    set_identity_attention(layer.visual_attention)
    labels = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]]])
    visual = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0], [2.0, 0.0, 0.0, 0.0]]])
    label_to_visual = torch.softmax(labels @ visual.transpose(1, 2) / 2, dim=-1)  # 1 head: sqrt(d) = 2
    new_labels = layer_norm(labels + label_to_visual @ visual)
    new_visual = layer_norm(visual + torch.softmax(visual @ new_labels.transpose(1, 2) / 2, dim=-1) @ new_labels)
    label_features, visual_features, attention = layer(labels, visual, output_attentions=True)
    torch.testing.assert_close(label_features, new_labels)
    torch.testing.assert_close(visual_features, new_visual)
    torch.testing.assert_close(attention, label_to_visual.unsqueeze(1))  # (B, heads, C, N)


def test_pooling_and_similarity_logits_by_hand(tokenizer):
    visual = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    labels = torch.tensor([[[1.0, 0.0]]])
    weight = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)  # softmax([1, 0] / sqrt(2))[0]
    pooled = label_attention_pooling(visual, labels)
    torch.testing.assert_close(pooled, torch.tensor([[[weight, 1 - weight]]]))
    model = tiny_pvlr(tokenizer)
    cosine = weight / math.sqrt(weight**2 + (1 - weight) ** 2)
    torch.testing.assert_close(model.logits(pooled, labels), torch.tensor([[cosine / 0.07]]), rtol=1e-4, atol=1e-4)
    assert model.logits.logit_scale.requires_grad  # tau is learned


def test_outputs_loss_and_attentions_at_a_larger_input(tokenizer):
    model = tiny_pvlr(tokenizer, image_size=64)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    outputs = model(torch.randn(2, 3, 64, 64), labels=labels, output_attentions=True, output_hidden_states=True)
    assert outputs.logits.shape == (2, 3) and len(outputs.hidden_states) == 3
    assert [attention.shape for attention in outputs.attentions] == [(2, 2, 3, 8, 8)] * 2  # 2 DMA layers
    for attention in outputs.attentions:
        torch.testing.assert_close(attention.sum(dim=(-2, -1)), torch.ones(2, 2, 3))
    asl = asymmetric_loss(outputs.logits, labels, gamma_negative=4.0, gamma_positive=0.0, clip=0.05)
    torch.testing.assert_close(outputs.loss, asl)


def test_trained_and_frozen_parts(tokenizer):
    model = tiny_pvlr(tokenizer).train()
    model(torch.randn(2, 3, 32, 32), labels=torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])).loss.backward()
    towers = model.pvlr.towers
    text = [*towers.text_model.parameters(), *towers.text_projection.parameters()]
    assert all(not parameter.requires_grad and parameter.grad is None for parameter in text)
    assert model.pvlr.context_prompt.context.grad.abs().sum() > 0
    assert towers.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert all(parameter.grad is not None for parameter in model.pvlr.dual_modal_attention.parameters())


def test_open_vocabulary(tokenizer, tmp_path):
    model = tiny_pvlr(tokenizer)
    pixel_values = torch.randn(2, 3, 32, 32)
    logits = model(pixel_values).logits
    permuted = model(pixel_values, **model.class_name_inputs(["person", "cat", "dog"], tokenizer)).logits
    torch.testing.assert_close(permuted, logits[:, [2, 0, 1]], rtol=1e-5, atol=1e-5)
    model.set_class_names(["bird", "tree"], tokenizer)
    assert model.config.id2label == {0: "bird", 1: "tree"} and model(pixel_values).logits.shape == (2, 2)
    model.save_pretrained(tmp_path)
    reloaded = PVLRForMultiLabelClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, model(pixel_values).logits)
    with pytest.raises(ValueError, match="none of them"):
        model(pixel_values, class_input_ids=model.pvlr.class_input_ids)


def test_context_prompts_longer_than_the_text_positions_are_refused(tokenizer):
    fits = tiny_pvlr(tokenizer, names=["cat"], num_context_tokens=20)  # start + 20 + "cat" + "." + end = 24
    assert fits.pvlr.class_context_attention_mask.sum() == 24
    model = PVLRForMultiLabelClassification(tiny_config(PVLRConfig, tokenizer, **{**SMALL, "num_context_tokens": 21}))
    with pytest.raises(ValueError, match="max_position_embeddings=24"):
        model.set_class_names(["cat"], tokenizer)


@pytest.mark.parametrize(
    "field, value, message",
    [("num_attention_heads", 3, "num_attention_heads"), ("num_context_tokens", 0, "num_context_tokens")],
)
def test_config_checks(tokenizer, field, value, message):
    with pytest.raises(Exception, match=message):
        tiny_config(PVLRConfig, tokenizer, **{**SMALL, field: value})


def test_trainer_accumulation_equals_one_larger_batch(tokenizer, tmp_path):
    pixels = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, -1.0], [1.0, 1.0, 0.0]])
    dataset = [{"pixel_values": pixel, "labels": label} for pixel, label in zip(pixels, labels)]
    start = tiny_pvlr(tokenizer).state_dict()

    def update(batch_size, accumulation_steps):
        model = tiny_pvlr(tokenizer)
        model.load_state_dict(start)
        return parameters_after_one_update(model, dataset, batch_size, accumulation_steps, tmp_path)

    accumulated, whole = update(2, 2), update(4, 1)
    assert any(not torch.equal(value, start[name]) for name, value in whole.items())
    assert_same_update(start, accumulated, whole)


@pytest.mark.slow
def test_checkpoints_run_in_a_fresh_process_without_the_package(tokenizer, tmp_path):
    """PVLR and PatchCT checkpoints (weights, remote code, tokenizer, CLIP-normalising image processor) load through
    AutoConfig, AutoModel (the base model), AutoModelForImageClassification and `pipeline` where the package cannot
    be imported; other label names work there too."""
    processor = clip_image_processor(32)
    image_path = tmp_path / "image.png"
    Image.fromarray((torch.rand(40, 50, 3) * 255).byte().numpy()).save(image_path)
    inputs = processor(Image.open(image_path), return_tensors="pt")
    models = {
        "PVLR": tiny_pvlr(tokenizer),
        "PatchCT": tiny_model(PatchCTForMultiLabelClassification, tokenizer),
    }
    checkpoints, expected = [], []
    for name, model in models.items():
        checkpoint = tmp_path / name
        model.save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        processor.save_pretrained(checkpoint)
        checkpoints.append(checkpoint)
        with torch.no_grad():
            other = model(**inputs, **model.class_name_inputs(["dog", "car"], tokenizer)).logits[0]
            expected.append((model(**inputs).logits[0], other))

    outputs = run_checkpoints_in_fresh_process(checkpoints, image_path, ["dog", "car"], tmp_path)

    for (name, model), output, (logits, other_logits) in zip(models.items(), outputs, expected):
        assert output["config_class"] == f"{name}Config" and output["base_class"] == f"{name}Model"
        assert output["classifier_class"] == f"{name}ForMultiLabelClassification"
        assert not output["classifier_module"].startswith("transformers_hsvlt")
        assert output["frozen"] == sum(not parameter.requires_grad for parameter in model.parameters()) > 0
        torch.testing.assert_close(torch.tensor(output["logits"]), logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.tensor(output["other_logits"]), other_logits, rtol=1e-5, atol=1e-5)
        scores = torch.tensor([output["pipeline"][label] for label in NAMES])
        torch.testing.assert_close(scores, torch.sigmoid(logits), rtol=1e-5, atol=1e-5)  # sigmoid, not softmax
