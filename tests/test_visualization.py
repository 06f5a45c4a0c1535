"""Heatmaps (Grad-CAM and friends, pointing game), prediction figures and evaluation plots."""

import sys
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_config
from torch import nn

from transformers_hsvlt import HSVLTForMultiLabelClassification
from transformers_hsvlt.registry import Architecture, Paper, Preset, get_architecture, register
from transformers_hsvlt.visualization.gradcam import (
    METHODS,
    add_label_heatmaps,
    heatmap_peak,
    label_heatmaps,
    pointing_game,
    upsample_heatmaps,
)


matplotlib = pytest.importorskip("matplotlib", reason="figures and plots need matplotlib (the demo extra)")
from transformers_hsvlt.visualization.figures import (  # noqa: E402
    MIN_PANEL_SIDE,
    labels_in_file_name,
    prediction_figure,
    save_prediction_figure,
    save_raw_maps,
    unique_stems,
)
from transformers_hsvlt.visualization.plots import (  # noqa: E402
    plot_f1_against_threshold,
    plot_per_class_ap,
    plot_precision_recall,
    plot_training_curves,
    save_evaluation_plots,
)


@pytest.fixture(scope="module")
def hsvlt():
    torch.manual_seed(0)
    return HSVLTForMultiLabelClassification(tiny_config()).eval()


class GlobalPoolingClassifier(nn.Module):
    """Toy CAM network: one conv stage, global average pooling, a linear layer. Grad-CAM of such a network is the
    class activation map `ReLU(sum_c w_kc A_c) / (H W)` (Selvaraju et al., section 3.1)."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(model_type="toy-cam", num_labels=3)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, pixel_values, output_hidden_states=False, output_attentions=False):
        features = self.conv(pixel_values)
        return SimpleNamespace(logits=self.head(features.mean(dim=(2, 3))), hidden_states=(pixel_values, features))


@pytest.fixture(scope="module")
def toy_architecture():
    return register(
        Architecture(
            name="toy-cam", config_class=None, base_model_class=None, model_class=GlobalPoolingClassifier,
            presets={"base": Preset(), "tiny": Preset()}, build=None, paper=Paper("toy", "", "", ""),
            feature_maps=lambda outputs, config: outputs.hidden_states[1:],
        )
    )  # fmt: skip


def test_gradcam_of_a_global_pooling_network_is_its_class_activation_map(toy_architecture):
    torch.manual_seed(1)
    model, pixels = GlobalPoolingClassifier(), torch.randn(2, 3, 6, 5)
    maps = label_heatmaps(model, pixels, [2, 0], method="gradcam", stage=0)
    features = model.conv(pixels).detach()
    expected = torch.relu(torch.einsum("kc,bchw->bkhw", model.head.weight[[2, 0]].detach(), features)) / 30
    assert maps.shape == (2, 2, 6, 5)
    torch.testing.assert_close(maps, expected)
    # gradient x activation keeps the per-pixel product, which for this network is the same map
    torch.testing.assert_close(label_heatmaps(model, pixels, [2, 0], method="gradxact", stage=0), expected)


def test_gradient_x_input_of_a_linear_network_adds_up_to_the_logit(toy_architecture):
    torch.manual_seed(2)
    model, pixels = GlobalPoolingClassifier(), torch.rand(2, 3, 6, 5)
    with torch.no_grad():  # positive weights and inputs, no bias: every pixel's contribution is positive
        for parameter in (model.conv.weight, model.head.weight):
            parameter.abs_()
        model.conv.bias.zero_()
        model.head.bias.zero_()
    maps = label_heatmaps(model, pixels, [1, 2], method="gradxinput", stage=0)
    assert maps.shape == (2, 2, 6, 5)
    # a linear function is the sum of gradient x input over its inputs (pooling to the 6x5 stage keeps each pixel)
    torch.testing.assert_close(maps.sum(dim=(2, 3)), model(pixels).logits[:, [1, 2]].detach())


def test_toy_architecture_without_attention_refuses_the_attention_method(toy_architecture):
    with pytest.raises(ValueError, match="no attention maps"):
        label_heatmaps(GlobalPoolingClassifier(), torch.randn(1, 3, 4, 4), [0], method="attention", stage=0)


@pytest.mark.parametrize("method", METHODS)
def test_hsvlt_heatmaps_per_method_and_stage(hsvlt, method):
    pixels = torch.rand(2, 3, 64, 64)
    sizes = [16, 8, 4, 2]  # patch 4, then halved per stage
    for stage in (0, -1):
        maps = label_heatmaps(hsvlt, pixels, [4, 1, 3], method=method, stage=stage)
        assert maps.shape == (2, 3, sizes[stage], sizes[stage]) and maps.dtype == torch.float32
        assert (maps >= 0).all() and torch.isfinite(maps).all()
    combined = label_heatmaps(hsvlt, pixels, [0, 2], method=method, stage=(1, 2))
    assert combined.shape == (2, 2, 8, 8) and combined.max() <= 1 + 1e-6
    # images are independent: the map of an image does not depend on the rest of its batch
    alone = label_heatmaps(hsvlt, pixels[1:], [4, 1, 3], method=method, stage=1)
    torch.testing.assert_close(label_heatmaps(hsvlt, pixels, [4, 1, 3], method=method, stage=1)[1:], alone)


def test_attention_method_is_the_architectures_attention_and_gradcam_differs(hsvlt):
    pixels = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        outputs = hsvlt(pixels, output_attentions=True, output_hidden_states=True)
    expected = get_architecture("hsvlt").attention_maps(outputs, hsvlt.config, 2)[:, [3, 0]]
    torch.testing.assert_close(label_heatmaps(hsvlt, pixels, [3, 0], method="attention", stage=2), expected)
    gradcam = label_heatmaps(hsvlt, pixels, [3, 0], method="gradcam", stage=2)
    assert not torch.allclose(gradcam[0, 0], gradcam[0, 1])  # one map per label, not one per image


def test_heatmaps_need_no_trainable_weights(hsvlt):
    pixels = torch.rand(1, 3, 64, 64)
    expected = label_heatmaps(hsvlt, pixels, [1], stage=0)
    hsvlt.requires_grad_(False)
    try:
        torch.testing.assert_close(label_heatmaps(hsvlt, pixels, [1], stage=0), expected)
    finally:
        hsvlt.requires_grad_(True)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(label_indices=[5]), "label_indices"),
        (dict(label_indices=[]), "label_indices"),
        (dict(label_indices=[0], stage=4), "stage"),
        (dict(label_indices=[0], stage=()), "stage"),
        (dict(label_indices=[0], method="saliency"), "method"),
    ],
)
def test_bad_heatmap_arguments_are_refused(hsvlt, arguments, message):
    with pytest.raises(ValueError, match=message):
        label_heatmaps(hsvlt, torch.rand(1, 3, 64, 64), **arguments)


def test_add_label_heatmaps_fills_each_predicted_label(hsvlt):
    pixels = torch.rand(2, 3, 64, 64)
    predictions = [
        SimpleNamespace(labels=[{"label": "car", "score": 0.9, "index": 3}], heatmaps={}),
        SimpleNamespace(labels=[], heatmaps={}),
    ]
    add_label_heatmaps(hsvlt, pixels, predictions, method="gradcam", stage=1)
    assert list(predictions[0].heatmaps) == ["car"] and predictions[1].heatmaps == {}
    expected = label_heatmaps(hsvlt, pixels[:1], [3], method="gradcam", stage=1)[0, 0].numpy()
    np.testing.assert_allclose(predictions[0].heatmaps["car"], expected, rtol=1e-5, atol=1e-7)


def test_peak_and_pointing_game():
    heatmap = torch.zeros(8, 8)
    heatmap[2, 5] = 1.0
    assert heatmap_peak(heatmap) == (5.0, 2.0)
    plateau = torch.zeros(8, 8)
    plateau[0:2, 6:8] = 3.0  # a flat maximum, as at the border of an upsampled map: its centroid
    assert heatmap_peak(plateau) == (6.5, 0.5)
    maps = torch.stack([heatmap, plateau])[None]  # one image, two labels
    hits, pairs = pointing_game(maps, [{0: [[4, 1, 7, 4]], 1: [[0, 0, 3, 3], [6, 0, 8, 1]]}])
    assert (hits, pairs) == (2, 2)
    hits, pairs = pointing_game(maps, [{0: [[0, 0, 5, 8]], 1: [[0, 4, 8, 8]]}])  # x=5 is past the box [0, 5)
    assert (hits, pairs) == (0, 2)


def test_upsampled_peak_stays_in_the_cell_of_the_coarse_maximum():
    coarse = torch.zeros(1, 1, 4, 4)
    coarse[0, 0, 1, 2] = 1.0
    x, y = heatmap_peak(upsample_heatmaps(coarse, 64, 64)[0, 0])
    assert 32 <= x < 48 and 16 <= y < 32


def _prediction(labels, heatmaps):
    return SimpleNamespace(labels=[{"label": n, "score": s, "index": i} for i, (n, s) in enumerate(labels)],
                           heatmaps=heatmaps)  # fmt: skip


def _image_axes(figure):
    return [axis for axis in figure.axes if axis.images]


def test_prediction_figure_panels_size_and_heat(tmp_path):
    image = PIL.Image.fromarray(np.full((64, 48, 3), 90, dtype=np.uint8))
    hot_corner = np.zeros((4, 4), dtype=np.float32)
    hot_corner[0, 0] = 1.0
    prediction = _prediction([("cat", 0.91), ("dog", 0.62)], {"cat": hot_corner, "dog": np.zeros((4, 4))})
    figure = prediction_figure(image, prediction, ground_truth=["cat", "tree"])
    assert len(_image_axes(figure)) == 3
    titles = [axis.get_title() for axis in figure.axes]
    assert "cat  0.91  \u2713" in titles and "dog  0.62  \u2717" in titles
    texts = " ".join(text.get_text() for axis in figure.axes for text in axis.texts)
    assert "truth: cat, tree" in texts and "missed: tree" in texts and "flat map" in texts
    path = save_prediction_figure(image, prediction, tmp_path / "sub" / "figure.png", ground_truth=["cat"])
    saved = np.asarray(PIL.Image.open(path).convert("RGB"), dtype=np.float64)
    assert saved.shape[0] >= MIN_PANEL_SIDE and saved.shape[1] >= 3 * MIN_PANEL_SIDE * 48 / 64
    assert saved.std() > 20  # not blank
    # the heat panel is coloured where its map is hot (top-left), unlike the flat grey input
    colourfulness = saved.max(axis=2) - saved.min(axis=2)
    width = saved.shape[1] // 3
    assert colourfulness[:, width : 2 * width].max() > 100 and colourfulness[:, :width].max() < 30


def test_prediction_figure_without_labels_says_so():
    image = PIL.Image.new("RGB", (20, 20), "white")
    figure = prediction_figure(image, _prediction([], {}))
    assert len(_image_axes(figure)) == 1
    assert "no label scores above the threshold" in figure.axes[0].texts[0].get_text()


def test_unique_stems_and_raw_maps(tmp_path):
    sources = ["a/x.png", "b/x.png", "c/y.jpg", "c/y.jpg", "https://host/path/x.png?s=1", "weird name!.png"]
    stems = unique_stems(sources)
    assert len(set(stems)) == len(stems)
    assert stems[2] == "y" and stems[3] == "y-2" and stems[5] == "weird_name"
    assert stems[0].endswith("x") and stems[1].endswith("x")
    prediction = _prediction([("traffic light", 0.8)], {"traffic light": np.arange(6, dtype=np.float32).reshape(2, 3)})
    (path,) = save_raw_maps(prediction, tmp_path, stems[0])
    assert path.name == f"{stems[0]}_traffic_light.npy"
    np.testing.assert_array_equal(np.load(path), prediction.heatmaps["traffic light"])


@pytest.fixture
def evaluation():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, size=(60, 5))
    targets[:, 4] = 0  # a class without positives
    targets[0, 1] = -1  # an ignored entry
    scores = np.clip(0.4 * targets + 0.6 * rng.random(targets.shape), 0, 1)
    return scores, targets, ["cat", "dog", "person", "car", "tree"]


def test_evaluation_plots_content(tmp_path, evaluation):
    scores, targets, names = evaluation
    state = {"log_history": [
        {"epoch": 1.0, "loss": 0.6, "step": 10}, {"epoch": 1.0, "eval_loss": 0.5, "eval_mAP": 40.0, "step": 10},
        {"epoch": 2.0, "loss": 0.4, "step": 20}, {"epoch": 2.0, "eval_loss": 0.45, "eval_mAP": 55.0, "step": 20},
    ]}  # fmt: skip
    paths = save_evaluation_plots(tmp_path / "plots", scores, targets, names, trainer_state=state)
    assert [p.name for p in paths] == ["per_class_ap.png", "precision_recall.png", "f1_threshold.png",
                                       "training_curves.png"]  # fmt: skip
    for path in paths:
        pixels = np.asarray(PIL.Image.open(path).convert("L"), dtype=np.float64)
        assert min(pixels.shape) >= 300 and pixels.std() > 10
    ap_figure = plot_per_class_ap(scores, targets, names)
    assert len(ap_figure.axes[0].patches) == 5
    assert "no positive" in [text.get_text() for text in ap_figure.axes[0].texts]
    pr_axis = plot_precision_recall(scores, targets, names).axes[0]
    assert len(pr_axis.lines) == 4  # the classes with a positive
    assert {text.get_text().split(":")[0] for text in pr_axis.get_legend().get_texts()} == {"best", "worst"}
    assert len(save_evaluation_plots(tmp_path / "no_state", scores, targets, names)) == 3


def test_training_curves_label_their_axes_and_count_whole_epochs(evaluation):
    state = {"log_history": [{"epoch": float(epoch), "eval_loss": 1 / epoch, "eval_mAP": 50 + epoch} for epoch in
                             range(1, 4)]}  # fmt: skip
    figure = plot_training_curves(state)
    loss_axis, map_axis = figure.axes
    assert (loss_axis.get_ylabel(), map_axis.get_ylabel()) == ("loss", "mAP (%)")
    figure.canvas.draw()
    for axis in (loss_axis, map_axis):
        ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks


def test_f1_plot_says_when_cf1_and_of1_overlap(evaluation):
    scores, targets, _ = evaluation
    notes = [text.get_text() for text in plot_f1_against_threshold(scores[:, :1], targets[:, :1]).axes[0].texts]
    assert any(note.startswith("CF1 and OF1 overlap") for note in notes)  # one class: CF1 = OF1
    notes = [text.get_text() for text in plot_f1_against_threshold(scores, targets).axes[0].texts]
    assert not any(note.startswith("CF1 and OF1 overlap") for note in notes)


def test_plots_refuse_mismatched_class_names(tmp_path, evaluation):
    scores, targets, names = evaluation
    with pytest.raises(ValueError, match="class_names"):
        save_evaluation_plots(tmp_path, scores, targets, names[:3])


def test_missing_matplotlib_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[demo\]"'):
        prediction_figure(PIL.Image.new("RGB", (8, 8)), _prediction([], {}))


@pytest.mark.parametrize(
    "source, expected",
    [
        ("hsvlt-digits/examples/00_one-four-five.png", ["one", "four", "five"]),
        ("examples/07_none.png", []),
        ("https://example.com/x/03_five-seven.jpg?raw=1", ["five", "seven"]),
        ("photo.png", None),  # not an example's name
        ("00_one-eleven.png", None),  # a label the model does not have
        ("one-two.png", None),
    ],
)
def test_true_labels_from_an_examples_file_name(source, expected):
    names = ["one", "two", "four", "five", "seven"]
    assert labels_in_file_name(source, names) == expected
