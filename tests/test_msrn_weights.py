"""MSRN weights: ImageNet ResNet initialisation (transformers and torchvision layouts) and the authors' checkpoints."""

import json
import pickle

import numpy as np
import pytest
import torch
from reference_msrn import (
    TINY_RESNET,
    random_authors_state_dict,
    random_cooccurrence,
    reference_msrn,
    tiny_msrn_config,
)  # noqa: F401 (single_thread: an autouse fixture)
from transformers import ResNetConfig, ResNetModel

from transformers_hsvlt import MSRNForMultiLabelClassification
from transformers_hsvlt.cli.convert import main as convert_main
from transformers_hsvlt.msrn.architecture import ARCHITECTURE
from transformers_hsvlt.msrn.conversion import (
    authors_key,
    convert_msrn_checkpoint,
    load_resnet_weights,
    read_labels,
    torchvision_resnet_key,
)
from transformers_hsvlt.registry import LabelCooccurrence, LabelSide


def tiny_resnet() -> ResNetModel:
    torch.manual_seed(0)
    resnet = ResNetModel(ResNetConfig(**TINY_RESNET)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for name, buffer in resnet.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return resnet


def torchvision_layout(resnet: ResNetModel) -> dict[str, torch.Tensor]:
    """The ResNet's state dict under torchvision's names, by inverting `torchvision_resnet_key` over the torchvision
    keys of the authors' layout."""
    torchvision_keys = [
        key.removeprefix("resnet_101.")
        for key in random_authors_state_dict(tiny_msrn_config())
        if key.startswith("resnet_101.") and "conv_buffer" not in key
    ]
    inverse = {torchvision_resnet_key(key): key for key in torchvision_keys}
    state_dict = resnet.state_dict()
    assert set(inverse) == set(state_dict)  # the renaming is one to one
    return {inverse[key]: tensor for key, tensor in state_dict.items()} | {"fc.weight": torch.zeros(10, 128)}


def assert_taps_equal_source(model: MSRNForMultiLabelClassification, resnet: ResNetModel):
    pixel_values = torch.randn(2, 3, 64, 96)
    model.eval()
    with torch.no_grad():
        expected = resnet(pixel_values, output_hidden_states=True).hidden_states[2:]
        found = model.msrn.backbone(pixel_values, output_hidden_states=True).hidden_states[2:]
        levels = model.msrn.visual_levels(pixel_values)
    assert len(found) == 3
    for stage_expected, stage_found in zip(expected, found):
        torch.testing.assert_close(stage_found, stage_expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(levels[2], torch.nn.functional.max_pool2d(expected[2], 2), rtol=1e-6, atol=1e-6)


def label_side(num_labels=4, width=12):
    counts, pair_counts = random_cooccurrence(num_labels)
    return LabelSide(
        names=[f"label{index}" for index in range(num_labels)],
        embeddings=torch.randn(num_labels, width),
        cooccurrence=LabelCooccurrence(counts, pair_counts),
    )


@pytest.mark.slow
def test_build_from_transformers_resnet_directory(tmp_path):
    resnet = tiny_resnet()
    resnet.save_pretrained(tmp_path / "resnet")
    preset = dict(ARCHITECTURE.presets["tiny"].config)  # other ResNet widths: the source's architecture wins
    model = ARCHITECTURE.build(preset, label_side(), str(tmp_path / "resnet"))
    assert model.config.backbone_config.hidden_sizes == TINY_RESNET["hidden_sizes"]
    assert model.config.id2label[3] == "label3"
    assert_taps_equal_source(model, resnet)


@pytest.mark.slow
def test_load_torchvision_layout_pth(tmp_path):
    resnet = tiny_resnet()
    torch.save(torchvision_layout(resnet), tmp_path / "resnet101-tiny.pth")
    model = MSRNForMultiLabelClassification(tiny_msrn_config())
    load_resnet_weights(model, tmp_path / "resnet101-tiny.pth")
    assert_taps_equal_source(model, resnet)


def test_resnet_of_another_architecture_is_refused(tmp_path):
    state_dict = torchvision_layout(tiny_resnet())
    state_dict["layer4.0.conv3.weight"] = torch.zeros(64, 32, 1, 1)
    del state_dict["layer1.0.bn1.running_var"]
    model = MSRNForMultiLabelClassification(tiny_msrn_config())
    missing = r"missing: encoder\.stages\.0\.layers\.0\.layer\.0\.normalization\.running_var"
    with pytest.raises(ValueError, match=missing + r"; wrong shape: layer4\.0\.conv3\.weight \(64, 32, 1, 1\)"):
        load_resnet_weights(model, state_dict)
    with pytest.raises(ValueError, match="not a ResNet state dict: unknown keys head.weight"):
        load_resnet_weights(model, {"head.weight": torch.zeros(1)})


def test_authors_key_renaming():
    assert authors_key("resnet_101.layer3.5.bn2.running_var") == (
        "msrn.backbone.encoder.stages.2.layers.5.layer.1.normalization.running_var"
    )
    assert authors_key("resnet_101.layer2.0.downsample.0.weight") == (
        "msrn.backbone.encoder.stages.1.layers.0.shortcut.convolution.weight"
    )
    assert authors_key("resnet_101.conv_buffer2.bias") == "msrn.level_buffers.1.bias"
    assert authors_key("group_embed.layers.0.assign_mat.a") == "msrn.group_pooling.assign.attention_weight"
    assert authors_key("fc1.weight") == "head.hidden.weight"
    assert authors_key("W") is None and authors_key("resnet_101.conv_buffer0.weight") is None


def write_authors_files(tmp_path, config, seed=0):
    state_dict = random_authors_state_dict(config, seed=seed)
    checkpoint = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 12, "arch": "msrn", "state_dict": state_dict, "best_score": torch.tensor(81.5)}, checkpoint)
    counts, pair_counts = random_cooccurrence(config.num_labels, seed=seed)
    (tmp_path / "adj.pkl").write_bytes(pickle.dumps({"nums": counts, "adj": pair_counts}))
    vectors = np.random.default_rng(seed).standard_normal((config.num_labels, config.label_embedding_size))
    (tmp_path / "glove_word2vec.pkl").write_bytes(pickle.dumps(vectors.astype(np.float32)))
    (tmp_path / "label.txt").write_text("\n".join(f"class{index}" for index in range(config.num_labels)))
    return checkpoint, state_dict, torch.from_numpy(vectors).float(), counts, pair_counts


@pytest.mark.parametrize(("num_labels", "num_groups"), [(6, 2), (9, 3)])
@pytest.mark.slow
def test_convert_authors_checkpoint(tmp_path, num_labels, num_groups):
    config = tiny_msrn_config(num_labels, num_groups)
    checkpoint, state_dict, vectors, counts, pair_counts = write_authors_files(tmp_path, config)
    output = tmp_path / "converted"
    arguments = ["--architecture", "msrn", str(checkpoint), "--labels", str(tmp_path / "label.txt")]
    arguments += [
        "--label_embeddings",
        str(tmp_path / "glove_word2vec.pkl"),
        "--cooccurrence",
        str(tmp_path / "adj.pkl"),
    ]
    assert convert_main([*arguments, "--output", str(output)]) == 0
    model = MSRNForMultiLabelClassification.from_pretrained(output).eval()
    assert model.config.num_groups == num_groups and model.config.id2label[num_labels - 1] == f"class{num_labels - 1}"
    assert not any(key.endswith(("W", "B")) or "conv_buffer0" in key for key in model.state_dict())
    pixel_values = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        logits = model(pixel_values).logits
    expected = reference_msrn(state_dict, pixel_values, vectors, counts, pair_counts, TINY_RESNET["depths"])[0]
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert (output / "preprocessor_config.json").is_file() and (output / "modeling_msrn.py").is_file()
    assert json.loads((output / "preprocessor_config.json").read_text())["do_normalize"] is True  # ImageNet mean/std
    assert "**MSRN**" in (output / "README.md").read_text()


def test_conversion_errors_name_the_keys(tmp_path):
    config = tiny_msrn_config(5, 2)
    checkpoint, state_dict, *_ = write_authors_files(tmp_path, config)
    inputs = (tmp_path / "label.txt", tmp_path / "glove_word2vec.pkl", tmp_path / "adj.pkl")
    broken = dict(state_dict)
    del broken["ProjectM.1.bias"]
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=r"missing: msrn\.level_projections\.1\.bias; unexpected: extra\.weight"
    ) as error:
        convert_msrn_checkpoint(broken, *inputs)
    assert "\n" not in str(error.value)
    del broken["fc2.weight"]
    with pytest.raises(ValueError, match="missing fc2.weight"):
        convert_msrn_checkpoint(broken, *inputs)
    (tmp_path / "label.txt").write_text("a\nb\nc\n")
    with pytest.raises(ValueError, match="label names 3"):
        convert_msrn_checkpoint(checkpoint, *inputs)


def test_label_names_from_the_authors_category_json(tmp_path):
    (tmp_path / "category.json").write_text('{"person": 0, "car": 2, "bicycle": 1}')
    assert read_labels(tmp_path / "category.json") == ["person", "bicycle", "car"]
    (tmp_path / "bad.json").write_text('{"person": 0, "car": 2}')
    with pytest.raises(ValueError, match="indices 0..1"):
        read_labels(tmp_path / "bad.json")
