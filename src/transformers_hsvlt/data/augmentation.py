"""The authors' training augmentations, applied to whole batches with kornia on the batch's device.

`TrainAugmentation` is HSVLT's (flip, RandomResizedCrop, RandAugment); `MultiScaleCropAugmentation` is MSRN's
(MultiScaleCrop and flip). Both take the processor's output; when it is mean/std-normalised (`mean`, `std` given),
they undo the normalisation, augment in [0, 1] and normalise again.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.augmentation.auto import RandAugment
from kornia.geometry.transform import crop_and_resize
from torch import nn


class TrainAugmentation(nn.Module):
    """Random horizontal flip, RandomResizedCrop (scale 0.7-1.0) and RandAugment, on a ``(B, 3, H, W)`` batch.

    The input is float in [0, 1] (the HSVLT image processor's output: no mean/std normalisation), which is
    also the range kornia's RandAugment operations (solarize, posterize, equalize, ...) expect. Every image
    of the batch gets its own flip, crop and magnitude signs; RandAugment draws its ``n`` operations once
    per batch. The output has shape ``(B, 3, *image_size)`` and is clipped to [0, 1].

    Apply it to the training batch right before the forward pass (``pixel_values = augment(pixel_values)``),
    never to evaluation batches. Keep it outside the model: kornia's RandAugment operations hold their
    probabilities and magnitudes as ``nn.Parameter`` (for differentiable policy search); they are frozen here
    and follow the batch to its device on each call, but registered as a submodule they would land in the
    model's ``state_dict``. Randomness comes from the global torch RNG, so
    ``torch.manual_seed`` (or ``transformers.set_seed``) makes it reproducible.

    Args:
        image_size: output size, an int or ``(height, width)``; the processor's size (448 for the authors).
        scale: RandomResizedCrop area range.
        ratio: RandomResizedCrop aspect-ratio range.
        flip_probability: probability of the horizontal flip.
        randaugment_ops: RandAugment's number of operations ``n`` (``None`` disables RandAugment).
        randaugment_magnitude: RandAugment's magnitude ``m``, in (0, 30).
        mean, std: the processor's normalisation, if it normalises.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        *,
        scale: tuple[float, float] = (0.7, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_probability: float = 0.5,
        randaugment_ops: int | None = 2,
        randaugment_magnitude: int = 9,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.normalization = Normalization(mean, std)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        steps = [
            K.RandomHorizontalFlip(p=flip_probability),
            K.RandomResizedCrop(size, scale=scale, ratio=ratio),
        ]
        if randaugment_ops is not None:
            steps.append(RandAugment(n=randaugment_ops, m=randaugment_magnitude))
        self.transform = K.AugmentationSequential(*steps)
        self.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Augment a ``(B, 3, H, W)`` float batch in [0, 1]."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3 or not pixel_values.is_floating_point():
            raise ValueError(
                f"TrainAugmentation: expected a float (B, 3, H, W) batch, got {pixel_values.dtype} {tuple(pixel_values.shape)}"
            )
        self.to(pixel_values.device)  # no-op once there; kornia's policy parameters must sit with the batch
        return self.normalization.apply_in_unit_range(
            pixel_values, lambda pixels: self.transform(pixels).clamp_(0.0, 1.0)
        )


class Normalization:
    """The processor's per-channel mean/std normalisation (or none), undone and redone around an augmentation."""

    def __init__(self, mean: tuple[float, ...] | None, std: tuple[float, ...] | None):
        if (mean is None) != (std is None):
            raise ValueError("Give both mean and std of the normalisation, or neither.")
        self.mean, self.std = mean, std

    def apply_in_unit_range(self, pixel_values: torch.Tensor, augment) -> torch.Tensor:
        if self.mean is None:
            return augment(pixel_values)
        mean = torch.tensor(self.mean, dtype=pixel_values.dtype, device=pixel_values.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=pixel_values.dtype, device=pixel_values.device).view(1, -1, 1, 1)
        return (augment(pixel_values * std + mean) - mean) / std


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
