"""Tests of the multi-label metric: the numpy core, the `evaluate` module and the `Trainer` helpers.

Every metric is returned in percent; hand-computed expectations are written as fractions and scaled by 100.
"""

import math
import socket
import time
import warnings

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import average_precision_score, precision_score, recall_score
from transformers import EvalPrediction

from transformers_hsvlt.evaluation.metrics import (
    AUTHORS_LOGIT_THRESHOLDS,
    MULTILABEL_METRIC_PATH,
    compute_metrics_fn,
    format_metric_table,
    load_multilabel_metric,
    multilabel_metrics,
    sigmoid,
    swept_threshold_metrics,
)


PRF_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def ap_of(scores, labels):
    """Per-class AP (percent) of a single class given as 1-D lists."""
    return multilabel_metrics(np.asarray(scores)[:, None], np.asarray(labels)[:, None])["per_class_AP"][0]


def random_problem(seed, num_images=300, num_classes=12, ignore_rate=0.0):
    rng = np.random.default_rng(seed)
    scores = rng.random((num_images, num_classes))  # continuous: no ties
    references = (rng.random((num_images, num_classes)) < 0.2).astype(np.int64)
    references[0] = 1  # every class has a positive
    references[rng.random(references.shape) < ignore_rate] = -1
    references[0] = 1
    return scores, references


# --------------------------------------------------------------------------------------------- average precision


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("ignore_rate", [0.0, 0.15])
def test_ap_matches_sklearn_without_ties(seed, ignore_rate):
    scores, references = random_problem(seed, ignore_rate=ignore_rate)
    results = multilabel_metrics(scores, references)
    expected = []
    for k in range(scores.shape[1]):
        kept = references[:, k] != -1  # sklearn has no "ignore": drop the ignored rows of that class
        expected.append(100 * average_precision_score(references[kept, k], scores[kept, k]))
    np.testing.assert_allclose(results["per_class_AP"], expected, rtol=1e-12)
    assert results["mAP"] == pytest.approx(np.mean(expected), rel=1e-12)


def test_ap_matches_sklearn_with_ties():
    # sklearn also treats tied scores as one threshold, so the two agree on tied data too.
    rng = np.random.default_rng(7)
    scores = np.round(rng.random((500, 6)), 1)
    references = (rng.random((500, 6)) < 0.3).astype(np.int64)
    references[0] = 1
    expected = [100 * average_precision_score(references[:, k], scores[:, k]) for k in range(6)]
    np.testing.assert_allclose(multilabel_metrics(scores, references)["per_class_AP"], expected, rtol=1e-12)


def test_ap_hand_computed():
    # Ranks 1..4 by descending score; positives at ranks 1 and 3: AP = (1/1 + 2/3) / 2 = 5/6.
    assert ap_of([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(100 * 5 / 6)
    # Input order does not matter, only the ranking.
    assert ap_of([0.7, 0.6, 0.9, 0.8], [1, 0, 1, 0]) == pytest.approx(100 * 5 / 6)
    # Positives at ranks 2 and 4: (1/2 + 2/4) / 2 = 1/2.
    assert ap_of([0.9, 0.8, 0.7, 0.6], [0, 1, 0, 1]) == pytest.approx(50.0)
    # All positives ranked first: 1.
    assert ap_of([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0]) == pytest.approx(100.0)


def test_ap_ignored_entries_take_no_rank():
    # The ignored 0.8 is removed: 0.9 (+), 0.7 (+), 0.6 (-) -> positives at ranks 1 and 2: AP = 1.
    assert ap_of([0.9, 0.8, 0.7, 0.6], [1, -1, 1, 0]) == pytest.approx(100.0)
    # The ignored 0.7 is removed: 0.9 (-), 0.8 (+), 0.6 (+) -> (1/2 + 2/3) / 2 = 7/12.
    assert ap_of([0.9, 0.8, 0.7, 0.6], [0, 1, -1, 1]) == pytest.approx(100 * 7 / 12)


def test_ap_ties_are_one_rank():
    # 0.9 (+) | 0.5 (+), 0.5 (-) | 0.1 (+). The tie group is retrieved as a whole: its positive gets the
    # precision after the group, 2 hits / 3 retrieved. AP = (1/1 + 2/3 + 3/4) / 3 = 29/36, whatever the order
    # of the tied entries (ranking the tied positive first would give (1 + 2/2 + 3/4) / 3 = 11/12).
    assert ap_of([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 1]) == pytest.approx(100 * 29 / 36)
    assert ap_of([0.9, 0.5, 0.5, 0.1], [1, 0, 1, 1]) == pytest.approx(100 * 29 / 36)
    # All tied: one group with 1 hit in 2 retrieved -> 1/2 (not 1 or 1/2 depending on the input order).
    assert ap_of([0.5, 0.5], [1, 0]) == pytest.approx(50.0)
    assert ap_of([0.5, 0.5], [0, 1]) == pytest.approx(50.0)
    # An ignored entry inside a tie group is not counted: 1 hit in 2 retrieved -> 1/2.
    assert ap_of([0.5, 0.5, 0.5], [1, -1, 0]) == pytest.approx(50.0)


def test_class_without_positive_is_nan_and_left_out_of_map():
    scores = [[0.9, 0.3, 0.9], [0.8, 0.2, 0.8], [0.7, 0.1, 0.7], [0.6, 0.4, 0.6]]
    # class 0: positives at ranks 1 and 3 -> 5/6; class 1: no positive at all; class 2: its only positive ignored.
    references = [[1, 0, 0], [0, 0, -1], [1, 0, 0], [0, 0, 0]]
    results = multilabel_metrics(scores, references)
    assert results["per_class_AP"][0] == pytest.approx(100 * 5 / 6)
    assert math.isnan(results["per_class_AP"][1])
    assert math.isnan(results["per_class_AP"][2])
    assert results["mAP"] == pytest.approx(100 * 5 / 6)  # mean over the one class that has a positive


def test_all_ignored_or_no_positive_anywhere_gives_nan():
    results = multilabel_metrics([[0.9, 0.2], [0.1, 0.8]], [[-1, 0], [0, -1]])
    assert all(math.isnan(ap) for ap in results["per_class_AP"])
    for key in ("mAP", "CP", "CR", "CF1", "OR", "OF1"):
        assert math.isnan(results[key]), key
    # OP is still defined: 0.9 is ignored, 0.8 is ignored, nothing else reaches 0.5 -> no prediction -> 0.
    assert results["OP"] == 0.0


# ------------------------------------------------------------------------------------- CP/CR/CF1 and OP/OR/OF1

HAND_SCORES = [
    [0.9, 0.6, 0.2],
    [0.7, 0.8, 0.55],
    [0.3, 0.4, 0.1],
    [0.6, 0.2, 0.95],
]
HAND_REFERENCES = [
    [1, 0, 0],
    [1, 1, -1],
    [0, 1, 0],
    [0, 0, 1],
]


def test_threshold_metrics_hand_computed():
    results = multilabel_metrics(HAND_SCORES, HAND_REFERENCES, threshold=0.5)
    # Predicted (score >= 0.5): image 0 -> {0, 1}, image 1 -> {0, 1, 2 (ignored)}, image 2 -> {}, image 3 -> {0, 2}.
    # class 0: predicted 3, correct 2, positives 2 -> P 2/3, R 1
    # class 1: predicted 2, correct 1, positives 2 -> P 1/2, R 1/2
    # class 2: predicted 1 (image 1 is ignored), correct 1, positives 1 -> P 1, R 1
    cp, cr = (2 / 3 + 1 / 2 + 1) / 3, (1 + 1 / 2 + 1) / 3  # 13/18, 5/6
    op, or_ = 4 / 6, 4 / 5
    expected = {
        "CP": cp, "CR": cr, "CF1": 65 / 84,  # 2 * 13/18 * 5/6 / (13/18 + 5/6)
        "OP": op, "OR": or_, "OF1": 8 / 11,  # 2 * 2/3 * 4/5 / (2/3 + 4/5)
    }  # fmt: skip
    assert 2 * cp * cr / (cp + cr) == pytest.approx(65 / 84)
    assert 2 * op * or_ / (op + or_) == pytest.approx(8 / 11)
    for key, value in expected.items():
        assert results[key] == pytest.approx(100 * value), key


def test_top_k_metrics_hand_computed():
    results = multilabel_metrics(HAND_SCORES, HAND_REFERENCES, threshold=0.5, top_k=1)
    # Top-1 label of each image, kept only if its score is also >= 0.5 (ML-GCN / HSVLT protocol):
    # image 0 -> 0 (+), image 1 -> 1 (+), image 2 -> 1 has 0.4 < 0.5 -> nothing, image 3 -> 2 (+).
    # class 0: P 1/1, R 1/2; class 1: P 1/1, R 1/2; class 2: P 1/1, R 1/1.
    # CP = 1, CR = 2/3, CF1 = 2 * 2/3 / (5/3) = 4/5; OP = 3/3, OR = 3/5, OF1 = 2 * 3/5 / (8/5) = 3/4.
    expected = {"CP": 1, "CR": 2 / 3, "CF1": 4 / 5, "OP": 1, "OR": 3 / 5, "OF1": 3 / 4}
    for key, value in expected.items():
        assert results[f"{key}_top1"] == pytest.approx(100 * value), key
    assert not any(key.endswith("_top3") for key in results)


def test_top_k_ties_prefer_lower_class_index_and_ignored_labels_take_a_slot():
    # Three tied labels, top-1 -> class 0 (wrong); classes 1 and 2 have positives but no prediction (P 0, R 0).
    # Class 0 has no positive so it is left out of CP/CR, but its false positive counts in OP.
    results = multilabel_metrics([[0.7, 0.7, 0.7]], [[0, 1, 1]], top_k=1)
    for key in PRF_KEYS:
        assert results[f"{key}_top1"] == 0.0, key
    # Top-2 -> classes 0 and 1: class 1 P 1 R 1, class 2 P 0 R 0 -> CP 1/2, CR 1/2; OP 1/2, OR 1/2.
    results = multilabel_metrics([[0.7, 0.7, 0.7]], [[0, 1, 1]], top_k=2)
    for key in PRF_KEYS:
        assert results[f"{key}_top2"] == pytest.approx(50.0), key
    # The top-1 label is ignored for this image: it is the prediction, but it is not counted, so class 1 (the
    # positive, second) is not predicted: everything 0 at top-1, everything 1 at the threshold.
    results = multilabel_metrics([[0.9, 0.8]], [[-1, 1]], top_k=1)
    for key in PRF_KEYS:
        assert results[f"{key}_top1"] == 0.0, key
        assert results[key] == pytest.approx(100.0), key


def test_threshold_is_inclusive_and_configurable():
    assert multilabel_metrics([[0.5]], [[1]])["CP"] == pytest.approx(100.0)
    assert multilabel_metrics([[0.5]], [[1]], threshold=0.6)["CR"] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_metrics_match_sklearn_counts(seed):
    scores, references = random_problem(seed, num_classes=8)
    predicted = (scores >= 0.5).astype(int)
    results = multilabel_metrics(scores, references)
    cp = np.mean([precision_score(references[:, k], predicted[:, k], zero_division=0) for k in range(8)])
    cr = np.mean([recall_score(references[:, k], predicted[:, k]) for k in range(8)])
    assert results["CP"] == pytest.approx(100 * cp)
    assert results["CR"] == pytest.approx(100 * cr)
    assert results["CF1"] == pytest.approx(100 * 2 * cp * cr / (cp + cr))  # harmonic mean of the means
    assert results["OP"] == pytest.approx(100 * precision_score(references, predicted, average="micro"))
    assert results["OR"] == pytest.approx(100 * recall_score(references, predicted, average="micro"))


def test_ignored_scores_do_not_matter_except_for_top_k_slots():
    scores, references = random_problem(3, ignore_rate=0.2)
    changed = scores.copy()
    ignored = references == -1
    changed[ignored] = np.random.default_rng(0).random(int(ignored.sum()))
    before, after = multilabel_metrics(scores, references), multilabel_metrics(changed, references)
    assert after["per_class_AP"] == pytest.approx(before["per_class_AP"], rel=1e-12)
    for key in ("mAP", *PRF_KEYS):
        assert after[key] == pytest.approx(before[key], rel=1e-12), key


# ---------------------------------------------------------------------------------------------- input checking


@pytest.mark.parametrize(
    "predictions, references, kwargs, message",
    [
        ([[0.1, 0.2]], [[1, 0, 0]], {}, "same shape"),
        ([0.1, 0.2], [1, 0], {}, "shape \\(num_images, num_classes\\)"),
        ([], [], {}, "shape \\(num_images, num_classes\\)"),
        ([[0.1, 0.2], [0.3]], [[1, 0], [1]], {}, "rectangular"),
        ([[0.1, 0.2]], [[1, 2]], {}, "found 2 at image 0, class 1"),
        ([[0.1, 0.2]], [[1, 0.5]], {}, "only contain 1 \\(positive\\), 0 \\(negative\\) or -1"),
        ([[0.1, float("nan")], [0.2, float("nan")]], [[1, 0], [0, 1]], {}, "2 NaN score\\(s\\) \\(first at image 0"),
        ([[0.1, 0.2]], [[1, 0]], {"top_k": 0}, "top_k must be a positive integer"),
        ([[0.1, 0.2]], [[1, 0]], {"top_k": 1.5}, "top_k must be a positive integer"),
        ([[0.1, 0.2]], [[1, 0]], {"threshold": float("nan")}, "threshold must be a real number"),
    ],
)
def test_invalid_inputs_raise(predictions, references, kwargs, message):
    with pytest.raises(ValueError, match=message):
        multilabel_metrics(predictions, references, **kwargs)


def test_coco_sized_input_is_fast():
    rng = np.random.default_rng(0)
    scores = rng.random((40_000, 80))
    references = (rng.random((40_000, 80)) < 0.05).astype(np.int64)
    start = time.perf_counter()
    multilabel_metrics(scores, references)
    assert time.perf_counter() - start < 5.0  # ~0.4 s on a laptop CPU


# ------------------------------------------------------------------------------------- evaluate module, helpers


def test_evaluate_module_loads_by_path_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    metric = load_multilabel_metric()
    assert metric.name == "multilabel_map"
    assert MULTILABEL_METRIC_PATH.is_file() and MULTILABEL_METRIC_PATH.with_name("README.md").is_file()

    scores, references = random_problem(5, num_images=40, num_classes=5, ignore_rate=0.1)
    for start in range(0, 40, 16):
        metric.add_batch(predictions=scores[start : start + 16], references=references[start : start + 16])
    from_module = metric.compute(threshold=0.4, top_k=2)
    from_core = multilabel_metrics(scores, references, threshold=0.4, top_k=2)
    assert from_module.keys() == from_core.keys()
    assert from_module["per_class_AP"] == pytest.approx(from_core["per_class_AP"], rel=1e-12)
    for key in from_core:
        if key != "per_class_AP":
            assert from_module[key] == pytest.approx(from_core[key], rel=1e-12), key


def test_compute_metrics_fn_on_eval_prediction():
    rng = np.random.default_rng(11)
    logits = rng.normal(scale=3.0, size=(64, 6)).astype(np.float32)
    logits[0, 0], logits[1, 0] = 1000.0, -1000.0  # saturating logits must not warn or overflow
    label_ids = (rng.random((64, 6)) < 0.3).astype(np.int64)
    label_ids[0] = 1
    label_ids[rng.random((64, 6)) < 0.1] = -1
    eval_prediction = EvalPrediction(predictions=(logits, np.zeros((64, 3))), label_ids=label_ids)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = compute_metrics_fn(threshold=0.5, top_k=2)(eval_prediction)

    expected = multilabel_metrics(expit(logits.astype(np.float64)), label_ids, top_k=2)
    del expected["per_class_AP"]
    assert results.keys() == expected.keys()
    assert {"mAP", *PRF_KEYS, *(f"{key}_top2" for key in PRF_KEYS)} == set(results)
    for key, value in results.items():
        assert isinstance(value, float), key
        assert value == pytest.approx(expected[key], rel=1e-9), key
    # Plain array predictions work too.
    assert compute_metrics_fn(top_k=2)(EvalPrediction(predictions=logits, label_ids=label_ids)) == results


def test_format_metric_table():
    results = multilabel_metrics(
        [[0.9, 0.3, 0.9], [0.8, 0.2, 0.8], [0.7, 0.1, 0.7], [0.6, 0.4, 0.6]],
        [[1, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]],
    )
    table = format_metric_table(results, ["person", "traffic light", "dog"])
    lines = table.splitlines()
    assert lines[0] == f"mAP: {results['mAP']:.2f}"
    assert any(line.startswith("threshold") for line in lines)
    assert any(line.startswith("top-3") for line in lines)
    assert "person" in table and "83.33" in table  # class 0: 5/6
    assert [line.split()[-1] for line in lines if line.startswith("traffic light")] == ["n/a"]
    assert "0  " in format_metric_table(results)  # class indices without names
    with pytest.raises(ValueError, match="3 per-class AP"):
        format_metric_table(results, ["person"])


def test_swept_threshold_is_the_authors_best_cf1_plus_of1():
    rng = np.random.default_rng(4)
    targets = (rng.random((60, 6)) < 0.3).astype(np.float64)
    scores = np.clip(0.35 * targets + 0.6 * rng.random((60, 6)), 0, 1)
    swept = swept_threshold_metrics(scores, targets)
    candidates = {
        threshold: multilabel_metrics(scores, targets, threshold=float(sigmoid(threshold)))
        for threshold in AUTHORS_LOGIT_THRESHOLDS
    }
    best = max(candidates, key=lambda t: candidates[t]["CF1"] + candidates[t]["OF1"])
    assert (
        AUTHORS_LOGIT_THRESHOLDS[0] == -1.0
        and AUTHORS_LOGIT_THRESHOLDS[-1] == 0.9
        and len(AUTHORS_LOGIT_THRESHOLDS) == 20
    )
    assert swept["swept_logit_threshold"] == best
    for key in ("CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3"):
        assert swept[f"{key}_swept"] == pytest.approx(candidates[best][key])
    assert swept["CF1_swept"] + swept["OF1_swept"] >= candidates[0.0]["CF1"] + candidates[0.0]["OF1"]
