"""`pipeline("image-classification")` and `hsvlt-predict` read images alike and give the same scores."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from transformers_hsvlt import HSVLTConfig, HSVLTForMultiLabelClassification, MultiLabelImageProcessor
from transformers_hsvlt.cli import predict as predict_cli
from transformers_hsvlt.hub import prepare_for_push
from transformers_hsvlt.images import load_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = HSVLTConfig(
        depths=[1, 1], hidden_sizes=[8, 16], label_embedding_size=4, id2label={0: "a", 1: "b", 2: "c"}, image_size=32
    )
    directory = tmp_path_factory.mktemp("checkpoint")
    prepare_for_push(
        HSVLTForMultiLabelClassification(config).eval(),
        MultiLabelImageProcessor(size={"height": 32, "width": 32}),
        directory,
    )
    return directory


def tricky_images(directory):
    """A 16-bit grayscale PNG and a half-transparent RGBA PNG: Pillow's plain RGB conversion mishandles both."""
    rng = np.random.default_rng(0)
    sixteen_bit = directory / "sixteen.png"
    Image.fromarray(rng.integers(0, 65535, (40, 48), dtype=np.uint16)).save(sixteen_bit)
    transparent = directory / "transparent.png"
    rgba = rng.integers(0, 255, (40, 48, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    Image.fromarray(rgba, mode="RGBA").save(transparent)
    return [sixteen_bit, transparent]


def test_pipeline_and_cli_agree_on_16_bit_and_transparent_images(checkpoint, tmp_path, capsys):
    assert json.loads((checkpoint / "config.json").read_text())["custom_pipelines"]["image-classification"]
    paths = tricky_images(tmp_path)
    classifier = pipeline("image-classification", model=str(checkpoint), trust_remote_code=True, top_k=None)
    assert type(classifier).__name__ == "MultiLabelImageClassificationPipeline"
    assert predict_cli.main([str(checkpoint), *map(str, paths), "--threshold", "0", "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    for path, entry in zip(paths, from_cli):
        cli_scores = {label["label"]: label["score"] for label in entry["predictions"]}
        pipeline_scores = {label["label"]: label["score"] for label in classifier(str(path))}
        assert pipeline_scores == pytest.approx(cli_scores, abs=1e-6)


def test_pipeline_pixels_are_the_toolkits_not_pillows(checkpoint, tmp_path):
    classifier = pipeline("image-classification", model=str(checkpoint), trust_remote_code=True)
    processor = MultiLabelImageProcessor(size={"height": 32, "width": 32})
    for path in tricky_images(tmp_path):
        pipeline_pixels = classifier.preprocess(str(path))["pixel_values"]
        toolkit_pixels = processor(load_image(path), return_tensors="pt")["pixel_values"]
        pillow_pixels = processor(Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(pipeline_pixels, toolkit_pixels, rtol=0, atol=0)
        assert (pipeline_pixels - pillow_pixels).abs().max() > 0.2  # clipped 16-bit values, black transparency


def test_top_k_none_returns_every_label(tmp_path):
    """More labels than transformers' default top 5: `top_k=None`, given to `pipeline` or to the call, ranks all."""
    names = [f"label{index}" for index in range(7)]
    config = HSVLTConfig(
        depths=[1, 1], hidden_sizes=[8, 16], label_embedding_size=4, id2label=dict(enumerate(names)), image_size=32
    )
    prepare_for_push(
        HSVLTForMultiLabelClassification(config).eval(),
        MultiLabelImageProcessor(size={"height": 32, "width": 32}),
        tmp_path,
    )
    image = Image.new("RGB", (40, 30), "gray")
    every = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True, top_k=None)(image)
    assert sorted(label["label"] for label in every) == names
    assert [label["score"] for label in every] == sorted((label["score"] for label in every), reverse=True)
    default = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True)
    assert default(image) == [label for label in every if label["score"] >= 0.5]  # no top_k: the labels decided
    assert len(default(image, top_k=None)) == 7 and len(default(image, top_k=2)) == 2


def test_nan_weights_and_pixels_are_refused_by_the_python_api(checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    for path in checkpoint.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    weights = load_file(broken / "model.safetensors")
    weights["classifier.weight"][0, 0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"NaN or infinite values in \['classifier.weight'\]"):
        pipeline("image-classification", model=str(broken), trust_remote_code=True)

    model = HSVLTForMultiLabelClassification.from_pretrained(checkpoint)
    pixels = torch.rand(1, 3, 32, 32)
    pixels[0, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="`pixel_values` holds NaN or infinite values"):
        model(pixels)
