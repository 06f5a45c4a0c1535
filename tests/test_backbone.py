"""Initialising HSVLT from ConvNeXt: transformers checkpoints, in-memory models and the original `.pth` format."""

import re

import numpy as np
import pytest
import torch
from conftest import tiny_config
from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextModel, ResNetConfig

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification, HSVLTModel
from transformers_hsvlt.hsvlt.backbone import (
    CONVNEXT_LAYER_NORM_EPS,
    build_hsvlt_from_convnext,
    load_convnext_weights,
)


DEPTHS, WIDTHS = [1, 1, 2, 1], [8, 16, 24, 32]
NAMES = ["cat", "dog", "person", "car", "tree"]


def tiny_convnext(model_class=ConvNextForImageClassification, seed=0, **overrides):
    """A tiny ConvNeXt whose parameters are all random (layer scale and LayerNorm weights included)."""
    values = dict(depths=DEPTHS, hidden_sizes=WIDTHS, num_labels=7, layer_scale_init_value=0.5)
    values.update(overrides)
    torch.manual_seed(seed)
    model = model_class(ConvNextConfig(**values)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return model


def to_original_format(convnext: ConvNextForImageClassification) -> dict[str, torch.Tensor]:
    """The state dict of a transformers ConvNeXt under the original ConvNeXt `.pth` key names (test-only inverse)."""
    renames = [
        (r"^convnext\.embeddings\.patch_embeddings\.", "downsample_layers.0.0."),
        (r"^convnext\.embeddings\.layernorm\.", "downsample_layers.0.1."),
        (r"^convnext\.encoder\.stages\.(\d+)\.downsampling_layer\.", r"downsample_layers.\1."),
        (r"^convnext\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layernorm\.", r"stages.\1.\2.norm."),
        (r"^convnext\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer_scale_parameter$", r"stages.\1.\2.gamma"),
        (r"^convnext\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.\2."),
        (r"^convnext\.layernorm\.", "norm."),
        (r"^classifier\.", "head."),
    ]
    original = {}
    for key, tensor in convnext.state_dict().items():
        for pattern, replacement in renames:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        original[key] = tensor.clone()
    return original


def label_embeddings(width=12, seed=1):
    return torch.randn(len(NAMES), width, generator=torch.Generator().manual_seed(seed))


def assert_same_hidden_states(hsvlt, convnext_model: ConvNextModel):
    pixel_values = torch.rand(2, 3, 64, 64)
    expected = convnext_model(pixel_values, output_hidden_states=True).hidden_states
    got = hsvlt.eval()(pixel_values, output_hidden_states=True).hidden_states
    assert len(got) == len(expected) == len(DEPTHS) + 1
    for stage, (ours, theirs) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=f"hidden state {stage}")


@pytest.mark.parametrize("model_class", [ConvNextModel, ConvNextForImageClassification])
def test_build_from_transformers_directory_reproduces_convnext(model_class, tmp_path):
    convnext = tiny_convnext(model_class)
    convnext.save_pretrained(tmp_path)
    model = build_hsvlt_from_convnext(tmp_path, NAMES, label_embeddings(), image_size=64)

    config = model.config
    assert (config.depths, config.hidden_sizes, config.patch_size) == (DEPTHS, WIDTHS, 4)
    assert convnext.config.layer_norm_eps == 1e-12  # only ConvNeXt's final LayerNorm; not the stage ones
    assert config.layer_norm_eps == CONVNEXT_LAYER_NORM_EPS == 1e-6
    assert list(config.id2label.values()) == NAMES and config.image_size == 64
    torch.testing.assert_close(model.hsvlt.label_embeddings.weight, label_embeddings())
    base = convnext if model_class is ConvNextModel else convnext.convnext
    assert_same_hidden_states(model, base)
    assert model(torch.rand(1, 3, 64, 64)).logits.shape == (1, len(NAMES))


@pytest.mark.parametrize("wrapped", [False, True], ids=["state-dict", "model-key"])
def test_build_from_original_pth_reproduces_convnext(wrapped, tmp_path):
    convnext = tiny_convnext()
    original = to_original_format(convnext)
    assert {"norm.weight", "head.weight", "downsample_layers.0.0.weight", "stages.2.1.gamma"} <= set(original)
    path = tmp_path / "convnext_tiny_test.pth"
    torch.save({"model": original} if wrapped else original, path)

    model = build_hsvlt_from_convnext(path, NAMES, label_embeddings())
    assert (model.config.depths, model.config.hidden_sizes) == (DEPTHS, WIDTHS)
    assert_same_hidden_states(model, convnext.convnext)


def test_loading_info_from_in_memory_model():
    convnext = tiny_convnext()
    model = HSVLTForMultiLabelClassification(tiny_config())
    info = load_convnext_weights(model, convnext)

    visual = [key for key in convnext.state_dict() if key.startswith("convnext.") and "convnext.layernorm" not in key]
    assert info.loaded_keys == sorted(key.replace("convnext.", "hsvlt.") for key in visual)
    assert info.unused_keys == [
        "classifier.bias",
        "classifier.weight",
        "convnext.layernorm.bias",
        "convnext.layernorm.weight",
    ]
    assert info.mismatched_keys == []
    new_parts = {re.sub(r"\d+\.", "", name).rsplit(".", 1)[0] for name in info.newly_initialized_keys}
    assert new_parts == {
        "hsvlt.encoder.stages.label_projection",
        "hsvlt.encoder.stages.layers.label_attention.query",
        "hsvlt.encoder.stages.layers.label_attention.key",
        "hsvlt.encoder.stages.layers.label_attention.value",
        "hsvlt.encoder.stages.layers.label_attention.proj",
        "hsvlt.encoder.stages.layers.label_attention.vis_project",
        "hsvlt.encoder.stages.layers.label_attention.project_mm",
        "hsvlt.encoder.stages.layers.label_gate.hidden",
        "hsvlt.encoder.stages.layers.label_gate.output",
        "classifier",
    }
    assert len(info.loaded_keys) + len(info.newly_initialized_keys) == len(list(model.parameters()))
    assert_same_hidden_states(model, convnext.convnext)


def test_base_model_and_original_state_dict_in_memory():
    convnext = tiny_convnext()
    model = HSVLTModel(tiny_config())
    info = load_convnext_weights(model, to_original_format(convnext))
    assert "embeddings.patch_embeddings.weight" in info.loaded_keys
    assert info.unused_keys == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert_same_hidden_states(model, convnext.convnext)


def test_convnext_without_layer_scale():
    convnext = tiny_convnext(layer_scale_init_value=0.0)
    model = build_hsvlt_from_convnext(convnext, NAMES, label_embeddings())
    assert model.config.layer_scale_init_value == 0.0
    assert_same_hidden_states(model, convnext.convnext)


@pytest.mark.slow
def test_label_files_and_hsvlt_s_shape(tmp_path):
    """Label names and embeddings from files; a ConvNeXt-S-shaped backbone gives exactly HSVLT-S."""
    (tmp_path / "label.txt").write_text("\n".join(NAMES) + "\n")
    np.save(tmp_path / "bert.npy", np.random.default_rng(0).standard_normal((5, 768)).astype(np.float32))
    convnext_s = ConvNextModel(ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[96, 192, 384, 768]))
    model = build_hsvlt_from_convnext(convnext_s, tmp_path / "label.txt", tmp_path / "bert.npy")
    defaults = HSVLTConfig()
    for name in ("depths", "hidden_sizes", "patch_size", "label_embedding_size", "layer_norm_eps", "hidden_act"):
        assert getattr(model.config, name) == getattr(defaults, name), name
    assert list(model.config.id2label.values()) == NAMES


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"depths": [1, 1, 1, 1]}, "stage 2: ConvNeXt 2 blocks of width 24, HSVLT config 1 blocks of width 24"),
        (
            {"hidden_sizes": [8, 16, 20, 32]},
            "stage 2: ConvNeXt 2 blocks of width 24, HSVLT config 2 blocks of width 20",
        ),
        ({"depths": [1, 1, 2], "hidden_sizes": [8, 16, 24]}, "ConvNeXt has 4 stages, HSVLT config 3"),
        ({"patch_size": 2}, "stem patch_size: ConvNeXt 4, HSVLT config 2"),
        ({"layer_scale_init_value": 0.0}, "ConvNeXt has layer scale, HSVLT config layer_scale_init_value=0.0"),
        ({"layer_norm_eps": 1e-12}, r"layer_norm_eps=1e-12.*use 1e-06"),
        ({"hidden_act": "relu"}, "uses hidden_act='gelu' but the HSVLT config has hidden_act='relu'"),
    ],
)
def test_mismatched_architecture_is_rejected(overrides, message):
    model = HSVLTForMultiLabelClassification(tiny_config(**overrides))
    with pytest.raises(ValueError, match=message):
        load_convnext_weights(model, tiny_convnext())


def test_config_overrides_must_agree_with_the_backbone():
    with pytest.raises(ValueError, match="stage 0: ConvNeXt 1 blocks of width 8, HSVLT config 1 blocks of width 48"):
        build_hsvlt_from_convnext(tiny_convnext(), NAMES, label_embeddings(), hidden_sizes=[48, 96, 144, 192])


def test_missing_tensor_is_named():
    state_dict = tiny_convnext().state_dict()
    del state_dict["convnext.encoder.stages.2.layers.1.pwconv1.bias"]
    with pytest.raises(ValueError, match=r"missing: encoder\.stages\.2\.layers\.1\.pwconv1\.bias"):
        load_convnext_weights(HSVLTModel(tiny_config()), state_dict)


def test_partial_loading_without_strict_shapes():
    """A shallower, narrower HSVLT takes what fits and reports the rest."""
    model = HSVLTForMultiLabelClassification(tiny_config(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 40]))
    info = load_convnext_weights(model, tiny_convnext(), strict_shapes=False)
    assert "hsvlt.encoder.stages.2.layers.0.dwconv.weight" in info.loaded_keys
    assert "convnext.encoder.stages.2.layers.1.dwconv.weight" in info.unused_keys
    assert (
        "convnext.encoder.stages.3.layers.0.dwconv.weight (32, 1, 7, 7) vs expected (40, 1, 7, 7)"
        in info.mismatched_keys
    )
    assert "hsvlt.encoder.stages.3.layers.0.dwconv.weight" in info.newly_initialized_keys
    assert not any(key.startswith("hsvlt.encoder.stages.3.layers.") for key in info.loaded_keys)


def test_sources_that_are_not_convnext(tmp_path):
    ResNetConfig().save_pretrained(tmp_path / "resnet")
    with pytest.raises(ValueError, match="is a 'resnet' checkpoint; HSVLT's visual hierarchy needs a ConvNeXt"):
        build_hsvlt_from_convnext(tmp_path / "resnet", NAMES, label_embeddings())
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "fc.weight": torch.zeros(10, 4)}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match=r"resnet\.pth holds no ConvNeXt weights.*conv1\.weight"):
        load_convnext_weights(HSVLTModel(tiny_config()), tmp_path / "resnet.pth")
    with pytest.raises(TypeError, match="got int"):
        load_convnext_weights(HSVLTModel(tiny_config()), 3)
