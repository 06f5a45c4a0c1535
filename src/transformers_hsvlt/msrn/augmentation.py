"""MSRN's authors' training augmentation (MultiScaleCrop and flip), applied to whole batches with kornia on the
batch's device."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.geometry.transform import crop_and_resize
from torch import nn

from ..data.augmentation import Normalization


MSRN_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6)


class MultiScaleCropAugmentation(nn.Module):
    """MSRN's authors' training augmentation (their `MultiScaleCrop(448, scales=(1.0, 0.9, 0.8, 0.7, 0.6),
    max_distort=2)` then a random horizontal flip), on a ``(B, C, H, W)`` batch.

    Per image, the crop's height and width are each a scale times the shorter side (sizes within 3 pixels of the
    output size snap to it), with the two scale indices at most `max_distort` apart; the crop sits at one of 13 fixed
    places (corners, centre, the middle of each side and the four quarter points), and is resized back to the
    batch's size (bilinear). The authors crop the original image before resizing it to 448x448; here the batch is
    already square (the processor's output), so the crop is taken from it: the same crops in relative terms, resampled
    twice. Randomness comes from the global torch RNG.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        *,
        scales: tuple[float, ...] = MSRN_SCALES,
        max_distort: int = 2,
        flip_probability: float = 0.5,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.scales = scales
        self.max_distort = max_distort
        self.flip = K.RandomHorizontalFlip(p=flip_probability)
        self.normalization = Normalization(mean, std)

    def crop_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The allowed `(crop height, crop width)` pairs."""
        base = min(height, width)
        sizes = [int(base * scale) for scale in self.scales]
        heights = [self.size[0] if abs(size - self.size[0]) < 3 else size for size in sizes]
        widths = [self.size[1] if abs(size - self.size[1]) < 3 else size for size in sizes]
        return [
            (crop_height, crop_width)
            for i, crop_height in enumerate(heights)
            for j, crop_width in enumerate(widths)
            if abs(i - j) <= self.max_distort
        ]

    @staticmethod
    def offsets(height: int, width: int, crop_height: int, crop_width: int) -> list[tuple[int, int]]:
        """The 13 fixed `(top, left)` places of a crop (the authors' `fill_fix_offset` with `more_fix_crop`)."""
        h, w = (height - crop_height) // 4, (width - crop_width) // 4
        quarters = [
            (0, 0),
            (0, 4),
            (4, 0),
            (4, 4),
            (2, 2),
            (2, 0),
            (2, 4),
            (4, 2),
            (0, 2),
            (1, 1),
            (1, 3),
            (3, 1),
            (3, 3),
        ]
        return [(row * h, column * w) for row, column in quarters]

    def crop_boxes(self, batch_size: int, height: int, width: int) -> torch.Tensor:
        """One random crop per image, as kornia's `(B, 4, 2)` corner points (x, y), clockwise from top-left."""
        sizes = self.crop_sizes(height, width)
        boxes = []
        for _ in range(batch_size):
            crop_height, crop_width = sizes[int(torch.randint(len(sizes), ()))]
            places = self.offsets(height, width, crop_height, crop_width)
            top, left = places[int(torch.randint(len(places), ()))]
            right, bottom = left + crop_width - 1, top + crop_height - 1
            boxes.append([[left, top], [right, top], [right, bottom], [left, bottom]])
        return torch.tensor(boxes, dtype=torch.float32)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Augment a ``(B, C, H, W)`` float batch."""
        if pixel_values.ndim != 4 or not pixel_values.is_floating_point():
            raise ValueError(
                f"MultiScaleCropAugmentation: expected a float (B, C, H, W) batch, got {pixel_values.dtype} "
                f"{tuple(pixel_values.shape)}"
            )
        height, width = pixel_values.shape[-2:]
        boxes = self.crop_boxes(pixel_values.shape[0], height, width).to(pixel_values.device)

        def augment(pixels: torch.Tensor) -> torch.Tensor:
            cropped = crop_and_resize(pixels, boxes, self.size, mode="bilinear", align_corners=False)
            return self.flip(cropped)

        return self.normalization.apply_in_unit_range(pixel_values, augment)
