"""The embedded digit-canvas dataset and the chance-level mAP."""

import numpy as np
import pytest
from datasets import Dataset, Image
from sklearn.datasets import load_digits
from sklearn.metrics import average_precision_score

from transformers_hsvlt.data import (
    DIGIT_CLASS_NAMES,
    build_digit_canvases,
    chance_level_map,
    expected_random_average_precision,
    get_class_names,
    multilabel_features,
)
from transformers_hsvlt.data.digits import _upscale


@pytest.fixture(scope="module")
def canvases():
    return build_digit_canvases(num_train=120, num_test=60, seed=3)


def test_schema_and_metadata_match_the_digits_drawn(canvases):
    digits = load_digits()
    assert list(canvases) == ["train", "test"]
    assert get_class_names(canvases) == list(DIGIT_CLASS_NAMES) == ["zero", "one", "two", "three", "four",
                                                                     "five", "six", "seven", "eight", "nine"]  # fmt: skip
    common = multilabel_features(DIGIT_CLASS_NAMES)
    for split in canvases.values():
        assert {name: split.features[name] for name in common} == dict(common)
        for example in split.select_columns(["labels", "digits", "source_indices", "boxes"]):
            assert 2 <= len(example["digits"]) <= 4
            assert example["digits"] == digits.target[example["source_indices"]].tolist()
            assert example["labels"] == sorted(set(example["digits"]))


def test_canvas_pixels_show_the_source_digits_in_disjoint_boxes(canvases):
    images = load_digits().images
    for example in canvases["train"].select(range(20)):
        canvas = np.asarray(example["image"], dtype=np.float64)
        assert canvas.shape == (64, 64, 3) and example["image"].mode == "RGB"
        covered = np.zeros((64, 64), dtype=int)
        for (x0, y0, x1, y1), source in zip(example["boxes"], example["source_indices"]):
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64 and x1 - x0 == y1 - y0
            covered[y0:y1, x0:x1] += 1
            brightness = canvas[y0:y1, x0:x1].mean(axis=2).ravel()
            expected = _upscale(images[source], x1 - x0).ravel()
            assert np.corrcoef(brightness, expected)[0, 1] > 0.95  # the drawn glyph is that source digit (plus noise)
        assert covered.max() == 1  # no overlap
        outside = canvas[covered == 0]
        # background: one grey level plus per-pixel noise (std 6, clipped at 0 on black backgrounds), no ink
        assert 1 < outside.std() < 9
        assert np.percentile(np.abs(outside - np.median(outside)), 99) < 20


def raw(data, split):
    """The stored image values (PNG bytes) of a split, undecoded."""
    return data[split].cast_column("image", Image(decode=False))["image"]


def test_deterministic_and_seed_dependent():
    first = build_digit_canvases(num_train=8, num_test=4, seed=7)
    again = build_digit_canvases(num_train=8, num_test=4, seed=7)
    other = build_digit_canvases(num_train=8, num_test=4, seed=8)
    assert raw(first, "train") == raw(again, "train") and raw(first, "test") == raw(again, "test")
    assert first["train"]["source_indices"] == again["train"]["source_indices"]
    assert raw(first, "train") != raw(other, "train")
    assert all(item["path"] is None and item["bytes"].startswith(b"\x89PNG") for item in raw(first, "train"))
    # the test split does not depend on the size of the train split
    bigger = build_digit_canvases(num_train=16, num_test=4, seed=7)
    assert raw(bigger, "test") == raw(first, "test")


def test_train_and_test_use_disjoint_source_digits():
    data = build_digit_canvases(num_train=600, num_test=300, seed=0)
    train = {i for row in data["train"]["source_indices"] for i in row}
    test = {i for row in data["test"]["source_indices"] for i in row}
    assert train and test and not train & test
    assert {d for row in data["test"]["labels"] for d in row} == set(range(10))


def test_argument_validation():
    with pytest.raises(ValueError, match="min_digits <= max_digits"):
        build_digit_canvases(4, 4, min_digits=3, max_digits=2)
    with pytest.raises(ValueError, match="test_fraction"):
        build_digit_canvases(4, 4, test_fraction=1.0)


def average_precisions(truth, scores):
    """Non-interpolated AP of each row of ``scores`` (T, N) against the 0/1 vector ``truth`` (N,)."""
    ranked = truth[np.argsort(-scores, axis=1)]
    precision = np.cumsum(ranked, axis=1) / np.arange(1, truth.size + 1)
    return (precision * ranked).sum(axis=1) / truth.sum()


def test_expected_random_average_precision_matches_simulation():
    rng = np.random.default_rng(0)
    for positives, items in [(1, 7), (3, 10), (9, 12)]:
        truth = np.zeros(items)
        truth[:positives] = 1
        scores = rng.random((20000, items))
        simulated = average_precisions(truth, scores)
        assert simulated[:5] == pytest.approx([average_precision_score(truth, row) for row in scores[:5]])
        assert expected_random_average_precision(positives, items) == pytest.approx(simulated.mean(), abs=0.005)
    assert expected_random_average_precision(1, 1) == 1.0
    assert expected_random_average_precision(5, 5) == 1.0
    assert expected_random_average_precision(500, 10_000) == pytest.approx(0.05, abs=0.001)


def test_chance_level_map_removes_ignored_entries_and_skips_empty_classes():
    features = multilabel_features(["a", "b", "c"], with_ignore=True)
    dataset = Dataset.from_dict(
        {
            "image": ["1.png", "2.png", "3.png", "4.png"],
            "labels": [[0], [0, 1], [], [1]],
            "ignore": [[1], [], [0], []],  # class c has no positive: left out
        },
        features=features,
    )
    expected = (expected_random_average_precision(2, 3) + expected_random_average_precision(2, 3)) / 2
    assert chance_level_map(dataset) == pytest.approx(100 * expected)
    digits_chance = chance_level_map(build_digit_canvases(num_train=4, num_test=200, seed=1)["test"])
    assert 20 < digits_chance < 40  # percent; ~2.7 distinct digits of 10 per canvas
