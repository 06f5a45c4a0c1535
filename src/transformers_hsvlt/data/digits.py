"""The embedded default dataset: canvases of real handwritten digits, buildable offline in seconds.

Each canvas is a dark grey background with ``min_digits``-``max_digits`` digit images from scikit-learn's
:func:`sklearn.datasets.load_digits` (1,797 real 8x8 handwritten digits, values 0-16), upscaled with a bicubic
resample and drawn in a random bright ink colour in distinct cells of a grid (random position inside each
cell, so digits never overlap). The labels are the set of distinct digits drawn; the class names are the
English words :data:`DIGIT_CLASS_NAMES` (``"zero"`` .. ``"nine"``), which also give meaningful label-name
embeddings.

The 1,797 source digits are split first (stratified by digit), so train and test canvases are made of
disjoint handwritten samples and the test mAP measures generalisation to unseen handwriting.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value
from datasets import Sequence as SequenceFeature
from PIL import Image as PILImage

from .features import multilabel_features


DIGIT_CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Grey level range of the background and ink channel range of the digits (uint8).
_BACKGROUND_RANGE = (0, 80)
_INK_RANGE = (160, 256)
#: Standard deviation of the per-pixel Gaussian noise added to every canvas (uint8 levels), as in a photograph. A
#: perfectly flat patch would make the stem LayerNorm of a freshly initialised model normalise a zero-variance vector,
#: whose gradient is scaled by 1/sqrt(eps) = 1000 and swamps the rest under gradient clipping.
_NOISE_STD = 6.0
#: Maximum value of a :func:`~sklearn.datasets.load_digits` pixel.
_DIGIT_MAX = 16.0


def build_digit_canvases(
    num_train: int = 2000,
    num_test: int = 500,
    canvas_size: int = 64,
    min_digits: int = 2,
    max_digits: int = 4,
    *,
    digit_scale: tuple[float, float] = (0.7, 1.0),
    test_fraction: float = 0.3,
    seed: int = 0,
    num_validation: int = 0,
) -> DatasetDict:
    """Build the digit-canvas multi-label dataset (see the module docstring).

    Args:
        num_train: number of training canvases.
        num_test: number of test canvases.
        canvas_size: side of the square RGB canvases, in pixels.
        min_digits: fewest digit images drawn per canvas.
        max_digits: most digit images drawn per canvas; the canvas is a ``ceil(sqrt(max_digits))``-square
            grid with one digit per cell at most.
        digit_scale: side of a drawn digit as a fraction of the cell side (drawn uniformly in this range).
        test_fraction: fraction of the source digits (per class) reserved for the test canvases.
        seed: seed of everything random; the same arguments always give the same canvases. The train and
            test canvases use independent streams, so ``num_train`` does not change the test split.
        num_validation: number of validation canvases (e.g. to calibrate thresholds on); none by default. They are
            new canvases of the held-out handwriting (the test split's source digits, not the training ones), drawn
            from a stream of their own: no canvas is shared with the test split, which stays the same.

    Returns:
        Splits ``train`` and ``test`` (and ``validation``) in the common schema, images as in-memory PNG bytes, plus construction
        metadata: ``digits`` (the digit drawn in each box, in drawing order, repeats possible),
        ``boxes`` (``[x0, y0, x1, y1]`` of each digit, exclusive ends) and ``source_indices`` (the index of
        each drawn digit in ``load_digits()``).
    """
    grid = math.ceil(math.sqrt(max_digits))
    cell = canvas_size // grid
    sizes = (max(1, round(digit_scale[0] * cell)), int(digit_scale[1] * cell))
    if not 1 <= min_digits <= max_digits:
        raise ValueError(
            f"expected 1 <= min_digits <= max_digits, got min_digits={min_digits}, max_digits={max_digits}"
        )
    if not 0 < digit_scale[0] <= digit_scale[1] <= 1 or sizes[0] > sizes[1]:
        raise ValueError(f"digit_scale: expected 0 < low <= high <= 1 leaving a digit >= 1 px, got {digit_scale}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits  # imported here: scikit-learn costs half a second to import

    digits = load_digits()
    train_pool, test_pool = _split_sources(digits.target, test_fraction, np.random.default_rng([seed, 0]))
    layout = {
        "canvas_size": canvas_size,
        "grid": grid,
        "cell": cell,
        "sizes": sizes,
        "counts": (min_digits, max_digits),
    }
    splits = {
        "train": _build_split(digits, train_pool, num_train, layout, np.random.default_rng([seed, 1])),
        "test": _build_split(digits, test_pool, num_test, layout, np.random.default_rng([seed, 2])),
    }
    if num_validation:
        splits["validation"] = _build_split(digits, test_pool, num_validation, layout, np.random.default_rng([seed, 3]))
    return DatasetDict(splits)


def _split_sources(
    targets: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split the source digit indices into disjoint train and test pools, stratified by digit."""
    train, test = [], []
    for digit in range(len(DIGIT_CLASS_NAMES)):
        indices = rng.permutation(np.flatnonzero(targets == digit))
        num_test = max(1, round(test_fraction * len(indices)))
        test.append(indices[:num_test])
        train.append(indices[num_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _build_split(digits, pool: np.ndarray, num_canvases: int, layout: dict, rng: np.random.Generator) -> Dataset:
    columns = {"image": [], "labels": [], "digits": [], "boxes": [], "source_indices": []}
    for _ in range(num_canvases):
        canvas, sources, boxes = _draw_canvas(digits.images, pool, rng, **layout)
        drawn = digits.target[sources].tolist()
        columns["image"].append({"bytes": _png_bytes(canvas), "path": None})
        columns["labels"].append(sorted(set(drawn)))
        columns["digits"].append(drawn)
        columns["boxes"].append(boxes)
        columns["source_indices"].append(sources.tolist())
    extra = {
        "digits": SequenceFeature(ClassLabel(names=list(DIGIT_CLASS_NAMES))),
        "boxes": SequenceFeature(SequenceFeature(Value("int32"), length=4)),
        "source_indices": SequenceFeature(Value("int32")),
    }
    return Dataset.from_dict(columns, features=multilabel_features(DIGIT_CLASS_NAMES, extra=extra))


def _draw_canvas(
    images: np.ndarray,
    pool: np.ndarray,
    rng: np.random.Generator,
    *,
    canvas_size: int,
    grid: int,
    cell: int,
    sizes: tuple[int, int],
    counts: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Draw one canvas; return it (uint8 HxWx3), the source indices drawn and their boxes."""
    background = rng.integers(*_BACKGROUND_RANGE)
    canvas = np.full((canvas_size, canvas_size, 3), background, dtype=np.float32)
    num_digits = rng.integers(counts[0], counts[1] + 1)
    cells = rng.choice(grid * grid, size=num_digits, replace=False)
    sources = rng.choice(pool, size=num_digits)
    boxes = []
    for cell_index, source in zip(cells, sources):
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        row, column = divmod(int(cell_index), grid)
        y0 = row * cell + int(rng.integers(0, cell - size + 1))
        x0 = column * cell + int(rng.integers(0, cell - size + 1))
        alpha = _upscale(images[source], size)[..., None]
        ink = rng.integers(*_INK_RANGE, size=3).astype(np.float32)
        patch = canvas[y0 : y0 + size, x0 : x0 + size]
        canvas[y0 : y0 + size, x0 : x0 + size] = (1 - alpha) * patch + alpha * ink
        boxes.append([x0, y0, x0 + size, y0 + size])
    canvas += rng.normal(0.0, _NOISE_STD, canvas.shape)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), sources, boxes


def _upscale(digit: np.ndarray, size: int) -> np.ndarray:
    """Upscale an 8x8 0-16 digit to a ``size``-square ink opacity map in [0, 1] (separable bicubic)."""
    weights = _bicubic_weights(size, digit.shape[0])
    return np.clip(weights @ (digit / _DIGIT_MAX) @ weights.T, 0.0, 1.0)


@functools.cache
def _bicubic_weights(size: int, source_size: int) -> np.ndarray:
    """The ``(size, source_size)`` matrix of PIL's bicubic 1-D resample (it is linear: resample the unit impulses)."""
    impulses = np.eye(source_size, dtype=np.float32)
    columns = [PILImage.fromarray(row[None, :]).resize((size, 1), PILImage.Resampling.BICUBIC) for row in impulses]
    return np.stack([np.asarray(column)[0] for column in columns], axis=1).astype(np.float64)


def _png_bytes(canvas: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(canvas).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
