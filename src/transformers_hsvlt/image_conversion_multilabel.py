"""Pixel conversions of the family's image processing: every kind of image input to RGB on the [0, 255] scale.

PIL images of any mode (EXIF orientation applied, transparency composited onto white, 16-bit scaled to 8 bits), NumPy
arrays and torch tensors with channels first or last. Shared by `MultiLabelImageProcessor`, the family's
`image-classification` pipeline and the toolkit's image loader, so that every entry point sees the same pixels.

Remote code: copied next to saved checkpoints, so it only imports torch, transformers, NumPy, PIL and the standard
library.
"""

import os
import urllib.request
from io import BytesIO

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers.image_utils import ChannelDimension, SizeDict


# PIL modes holding more than 8 bits per pixel: 16-bit integers ("I" is read as 16-bit too) and 32-bit floats.
_HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# Grayscale, RGB and RGBA.
_SUPPORTED_CHANNEL_COUNTS = (1, 3, 4)
# 65535 / 257 = 255: maps the 16-bit range exactly onto the 8-bit one.
_UINT16_PER_UINT8 = 257.0


def convert_image_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """
    Convert a PIL image of any mode to 8-bit RGB.

    - Images with transparency (an alpha band as in `RGBA`, `LA`, `PA`, or a `transparency` entry as in palette or
      grayscale PNGs) are composited onto a white background.
    - 16-bit images (`I;16` and variants, and `I`, which Pillow uses for 16-bit PNGs and TIFFs) are scaled from
      [0, 65535] to [0, 255]; 32-bit float images (`F`) must hold values in [0, 1].
    - Every other mode (`1`, `L`, `P`, `CMYK`, `YCbCr`, `LAB`, `HSV`, ...) goes through Pillow's own conversion.

    The EXIF orientation is not applied: use `PIL.ImageOps.exif_transpose` first.

    Args:
        image (`PIL.Image.Image`):
            The image to convert.

    Returns:
        `PIL.Image.Image`: A new image in mode `RGB`.

    Raises:
        ValueError: If the pixel values are outside the range of their mode, or Pillow cannot convert the mode.
    """
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        gray = np.round(to_8bit_range(_high_bit_depth_pixels(image))).astype(np.uint8)
        return PIL.Image.fromarray(gray).convert("RGB")
    if image.mode == "La":
        # Pillow converts premultiplied luminance-alpha only to straight luminance-alpha.
        image = image.convert("LA")
    if image.has_transparency_data:
        background = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _high_bit_depth_pixels(image: PIL.Image.Image) -> np.ndarray:
    """Pixels of an `I;16*`, `I` or `F` image: a (height, width) uint16 array, or float32 for `F`."""
    pixels = np.asarray(image)
    if image.mode == "F":
        return pixels
    if image.mode == "I" and pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
        raise ValueError(
            f"PIL images of mode 'I' are read as 16-bit, with values in [0, 65535]; got values in "
            f"[{pixels.min()}, {pixels.max()}]."
        )
    return pixels.astype(np.uint16)


def to_8bit_range(pixels: np.ndarray) -> np.ndarray:
    """
    Bring pixel values to the [0, 255] range of 8-bit images without losing precision.

    uint8 is returned as is and bool becomes {0, 255}; uint16 is divided by 257 and floats (which must lie in [0, 1])
    are multiplied by 255, both as float32; other integer types must already hold values in [0, 255].
    """
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint8) * 255
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / _UINT16_PER_UINT8
    if np.issubdtype(pixels.dtype, np.integer):
        low, high = pixels.min(), pixels.max()
        if low < 0 or high > 255:
            raise ValueError(
                f"Integer images must be uint16 (16-bit) or hold 8-bit values in [0, 255]; got {pixels.dtype} values "
                f"in [{low}, {high}]."
            )
        return pixels.astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        finite = np.isfinite(pixels)
        if not finite.all():
            raise ValueError(
                f"Float images must hold finite values in [0, 1]; got {pixels.size - np.count_nonzero(finite)} "
                f"NaN or infinite values out of {pixels.size}."
            )
        low, high = pixels.min(), pixels.max()
        if low < 0 or high > 1:
            raise ValueError(
                f"Float images must hold values in [0, 1]; got values in [{low:.6g}, {high:.6g}]. Divide 8-bit "
                "values by 255 (or pass them as uint8)."
            )
        return pixels.astype(np.float32) * 255
    raise ValueError(
        f"Unsupported pixel type {pixels.dtype}: expected uint8, uint16, bool, another integer type with values in "
        "[0, 255], or a float type with values in [0, 1]."
    )


def _channel_axis(
    shape: tuple[int, ...], input_data_format: ChannelDimension | str | None, channels_first_by_default: bool
) -> int:
    """
    Axis (0 or 2) holding the channels of a 3-D image.

    Without `input_data_format`, the channels are the first or last dimension of size 1, 3 or 4. When both qualify,
    the one of size 3 wins (a 1x1 RGB image is `(1, 1, 3)`), and otherwise the convention of the input type
    (channels first for torch tensors, channels last for NumPy arrays).
    """
    if input_data_format is not None:
        # ChannelDimension raises a ValueError listing the valid values.
        return 0 if ChannelDimension(input_data_format) == ChannelDimension.FIRST else 2
    first_fits, last_fits = shape[0] in _SUPPORTED_CHANNEL_COUNTS, shape[2] in _SUPPORTED_CHANNEL_COUNTS
    if first_fits and last_fits and (shape[0] == 3) != (shape[2] == 3):
        return 0 if shape[0] == 3 else 2
    if first_fits and last_fits:
        return 0 if channels_first_by_default else 2
    if first_fits or last_fits:
        return 0 if first_fits else 2
    raise ValueError(
        f"Expected an image with 1 (grayscale), 3 (RGB) or 4 (RGBA) channels in its first or last dimension, got "
        f"shape {shape}."
    )


def to_channels_last(
    pixels: np.ndarray, input_data_format: ChannelDimension | str | None, channels_first_by_default: bool
) -> np.ndarray:
    """Validate the shape of one image and return it as (height, width, channels); 2-D images get one channel."""
    if pixels.ndim not in (2, 3):
        raise ValueError(
            f"Expected one image with 2 dimensions (height, width) or 3 (channels first or last), got shape "
            f"{tuple(pixels.shape)}. Pass several images as a list or as a 4-D batch."
        )
    if pixels.size == 0:
        raise ValueError(f"Expected a non-empty image, got shape {tuple(pixels.shape)}.")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    elif _channel_axis(pixels.shape, input_data_format, channels_first_by_default) == 0:
        pixels = np.moveaxis(pixels, 0, -1)
    if pixels.shape[-1] not in _SUPPORTED_CHANNEL_COUNTS:
        raise ValueError(
            f"Expected an image with 1 (grayscale), 3 (RGB) or 4 (RGBA) channels, got {pixels.shape[-1]} channels."
        )
    return pixels


def to_three_channels(pixels: np.ndarray) -> np.ndarray:
    """Turn a (height, width, 1 | 3 | 4) image on the [0, 255] scale into RGB, compositing RGBA onto white."""
    if pixels.shape[-1] == 1:
        return np.repeat(pixels, 3, axis=-1)
    if pixels.shape[-1] == 3:
        return pixels
    alpha = pixels[..., 3:].astype(np.float32) / 255
    rgb = pixels[..., :3] * alpha + 255 * (1 - alpha)
    return np.round(rgb).astype(np.uint8) if pixels.dtype == np.uint8 else rgb.astype(np.float32)


def tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy of a tensor on any device; half-precision floats become float32, which NumPy can hold."""
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.numpy()


def pil_image_to_pixels(image: PIL.Image.Image, do_convert_rgb: bool) -> np.ndarray:
    """
    Pixels of an upright (EXIF orientation applied) PIL image, channels last: 8-bit modes converted to RGB (when
    `do_convert_rgb`) as uint8, high bit depth modes as a (height, width) uint16 or float32 array.
    """
    image = PIL.ImageOps.exif_transpose(image)
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        return _high_bit_depth_pixels(image)
    return np.asarray(convert_image_to_rgb(image) if do_convert_rgb else image)


def split_batch(item) -> list:
    """One image as a list of one, or a 4-D array or tensor as the list of its images."""
    if isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 4:
        return list(item)
    if isinstance(item, (PIL.Image.Image, np.ndarray, torch.Tensor)):
        return [item]
    raise ValueError(
        "Expected images as PIL.Image.Image, numpy.ndarray or torch.Tensor, a 4-D batch, or a list of them; got "
        f"{type(item).__name__}."
    )


def check_size(size: SizeDict) -> None:
    """Raise a `ValueError` unless `size` is `{"height": int, "width": int}` with positive values."""
    if size is None or set(dict(size)) != {"height", "width"} or size.height < 1 or size.width < 1:
        raise ValueError(
            "MultiLabelImageProcessor resizes to a fixed size: size must be {'height': int, 'width': int} with positive "
            f"values, got {dict(size) if size is not None else None}."
        )


def open_image(source, timeout: float | None = 10.0) -> PIL.Image.Image:
    """Open a path, `os.PathLike`, http(s) URL or PIL image fully decoded (the file is closed) and upright (EXIF
    orientation applied), in its own mode: `convert_image_to_rgb` makes it RGB."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=timeout) as response:
            source = PIL.Image.open(BytesIO(response.read()))
    if isinstance(source, PIL.Image.Image):
        source.load()
        return PIL.ImageOps.exif_transpose(source)
    if isinstance(source, (str, os.PathLike)):
        with PIL.Image.open(source) as opened:
            opened.load()
            return PIL.ImageOps.exif_transpose(opened)
    raise ValueError(f"Expected an image path, URL or PIL image, got {type(source).__name__}.")
