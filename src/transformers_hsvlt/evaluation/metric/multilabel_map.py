# Copyright 2025 The transformers-hsvlt contributors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Multi-label classification metrics: mAP, per-class AP and CP/CR/CF1/OP/OR/OF1.

This file is both an `evaluate` metric script (load it with `evaluate.load(<path of this file>)`) and an
ordinary module whose plain-numpy core, `multilabel_metrics`, can be called directly. It must stay
self-contained: `evaluate.load` copies this single file into its modules cache before importing it.
"""

import numbers

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Metrics of multi-label image classification as reported by ML-GCN, TSFormer and HSVLT: the mean average
precision over classes (mAP), the average precision of every class, and the per-class-averaged (CP, CR, CF1)
and overall (OP, OR, OF1) precision, recall and F1, both for the labels whose score reaches a threshold and
for the top-k labels of every image. A reference of -1 marks a label to ignore for that image (e.g. a
"difficult" VOC object): that entry is left out of every metric. All values are percentages (0-100).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`, shape (num_images, num_classes)): score of every class for every
        image, higher meaning more likely present (e.g. sigmoid probabilities). NaN is rejected.
    references (`list` of `list` of `int`, shape (num_images, num_classes)): 1 if the class is present in the
        image, 0 if absent, -1 to ignore that class for that image.
    threshold (`float` or `list` of `float`, defaults to 0.5): a label is predicted when its score is >= `threshold`
        (one value for every class, or one per class, e.g. calibrated thresholds).
    top_k (`int`, defaults to 3): for the `*_top{k}` metrics a label is predicted when it is among the `top_k`
        highest-scored labels of its image (ties broken towards the lower class index) and its score is also
        >= `threshold`, as in the ML-GCN and HSVLT evaluation code.
Returns:
    mAP (`float`): mean of `per_class_AP` over the classes that have at least one non-ignored positive.
    per_class_AP (`list` of `float`): non-interpolated average precision of every class; NaN for a class
        without any non-ignored positive.
    CP, CR, CF1 (`float`): mean over the classes that have a positive of the per-class precision and recall at
        `threshold`, and their harmonic mean. A class without predictions has precision 0.
    OP, OR, OF1 (`float`): precision and recall of all non-ignored (image, class) decisions pooled together, and
        their harmonic mean.
    CP_top{k}, CR_top{k}, CF1_top{k}, OP_top{k}, OR_top{k}, OF1_top{k} (`float`): the same for top-k predictions.
    All values are percentages.
Examples:
    >>> metric = evaluate.load("path/to/transformers_hsvlt/metric/multilabel_map.py")
    >>> results = metric.compute(
    ...     predictions=[[0.9, 0.2, 0.6], [0.8, 0.7, 0.1], [0.3, 0.6, 0.4]],
    ...     references=[[1, 0, 1], [0, 1, -1], [1, 1, 0]],
    ...     top_k=1,
    ... )
    >>> round(results["mAP"], 2)
    94.44
    >>> [round(ap, 2) for ap in results["per_class_AP"]]
    [83.33, 100.0, 100.0]
    >>> round(results["CF1"], 2), round(results["OF1_top1"], 2)
    (83.33, 50.0)
"""

_CITATION = """\
@inproceedings{ouyang2023hsvlt,
  title     = {{HSVLT}: Hierarchical Scale-Aware Vision-Language Transformer for Multi-Label Image Classification},
  author    = {Ouyang, Shuyi and Wang, Hongyi and Niu, Ziwei and Bai, Zhenjia and Xie, Shiao and Xu, Yingying
               and Tong, Ruofeng and Chen, Yen-Wei and Lin, Lanfen},
  booktitle = {Proceedings of the 31st ACM International Conference on Multimedia},
  year      = {2023},
  eprint    = {2407.16244},
  archivePrefix = {arXiv}
}

@inproceedings{chen2019mlgcn,
  title     = {Multi-Label Image Recognition with Graph Convolutional Networks},
  author    = {Chen, Zhao-Min and Wei, Xiu-Shen and Wang, Peng and Guo, Yanwen},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {5177--5186},
  year      = {2019}
}
"""


def _as_score_and_reference_arrays(predictions, references):
    """Validate the inputs and return them as float64 scores and int8 references, both (num_images, num_classes)."""
    try:
        scores = np.asarray(predictions, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "predictions must be a rectangular (num_images, num_classes) array of numbers "
            f"(every image with the same number of class scores): {error}"
        ) from error
    try:
        labels = np.asarray(references, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "references must be a rectangular (num_images, num_classes) array of -1/0/1 "
            f"(every image with the same number of labels): {error}"
        ) from error
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"predictions must have shape (num_images, num_classes) with both > 0, got {scores.shape}.")
    if labels.shape != scores.shape:
        raise ValueError(f"references must have the same shape as predictions {scores.shape}, got {labels.shape}.")
    nan = np.isnan(scores)
    if nan.any():
        image, cls = np.argwhere(nan)[0]
        raise ValueError(f"predictions contain {int(nan.sum())} NaN score(s) (first at image {image}, class {cls}).")
    invalid = ~np.isin(labels, (-1, 0, 1))
    if invalid.any():
        image, cls = np.argwhere(invalid)[0]
        raise ValueError(
            "references must only contain 1 (positive), 0 (negative) or -1 (ignored); "
            f"found {labels[image, cls]:g} at image {image}, class {cls}."
        )
    return scores, labels.astype(np.int8)


def _average_precision(scores, references):
    """Non-interpolated AP of every class as a fraction, NaN for classes without a (non-ignored) positive.

    Entries are ranked by descending score. Entries with equal scores form one rank, retrieved together: every
    positive of the tie group gets the precision measured after the whole group. This is the definition of
    `sklearn.metrics.average_precision_score` and does not depend on the order of the inputs; without ties it
    is the mean of the precision at the rank of each positive. Ignored entries (-1) take no rank.
    """
    num_images, num_classes = scores.shape
    # One row per class, contiguous, so that every class is sorted along a row.
    scores, references = np.ascontiguousarray(scores.T), np.ascontiguousarray(references.T)
    order = np.argsort(-scores, axis=1)
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    sorted_references = np.take_along_axis(references, order, axis=1)
    positive = sorted_references == 1
    true_positives = np.cumsum(positive, axis=1).ravel()
    retrieved = np.cumsum(sorted_references != -1, axis=1).ravel()
    # Flat positions of the last entry of every tie group (the last entry of a row always ends a group), and for
    # every positive the end of its group: the first group end at or after it, never past the end of its row.
    is_group_end = np.ones(positive.shape, dtype=bool)
    is_group_end[:, :-1] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    group_ends = np.flatnonzero(is_group_end)
    positives = np.flatnonzero(positive)
    ends = group_ends[np.searchsorted(group_ends, positives)]
    precision = true_positives[ends] / retrieved[ends]
    positive_class = positives // num_images
    num_positives = np.bincount(positive_class, minlength=num_classes)
    precision_sum = np.bincount(positive_class, weights=precision, minlength=num_classes)
    return np.divide(precision_sum, num_positives, out=np.full(num_classes, np.nan), where=num_positives > 0)


def _f1(precision, recall):
    """Harmonic mean; 0 when both are 0, NaN when either is NaN."""
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _precision_recall_f1(predicted, references):
    """CP, CR, CF1, OP, OR, OF1 (fractions) of boolean decisions `predicted`, ignoring entries where references == -1.

    Class-averaged metrics average over the classes with at least one positive (the classes that have an AP); a
    class with positives but no prediction has precision 0 (ML-GCN convention). Overall counts pool every class.
    """
    positive = references == 1
    num_predicted = np.sum(predicted & (references != -1), axis=0)
    num_correct = np.sum(predicted & positive, axis=0)
    num_positives = np.sum(positive, axis=0)
    evaluated = num_positives > 0
    if evaluated.any():
        class_precision = np.divide(
            num_correct, num_predicted, out=np.zeros(num_correct.shape), where=num_predicted > 0
        )
        cp = float(class_precision[evaluated].mean())
        cr = float((num_correct[evaluated] / num_positives[evaluated]).mean())
    else:
        cp = cr = float("nan")
    total_predicted, total_correct, total_positives = num_predicted.sum(), num_correct.sum(), num_positives.sum()
    op = float(total_correct / total_predicted) if total_predicted > 0 else 0.0
    or_ = float(total_correct / total_positives) if total_positives > 0 else float("nan")
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": or_, "OF1": _f1(op, or_)}


def _per_class_thresholds(threshold, num_classes):
    """`threshold` as a float64 array of one value per class, or None when it is not one."""
    try:
        thresholds = np.asarray(threshold, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return thresholds if thresholds.shape == (num_classes,) else None


def multilabel_metrics(predictions, references, threshold=0.5, top_k=3):
    """Compute every metric of this module (see `_KWARGS_DESCRIPTION`) with numpy; values are percentages.

    Args:
        predictions: array-like (num_images, num_classes) of scores, e.g. sigmoid probabilities.
        references: array-like (num_images, num_classes) of 1 (positive), 0 (negative) or -1 (ignored).
        threshold: a label is predicted when its score is >= threshold (a number, or one per class).
        top_k: for the `*_top{k}` keys, only the top_k highest-scored labels of each image (ties: lower class
            index first) may be predicted, and only if their score is >= threshold.

    Returns:
        dict with `mAP`, `per_class_AP` (list, NaN for classes without a positive), `CP`, `CR`, `CF1`, `OP`, `OR`,
        `OF1` and the same six with the suffix `_top{top_k}`, all Python floats in [0, 100].
    """
    scores, references = _as_score_and_reference_arrays(predictions, references)
    thresholds = threshold if isinstance(threshold, numbers.Real) else _per_class_thresholds(threshold, scores.shape[1])
    if thresholds is None or np.isnan(thresholds).any():
        raise ValueError(f"threshold must be a real number or one per class ({scores.shape[1]}), got {threshold!r}.")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")

    average_precision = _average_precision(scores, references)
    has_positive = ~np.isnan(average_precision)
    results = {
        "mAP": float(average_precision[has_positive].mean()) * 100 if has_positive.any() else float("nan"),
        "per_class_AP": [float(ap) * 100 for ap in average_precision],
    }

    above_threshold = scores >= thresholds
    for key, value in _precision_recall_f1(above_threshold, references).items():
        results[key] = value * 100

    top_k_indices = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    in_top_k = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(in_top_k, top_k_indices, True, axis=1)
    for key, value in _precision_recall_f1(in_top_k & above_threshold, references).items():
        results[f"{key}_top{top_k}"] = value * 100
    return results


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelMAP(evaluate.Metric):
    """Multi-label mAP and CP/CR/CF1/OP/OR/OF1 at a threshold and for the top-k labels (ML-GCN/HSVLT protocol)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    # float64: sigmoid scores of confident labels round to exactly 1.0 in float32, creating ties.
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2407.16244", "https://arxiv.org/abs/1904.03582"],
        )

    def _compute(self, predictions, references, threshold=0.5, top_k=3):
        return multilabel_metrics(predictions, references, threshold=threshold, top_k=top_k)
