"""MultiLabelImageProcessor: the authors' preprocessing, every input kind, errors, saving, pipeline, post-processing."""

import ast
import io
import json
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoImageProcessor, ConvNextConfig, ConvNextForImageClassification, pipeline

from transformers_hsvlt.image_processing_multilabel import MultiLabelImageProcessor


def random_rgb(height=23, width=37, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pil_reference(image: PIL.Image.Image, height=448, width=448) -> np.ndarray:
    """The authors' preprocessing done directly with Pillow: bilinear resize of the RGB image, then /255, CHW."""
    resized = image.convert("RGB").resize((width, height), PIL.Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255


def pixels(processor, images, **kwargs) -> np.ndarray:
    return processor(images, return_tensors="pt", **kwargs)["pixel_values"].numpy()


@pytest.fixture(scope="module")
def processor():
    return MultiLabelImageProcessor()


def test_defaults_are_the_authors_preprocessing(processor):
    assert dict(processor.size) == {"height": 448, "width": 448}
    assert processor.do_resize and processor.do_rescale and processor.do_convert_rgb
    assert processor.rescale_factor == pytest.approx(1 / 255)
    assert processor.do_normalize is False
    assert processor.resample == PIL.Image.Resampling.BILINEAR
    assert list(processor.image_mean) == [0.485, 0.456, 0.406]
    assert list(processor.image_std) == [0.229, 0.224, 0.225]


def test_output_matches_pillow_resize_ignoring_aspect_ratio(processor):
    image = PIL.Image.fromarray(random_rgb())
    outputs = processor(images=image, return_tensors="pt")
    values = outputs["pixel_values"]
    assert values.shape == (1, 3, 448, 448) and values.dtype == torch.float32
    np.testing.assert_allclose(values[0].numpy(), pil_reference(image), atol=1e-6)


def test_non_square_size_is_height_then_width():
    image = PIL.Image.fromarray(random_rgb(40, 30))
    processor = MultiLabelImageProcessor(size={"height": 50, "width": 70})
    values = pixels(processor, image)
    assert values.shape == (1, 3, 50, 70)
    np.testing.assert_allclose(values[0], pil_reference(image, 50, 70), atol=1e-6)


def test_int_size_means_a_square():
    processor = MultiLabelImageProcessor(size=64)
    assert dict(processor.size) == {"height": 64, "width": 64}
    assert pixels(processor, random_rgb()).shape == (1, 3, 64, 64)


@pytest.mark.parametrize(
    "size", [{"shortest_edge": 448}, {"height": 0, "width": 448}, {"max_height": 4, "max_width": 4}]
)
def test_size_must_be_a_positive_height_and_width(size):
    with pytest.raises(ValueError, match="height.*width"):
        MultiLabelImageProcessor(size=size)


def array_inputs(rgb: np.ndarray) -> dict:
    """The same RGB image (HWC uint8) as every array and tensor layout and dtype the processor accepts."""
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    return {
        "numpy HWC uint8": rgb,
        "numpy CHW uint8": chw,
        "numpy HWC float32": rgb.astype(np.float32) / 255,
        "numpy CHW float64": chw.astype(np.float64) / 255,
        "numpy HWC uint16": rgb.astype(np.uint16) * 257,
        "numpy HWC int64": rgb.astype(np.int64),
        "torch CHW uint8": torch.from_numpy(chw),
        "torch HWC uint8": torch.from_numpy(rgb),
        "torch CHW float32": torch.from_numpy(chw).float() / 255,
        "torch CHW bfloat16 requires_grad": (torch.from_numpy(chw).float() / 255).bfloat16().requires_grad_(),
    }


@pytest.mark.parametrize("kind", list(array_inputs(random_rgb())))
def test_arrays_and_tensors_match_the_pil_image(processor, kind):
    rgb = random_rgb()
    expected = pil_reference(PIL.Image.fromarray(rgb))
    values = pixels(processor, array_inputs(rgb)[kind])
    assert values.shape == (1, 3, 448, 448)
    tolerance = 1e-6 if kind.endswith(("uint8", "int64")) else 1 / 255
    if "bfloat16" in kind:
        tolerance = 2 / 255  # bfloat16 keeps 8 significant bits
    np.testing.assert_allclose(values[0], expected, atol=tolerance)


def test_batches_lists_and_single_images_agree(processor):
    images = [random_rgb(seed=seed) for seed in range(3)]
    expected = np.stack([pil_reference(PIL.Image.fromarray(image)) for image in images])
    numpy_batch = np.stack(images)
    torch_batch = torch.from_numpy(numpy_batch).permute(0, 3, 1, 2)
    for batch in (numpy_batch, torch_batch, images, [PIL.Image.fromarray(image) for image in images]):
        np.testing.assert_allclose(pixels(processor, batch), expected, atol=1e-6)
    mixed = [numpy_batch[:2], PIL.Image.fromarray(images[2])]
    np.testing.assert_allclose(pixels(processor, mixed), expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 1, 1), (1, 1), (1, 1, 1)])
def test_one_pixel_images(processor, shape):
    value = np.full(shape, 200, dtype=np.uint8)
    values = pixels(processor, value)
    assert values.shape == (1, 3, 448, 448)
    np.testing.assert_allclose(values, 200 / 255, atol=1e-6)
    one_pixel = PIL.Image.new("RGB", (1, 1), (10, 20, 30))
    np.testing.assert_allclose(pixels(processor, one_pixel)[0, :, 0, 0], np.array([10, 20, 30]) / 255, atol=1e-6)


def test_ambiguous_layout_defaults_to_the_convention_of_the_input_type():
    """(4, 3, 4) has 4 channels first or last: NumPy arrays default to channels last, tensors to channels first."""
    processor = MultiLabelImageProcessor(do_resize=False)
    image = np.random.default_rng(3).integers(0, 256, (4, 3, 4), dtype=np.uint8)
    assert pixels(processor, image).shape == (1, 3, 4, 3)
    assert pixels(processor, torch.from_numpy(image)).shape == (1, 3, 3, 4)
    as_first = pixels(processor, image, input_data_format="channels_first")
    np.testing.assert_array_equal(as_first, pixels(processor, torch.from_numpy(image)))
    as_last = pixels(processor, torch.from_numpy(image), input_data_format="channels_last")
    np.testing.assert_array_equal(as_last, pixels(processor, image))


def test_grayscale_inputs_become_three_equal_channels(processor):
    gray = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    expected = np.asarray(PIL.Image.fromarray(gray).resize((448, 448), PIL.Image.Resampling.BILINEAR)) / 255
    for image in (gray, gray[..., None], gray[None], torch.from_numpy(gray), PIL.Image.fromarray(gray)):
        values = pixels(processor, image)[0]
        for channel in values:
            np.testing.assert_allclose(channel, expected, atol=1e-6)


def uniform_colour(processor, image) -> np.ndarray:
    """The RGB value of a processed image that must be uniform."""
    values = pixels(processor, image)[0]
    np.testing.assert_allclose(values, values[:, :1, :1] * np.ones_like(values), atol=1e-6)
    return values[:, 0, 0]


@pytest.mark.parametrize(
    "mode, colour, expected",
    [
        ("1", 1, (1.0, 1.0, 1.0)),
        ("L", 51, (0.2, 0.2, 0.2)),
        ("RGB", (255, 0, 51), (1.0, 0.0, 0.2)),
        ("RGBA", (255, 0, 0, 255), (1.0, 0.0, 0.0)),
        ("RGBA", (255, 0, 0, 0), (1.0, 1.0, 1.0)),
        ("RGBA", (0, 0, 0, 51), (0.8, 0.8, 0.8)),
        ("LA", (0, 0), (1.0, 1.0, 1.0)),
        ("LA", (0, 255), (0.0, 0.0, 0.0)),
        ("La", (100, 255), (100 / 255,) * 3),
        ("RGBa", (0, 0, 0, 0), (1.0, 1.0, 1.0)),
        ("CMYK", (255, 0, 0, 0), (0.0, 1.0, 1.0)),
        ("CMYK", (0, 255, 255, 0), (1.0, 0.0, 0.0)),
        ("CMYK", (0, 0, 0, 255), (0.0, 0.0, 0.0)),
        ("YCbCr", (128, 128, 128), (128 / 255,) * 3),
        ("HSV", (0, 255, 255), (1.0, 0.0, 0.0)),
        ("I;16", 65535, (1.0, 1.0, 1.0)),
        ("I;16", 32768, (32768 / 65535,) * 3),
        ("I;16B", 1000, (1000 / 65535,) * 3),
        ("I", 13107, (0.2, 0.2, 0.2)),
        ("F", 0.25, (0.25, 0.25, 0.25)),
    ],
)
def test_pil_modes_are_converted_to_rgb(processor, mode, colour, expected):
    image = PIL.Image.new(mode, (6, 4), colour)
    np.testing.assert_allclose(uniform_colour(processor, image), expected, atol=1 / 255 + 1e-6)


def test_sixteen_bit_precision_is_kept():
    """Two 16-bit values within the same 8-bit step stay distinct (float path, no rounding to 8 bits)."""
    processor = MultiLabelImageProcessor(size={"height": 4, "width": 4})
    for value in (30000, 30100):
        colour = uniform_colour(processor, PIL.Image.new("I;16", (8, 8), value))
        np.testing.assert_allclose(colour, value / 65535, atol=1e-6)
        colour = uniform_colour(processor, np.full((8, 8), value, dtype=np.uint16))
        np.testing.assert_allclose(colour, value / 65535, atol=1e-6)


def test_sixteen_bit_png_file(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 16).astype(np.uint16).reshape(16, 64)
    path = tmp_path / "ramp16.png"
    PIL.Image.fromarray(ramp).save(path)
    image = PIL.Image.open(path)
    assert image.mode in ("I", "I;16")
    values = pixels(MultiLabelImageProcessor(do_resize=False), image)[0]
    for channel in values:
        np.testing.assert_allclose(channel, ramp / 65535, atol=1e-6)


def test_palette_with_transparency_is_composited_onto_white(tmp_path):
    palette_image = PIL.Image.new("P", (4, 2), 0)
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    for x in (2, 3):
        for y in (0, 1):
            palette_image.putpixel((x, y), 1)
    path = tmp_path / "palette.png"
    palette_image.save(path, transparency=0)  # index 0 (red) is fully transparent
    image = PIL.Image.open(path)
    assert image.mode == "P" and "transparency" in image.info
    values = pixels(MultiLabelImageProcessor(do_resize=False), image)[0]
    np.testing.assert_allclose(values[:, :, :2], np.ones((3, 2, 2)), atol=1e-6)  # transparent red -> white
    np.testing.assert_allclose(values[:, :, 2:], np.array([0, 0, 1.0])[:, None, None] * np.ones((3, 2, 2)), atol=1e-6)


def test_cmyk_jpeg_file(tmp_path):
    path = tmp_path / "cmyk.jpg"
    PIL.Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(path, quality=100)
    image = PIL.Image.open(path)
    assert image.mode == "CMYK"
    colour = pixels(MultiLabelImageProcessor(do_resize=False), image)[0, :, 8, 8]
    np.testing.assert_allclose(colour, [0.0, 1.0, 1.0], atol=3 / 255)


def test_rgba_arrays_are_composited_like_pil(processor):
    rgba = np.random.default_rng(2).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    from_pil = pixels(processor, PIL.Image.fromarray(rgba, mode="RGBA"))
    from_numpy = pixels(processor, rgba)
    from_float = pixels(processor, torch.from_numpy(rgba).permute(2, 0, 1).float() / 255)
    np.testing.assert_allclose(from_numpy, from_pil, atol=1 / 255 + 1e-6)
    # The 8-bit path rounds twice (after compositing and after resizing), the float path never.
    np.testing.assert_allclose(from_float, from_pil, atol=1.5 / 255)


def exif_rotated_jpeg() -> tuple[bytes, np.ndarray]:
    """A 40x20 (width x height) JPEG with EXIF orientation 6 and a red marker in its stored top-left corner."""
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[...] = (0, 0, 255)
    stored[:8, :8] = (255, 0, 0)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored image must be rotated 90 degrees clockwise to be shown upright
    buffer = io.BytesIO()
    PIL.Image.fromarray(stored).save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue(), stored


def test_exif_orientation_is_applied():
    data, _ = exif_rotated_jpeg()
    decoded = np.asarray(PIL.Image.open(io.BytesIO(data)).convert("RGB"))  # stored pixels, orientation ignored
    values = pixels(MultiLabelImageProcessor(do_resize=False), PIL.Image.open(io.BytesIO(data)))[0]
    assert values.shape == (3, 40, 20)  # upright: 20 wide, 40 high
    np.testing.assert_allclose(values, np.rot90(decoded, k=-1).transpose(2, 0, 1) / 255, atol=1e-6)
    assert values[0, 2, 17] > 0.9 and values[2, 2, 17] < 0.1  # the red marker is now in the top-right corner
    assert values[0, 2, 2] < 0.1 and values[2, 2, 2] > 0.9


def test_local_paths_are_opened_keeping_their_mode(tmp_path):
    path = tmp_path / "transparent.png"
    PIL.Image.new("RGBA", (5, 5), (0, 0, 0, 0)).save(path)
    processor = MultiLabelImageProcessor(do_resize=False)
    for source in (path, str(path)):
        np.testing.assert_allclose(pixels(processor, source), 1.0)


def test_rescale_normalize_and_convert_options():
    rgb = random_rgb()
    reference = pil_reference(PIL.Image.fromarray(rgb))
    not_rescaled = pixels(MultiLabelImageProcessor(do_rescale=False), rgb)
    assert not_rescaled.dtype == np.float32
    np.testing.assert_allclose(not_rescaled[0], reference * 255, atol=1e-4)

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    normalized = pixels(MultiLabelImageProcessor(do_normalize=True), rgb)
    np.testing.assert_allclose(normalized[0], (reference - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    normalized = pixels(MultiLabelImageProcessor(), rgb, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    np.testing.assert_allclose(normalized[0], reference * 2 - 1, atol=1e-5)

    gray = np.full((10, 10), 255, dtype=np.uint8)
    assert pixels(MultiLabelImageProcessor(do_convert_rgb=False), gray).shape == (1, 1, 448, 448)


def test_unresized_images_of_different_sizes():
    processor = MultiLabelImageProcessor(do_resize=False)
    images = [random_rgb(10, 12), random_rgb(14, 9)]
    values = processor(images)["pixel_values"]
    assert [value.shape for value in values] == [(3, 10, 12), (3, 14, 9)]
    with pytest.raises(ValueError, match="different shapes"):
        processor(images, return_tensors="pt")


@pytest.mark.parametrize(
    "images, message",
    [
        (None, "got NoneType"),
        (42, "got int"),
        ({"image": 1}, "got dict"),
        ([], "at least one image"),
        (np.zeros((0, 4, 4, 3), dtype=np.uint8), "at least one image"),
        (np.zeros((10, 12, 5), dtype=np.uint8), r"1 \(grayscale\), 3 \(RGB\) or 4 \(RGBA\) channels.*\(10, 12, 5\)"),
        (np.zeros((10, 12, 2), dtype=np.uint8), r"channels in its first or last dimension, got shape \(10, 12, 2\)"),
        (np.zeros((0, 0, 3), dtype=np.uint8), r"non-empty image, got shape \(0, 0, 3\)"),
        (np.zeros((0,), dtype=np.uint8), r"2 dimensions \(height, width\) or 3.*got shape \(0,\)"),
        (np.zeros((1, 2, 3, 4, 5), dtype=np.uint8), r"got shape \(1, 2, 3, 4, 5\)"),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "48 NaN or infinite values"),
        (torch.full((3, 4, 4), float("inf")), "NaN or infinite"),
        (np.full((4, 4, 3), 255.0), r"\[0, 1\]; got values in \[255, 255\]"),
        (np.full((4, 4, 3), 300, dtype=np.int32), r"int32 values in \[300, 300\]"),
        (np.zeros((4, 4, 3), dtype=np.complex64), "Unsupported pixel type complex64"),
        (PIL.Image.new("F", (4, 4), 2.0), r"\[0, 1\]; got values in \[2, 2\]"),
        (PIL.Image.new("I", (4, 4), 70000), r"mode 'I'.*\[0, 65535\]; got values in \[70000, 70000\]"),
        ("not/an/existing/file.png", "Incorrect image source"),
        ([np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((4, 4, 3, 3, 3))], "Image 1 of the batch of 2"),
        ([np.zeros((4, 4, 3), dtype=np.uint8), None], "got NoneType"),
    ],
)
def test_bad_inputs_raise_value_errors_saying_what_was_expected(processor, images, message):
    with pytest.raises(ValueError, match=message):
        processor(images, return_tensors="pt")


def test_wrong_input_data_format(processor):
    with pytest.raises(ValueError, match="got 10 channels"):
        processor(np.zeros((10, 12, 3), dtype=np.uint8), input_data_format="channels_first")
    with pytest.raises(ValueError, match="not a valid ChannelDimension.*'channels_first', 'channels_last'"):
        processor(np.zeros((10, 12, 3), dtype=np.uint8), input_data_format="none")


def test_save_and_load_round_trip(tmp_path):
    processor = MultiLabelImageProcessor(size={"height": 64, "width": 96}, image_mean=[0.5, 0.5, 0.5])
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["size"] == {"height": 64, "width": 96}
    assert saved["do_normalize"] is False and saved["do_rescale"] is True and saved["do_convert_rgb"] is True
    assert saved["image_mean"] == [0.5, 0.5, 0.5] and saved["resample"] == 2
    assert saved["image_processor_type"] == "MultiLabelImageProcessor"
    assert saved["auto_map"] == {"AutoImageProcessor": "image_processing_multilabel.MultiLabelImageProcessor"}
    imported, relative = set(), set()
    for name in (
        "image_processing_multilabel.py",
        "image_conversion_multilabel.py",
    ):  # the processor and its one relative import
        for node in ast.walk(ast.parse((tmp_path / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                relative.add(node.module)
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
    assert relative == {"image_conversion_multilabel"}
    assert imported - sys.stdlib_module_names == {"numpy", "PIL", "torch", "transformers"}

    image = random_rgb()
    expected = pixels(processor, image)
    reloaded = MultiLabelImageProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    np.testing.assert_array_equal(pixels(reloaded, image), expected)

    auto = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    # the package registers its processor with AutoImageProcessor; the copied remote code is run in a fresh process
    # without the package in tests/test_remote_code.py
    assert type(auto).__name__ == "MultiLabelImageProcessor"
    assert dict(auto.size) == {"height": 64, "width": 96}
    np.testing.assert_array_equal(pixels(auto, image), expected)


def test_image_classification_pipeline(tmp_path):
    config = ConvNextConfig(
        num_channels=3,
        num_stages=2,
        hidden_sizes=[4, 8],
        depths=[1, 1],
        id2label={0: "cat", 1: "dog", 2: "car"},
        problem_type="multi_label_classification",
    )
    torch.manual_seed(0)
    model = ConvNextForImageClassification(config).eval()
    processor = MultiLabelImageProcessor(size={"height": 64, "width": 64})
    classifier = pipeline("image-classification", model=model, image_processor=processor)

    def expected_predictions(image):
        with torch.no_grad():
            logits = model(**processor(image, return_tensors="pt")).logits
        return processor.post_process_multi_label(logits, threshold=None, id2label=config.id2label)[0]

    path = tmp_path / "image.png"
    PIL.Image.fromarray(random_rgb(30, 20)).save(path)
    sixteen_bit = np.random.default_rng(4).integers(0, 65536, (3, 30, 20), dtype=np.uint16)
    for image in (PIL.Image.open(path), str(path), sixteen_bit):
        predictions = classifier(image, top_k=3)
        expected = expected_predictions(PIL.Image.open(path) if isinstance(image, str) else image)
        assert [prediction["label"] for prediction in predictions] == [entry["label"] for entry in expected]
        np.testing.assert_allclose(
            [prediction["score"] for prediction in predictions], [entry["score"] for entry in expected], atol=1e-6
        )


LOGITS = np.array([[2.0, -1.0, 0.0, 3.0, -4.0], [-2.0, -3.0, -1.0, -5.0, -0.5]])


def sigmoid(value):
    return 1 / (1 + np.exp(-value))


def test_post_process_threshold(processor):
    results = processor.post_process_multi_label(torch.from_numpy(LOGITS))
    assert [[entry["index"] for entry in image] for image in results] == [[3, 0, 2], []]
    first = results[0]
    assert [entry["label"] for entry in first] == ["LABEL_3", "LABEL_0", "LABEL_2"]
    np.testing.assert_allclose([entry["score"] for entry in first], sigmoid(np.array([3.0, 2.0, 0.0])))
    assert all(isinstance(entry["score"], float) and isinstance(entry["index"], int) for entry in first)
    low = processor.post_process_multi_label(LOGITS, threshold=0.25)
    assert [[entry["index"] for entry in image] for image in low] == [[3, 0, 2, 1], [4, 2]]


def test_post_process_top_k(processor):
    only_top_k = processor.post_process_multi_label(LOGITS, threshold=None, top_k=2)
    assert [[entry["index"] for entry in image] for image in only_top_k] == [[3, 0], [4, 2]]
    both = processor.post_process_multi_label(LOGITS, threshold=0.5, top_k=2)
    assert [[entry["index"] for entry in image] for image in both] == [[3, 0], []]
    everything = processor.post_process_multi_label(LOGITS, threshold=None)
    assert [[entry["index"] for entry in image] for image in everything] == [[3, 0, 2, 1, 4], [4, 2, 0, 1, 3]]
    more_than_labels = processor.post_process_multi_label(LOGITS, threshold=0.0, top_k=50)
    assert [len(image) for image in more_than_labels] == [5, 5]


def test_post_process_id2label_and_ties(processor):
    names = ["cat", "dog", "person", "car", "tree"]
    for id2label in (dict(enumerate(names)), names, {str(index): name for index, name in enumerate(names)}):
        results = processor.post_process_multi_label(LOGITS[:1], id2label=id2label)
        assert [entry["label"] for entry in results[0]] == ["car", "cat", "person"]
    tied = processor.post_process_multi_label(np.array([[1.0, 2.0, 1.0, 2.0]]), threshold=None, top_k=3)
    assert [entry["index"] for entry in tied[0]] == [1, 3, 0]


def test_post_process_extreme_logits(processor):
    logits = torch.tensor([[1000.0, -1000.0]], requires_grad=True)
    with np.errstate(all="raise"):
        results = processor.post_process_multi_label(logits, threshold=None)
    assert [(entry["index"], entry["score"]) for entry in results[0]] == [(0, 1.0), (1, 0.0)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": -0.1}, r"threshold must be a number in \[0, 1\]"),
        ({"threshold": 1.5}, r"threshold must be a number in \[0, 1\]"),
        ({"threshold": float("nan")}, r"threshold must be a number in \[0, 1\]"),
        ({"threshold": "0.5"}, r"threshold must be a number in \[0, 1\]"),
        ({"threshold": True}, r"threshold must be a number in \[0, 1\]"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"top_k": 1.5}, "top_k must be an integer >= 1"),
        ({"top_k": True}, "top_k must be an integer >= 1"),
        ({"id2label": ["a", "b"]}, r"name the 5 labels.*missing indices \[2, 3, 4\]"),
        ({"id2label": {index: "x" for index in range(6)}}, r"unexpected indices \[5\]"),
        ({"id2label": {"first": "a"}}, "id2label keys must be label indices"),
        ({"id2label": "abcde"}, "id2label must be a mapping"),
        ({"logits": LOGITS[0]}, r"shape \(batch_size, num_labels\).*got shape \(5,\).*logits\[None\]"),
        ({"logits": LOGITS[None]}, r"got shape \(1, 2, 5\)"),
        ({"logits": np.zeros((2, 0))}, "num_labels >= 1"),
        ({"logits": LOGITS.tolist()}, "torch.Tensor or numpy.ndarray.*got list"),
        ({"logits": np.array([[0.0, np.nan]])}, "1 NaN values"),
        ({"logits": np.array([["a", "b"]])}, "real numbers"),
    ],
)
def test_post_process_validation(processor, kwargs, message):
    logits = kwargs.pop("logits", LOGITS)
    with pytest.raises(ValueError, match=message):
        processor.post_process_multi_label(logits, **kwargs)
