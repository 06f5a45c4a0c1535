"""Training augmentation applied to whole batches with kornia on the batch's device.

`TrainAugmentation` (flip, RandomResizedCrop, RandAugment: HSVLT's authors' recipe, also used by the PatchCT and PVLR
reconstructions) and `Normalization`, which lets an augmentation take the processor's output: when it is
mean/std-normalised (`mean`, `std` given), the normalisation is undone, the batch augmented in [0, 1] and normalised
again. Augmentations of one architecture only live in its folder (MSRN's `msrn/augmentation.py`).
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.augmentation.auto import RandAugment
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
