"""Batching decoded multi-label examples for :class:`transformers.Trainer`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .features import IGNORE_COLUMN, IMAGE_COLUMN, LABELS_COLUMN, multi_hot


class MultiLabelCollator:
    """Turn a list of examples into ``{"pixel_values", "labels"}`` for the model (a Trainer ``data_collator``).

    Each example is a mapping with a decoded ``image`` (anything the image processor accepts, e.g. a PIL image
    of any mode), a ``labels`` list of class indices and optionally an ``ignore`` list; other keys are not read. The
    collator returns ``pixel_values`` of shape ``(B, 3, H, W)`` from ``image_processor`` and float ``labels``
    of shape ``(B, num_labels)``: 1 for a present class, 0 for an absent one, -1 for an ignored one (an
    ignored label that is also listed as present is ignored).

    The ``image`` column is not a model argument, so with :class:`transformers.Trainer` either set
    ``TrainingArguments(remove_unused_columns=False)`` or keep only :attr:`columns` beforehand
    (``dataset.select_columns(...)``); otherwise the Trainer drops ``image`` before the collator sees it.

    Args:
        image_processor: a callable such as ``MultiLabelImageProcessor`` with
            ``image_processor(images=list_of_images, return_tensors="pt")["pixel_values"]``.
        num_labels: the number of classes ``K``.
        augment: an optional callable applied to the ``(B, 3, H, W)`` batch on the CPU, e.g. a
            :class:`~transformers_hsvlt.data.augmentation.TrainAugmentation`. Training loops that run on an
            accelerator should rather apply the augmentation on the device to the collated batch.
    """

    #: The dataset columns the collator reads (``ignore`` is optional).
    columns = (IMAGE_COLUMN, LABELS_COLUMN, IGNORE_COLUMN)

    def __init__(
        self,
        image_processor: Callable[..., Mapping[str, Any]],
        num_labels: int,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.image_processor = image_processor
        self.num_labels = num_labels
        self.augment = augment

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if examples and IMAGE_COLUMN not in examples[0]:
            raise KeyError(
                f"MultiLabelCollator: expected examples with an {IMAGE_COLUMN!r} column, got {sorted(examples[0])}; "
                "with transformers.Trainer set remove_unused_columns=False"
            )
        images = [example[IMAGE_COLUMN] for example in examples]
        pixel_values = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        if self.augment is not None:
            pixel_values = self.augment(pixel_values)
        targets = multi_hot(
            [example[LABELS_COLUMN] for example in examples],
            self.num_labels,
            [example.get(IGNORE_COLUMN) or [] for example in examples],
        )
        return {"pixel_values": pixel_values, "labels": torch.from_numpy(targets)}
