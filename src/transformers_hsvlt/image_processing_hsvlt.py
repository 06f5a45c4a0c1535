"""Image processor for HSVLT.

Reproduces the authors' preprocessing (resize to 448x448 without keeping the aspect ratio, bilinear, pixel values in
[0, 1], no mean/std normalisation) and accepts every common kind of input: PIL images of any mode, NumPy arrays and
torch tensors, channels first or last, 8-bit, 16-bit or float.

This module is copied next to saved checkpoints (remote code), so it only imports torch, transformers, NumPy, PIL and
the standard library.
"""

import os
from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    SizeDict,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType


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
        gray = np.round(_to_8bit_range(_high_bit_depth_pixels(image))).astype(np.uint8)
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


def _to_8bit_range(pixels: np.ndarray) -> np.ndarray:
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


def _to_channels_last(
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


def _to_three_channels(pixels: np.ndarray) -> np.ndarray:
    """Turn a (height, width, 1 | 3 | 4) image on the [0, 255] scale into RGB, compositing RGBA onto white."""
    if pixels.shape[-1] == 1:
        return np.repeat(pixels, 3, axis=-1)
    if pixels.shape[-1] == 3:
        return pixels
    alpha = pixels[..., 3:].astype(np.float32) / 255
    rgb = pixels[..., :3] * alpha + 255 * (1 - alpha)
    return np.round(rgb).astype(np.uint8) if pixels.dtype == np.uint8 else rgb.astype(np.float32)


def _tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy of a tensor on any device; half-precision floats become float32, which NumPy can hold."""
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.numpy()


def _pil_image_to_pixels(image: PIL.Image.Image, do_convert_rgb: bool) -> np.ndarray:
    """
    Pixels of an upright (EXIF orientation applied) PIL image, channels last: 8-bit modes converted to RGB (when
    `do_convert_rgb`) as uint8, high bit depth modes as a (height, width) uint16 or float32 array.
    """
    image = PIL.ImageOps.exif_transpose(image)
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        return _high_bit_depth_pixels(image)
    return np.asarray(convert_image_to_rgb(image) if do_convert_rgb else image)


def _split_batch(item) -> list:
    """One image as a list of one, or a 4-D array or tensor as the list of its images."""
    if isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 4:
        return list(item)
    if isinstance(item, (PIL.Image.Image, np.ndarray, torch.Tensor)):
        return [item]
    raise ValueError(
        "Expected images as PIL.Image.Image, numpy.ndarray or torch.Tensor, a 4-D batch, or a list of them; got "
        f"{type(item).__name__}."
    )


def _check_size(size: SizeDict) -> None:
    """Raise a `ValueError` unless `size` is `{"height": int, "width": int}` with positive values."""
    if size is None or set(dict(size)) != {"height", "width"} or size.height < 1 or size.width < 1:
        raise ValueError(
            "HSVLTImageProcessor resizes to a fixed size: size must be {'height': int, 'width': int} with positive "
            f"values, got {dict(size) if size is not None else None}."
        )


def _sigmoid_probabilities(logits) -> np.ndarray:
    """Validate (batch_size, num_labels) logits and return their sigmoid as a float64 array."""
    if isinstance(logits, torch.Tensor):
        logits = _tensor_to_numpy(logits)
    if not isinstance(logits, np.ndarray):
        raise ValueError(
            f"logits must be a torch.Tensor or numpy.ndarray of shape (batch_size, num_labels), got "
            f"{type(logits).__name__}."
        )
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(
            f"logits must have shape (batch_size, num_labels) with num_labels >= 1, got shape {logits.shape}. "
            "For a single image, add a batch dimension (logits[None])."
        )
    if not (np.issubdtype(logits.dtype, np.floating) or np.issubdtype(logits.dtype, np.integer)):
        raise ValueError(f"logits must be real numbers, got dtype {logits.dtype}.")
    logits = logits.astype(np.float64)
    if np.isnan(logits).any():
        raise ValueError(f"logits contain {np.count_nonzero(np.isnan(logits))} NaN values.")
    # tanh form of the sigmoid: no overflow for large negative logits.
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def _label_names(id2label: Mapping[int, str] | Sequence[str] | None, num_labels: int) -> list[str]:
    """The name of every label index, checking that `id2label` names exactly the indices 0 .. num_labels - 1."""
    if id2label is None:
        return [f"LABEL_{index}" for index in range(num_labels)]
    if isinstance(id2label, Mapping):
        names = {}
        for key, name in id2label.items():
            if isinstance(key, bool) or not (isinstance(key, Integral) or (isinstance(key, str) and key.isdigit())):
                raise ValueError(f"id2label keys must be label indices (int), got {key!r}.")
            names[int(key)] = name
    elif isinstance(id2label, Sequence) and not isinstance(id2label, str):
        names = dict(enumerate(id2label))
    else:
        raise ValueError(
            f"id2label must be a mapping from index to name or a list of names, got {type(id2label).__name__}."
        )
    if set(names) != set(range(num_labels)):
        missing = sorted(set(range(num_labels)) - set(names))
        extra = sorted(set(names) - set(range(num_labels)))
        raise ValueError(
            f"id2label must name the {num_labels} labels of the logits (indices 0 to {num_labels - 1}); got "
            f"{len(names)} names, missing indices {missing[:10]}, unexpected indices {extra[:10]}."
        )
    return [str(names[index]) for index in range(num_labels)]


class HSVLTImageProcessor(PilBackend):
    r"""
    Constructs an HSVLT image processor (PIL/NumPy backend, no torchvision needed).

    The defaults are the authors' preprocessing: resize to 448x448 without keeping the aspect ratio (bilinear, as
    torchvision's `Resize` on PIL images), pixel values rescaled to [0, 1], no mean/std normalisation.

    Every input is first brought to an RGB image on the [0, 255] scale: PIL images of any mode (EXIF orientation
    applied, transparency composited onto white, 16-bit scaled), NumPy arrays and torch tensors with channels first or
    last (uint8, uint16, bool, or float in [0, 1]; grayscale 2-D arrays; RGBA composited onto white). 8-bit images are
    resized as 8-bit PIL images, exactly as the authors did; 16-bit and float images are resized in float, without
    rounding. A 4-D array or tensor is a batch.

    The channel layout of arrays and tensors is `input_data_format` when given, otherwise the first or last dimension
    of size 1, 3 or 4; when both fit, the one of size 3 wins, then channels first for tensors and channels last for
    NumPy arrays.

    Note that the `image-classification` pipeline converts PIL images, paths and URLs to RGB itself (with
    `transformers.image_utils.load_image`, which drops transparency and clips 16-bit values) before calling the
    processor; NumPy arrays and tensors reach the processor unchanged.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to resize the images to `size`. Can be overridden by `do_resize` in `preprocess`.
        size (`dict[str, int]`, *optional*, defaults to `{"height": 448, "width": 448}`):
            Output size `{"height": int, "width": int}`; the aspect ratio is not kept. Can be overridden by `size` in
            `preprocess`.
        resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`):
            Resampling filter used when resizing. Can be overridden by `resample` in `preprocess`.
        do_rescale (`bool`, *optional*, defaults to `True`):
            Whether to multiply the pixel values (on the [0, 255] scale) by `rescale_factor`. Can be overridden by
            `do_rescale` in `preprocess`.
        rescale_factor (`float`, *optional*, defaults to `1/255`):
            Scale factor used when rescaling. Can be overridden by `rescale_factor` in `preprocess`.
        do_normalize (`bool`, *optional*, defaults to `False`):
            Whether to normalize the images with `image_mean` and `image_std`. HSVLT was trained without
            normalisation. Can be overridden by `do_normalize` in `preprocess`.
        image_mean (`float` or `list[float]`, *optional*, defaults to `IMAGENET_DEFAULT_MEAN`):
            Per-channel mean used when normalizing. Can be overridden by `image_mean` in `preprocess`.
        image_std (`float` or `list[float]`, *optional*, defaults to `IMAGENET_DEFAULT_STD`):
            Per-channel standard deviation used when normalizing. Can be overridden by `image_std` in `preprocess`.
        do_convert_rgb (`bool`, *optional*, defaults to `True`):
            Whether to convert every image to 3-channel RGB. If `False`, images keep their own channels (1, 3 or 4).
            Can be overridden by `do_convert_rgb` in `preprocess`.

    Example:

    ```python
    >>> from PIL import Image
    >>> from transformers_hsvlt import HSVLTImageProcessor

    >>> processor = HSVLTImageProcessor()
    >>> inputs = processor(Image.new("RGB", (640, 480)), return_tensors="pt")
    >>> inputs["pixel_values"].shape
    torch.Size([1, 3, 448, 448])
    ```"""

    resample = PILImageResampling.BILINEAR
    size = {"height": 448, "width": 448}
    do_resize = True
    do_rescale = True
    do_normalize = False
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    do_convert_rgb = True

    def __init__(self, **kwargs: Unpack[ImagesKwargs]):
        super().__init__(**kwargs)
        _check_size(self.size)

    def fetch_images(self, image_url_or_urls):
        """
        Open image files given by local path (`str` or `os.PathLike`) with Pillow, keeping their mode so that they are
        converted like PIL images; other strings (URLs, base64) are loaded as by transformers. Anything else is
        returned unchanged and validated later.
        """
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(item) for item in image_url_or_urls]
        if isinstance(image_url_or_urls, os.PathLike) or (
            isinstance(image_url_or_urls, str) and os.path.isfile(image_url_or_urls)
        ):
            return PIL.Image.open(image_url_or_urls)
        if isinstance(image_url_or_urls, str):
            return super().fetch_images(image_url_or_urls)
        return image_url_or_urls

    def _prepare_images_structure(self, images: ImageInput, expected_ndims: int = 3) -> list:
        """
        Flatten a single image, a 4-D batch, or a list of images and batches into a list of images. `expected_ndims`
        is kept for the signature of the base class: 4-D arrays and tensors are always batches.
        """
        images = self.fetch_images(images)
        batch = images if isinstance(images, (list, tuple)) else [images]
        flat = [image for item in batch for image in _split_batch(item)]
        if not flat:
            raise ValueError("Expected at least one image, got an empty list or batch.")
        return flat

    def _prepare_image_like_inputs(
        self, images: ImageInput, *args, expected_ndims: int = 3, **kwargs: Unpack[ImagesKwargs]
    ) -> list[np.ndarray]:
        """Convert every input image with `process_image`; errors name the position of the image in the batch."""
        images = self._prepare_images_structure(images, expected_ndims=expected_ndims)
        processed = []
        for index, image in enumerate(images):
            try:
                processed.append(self.process_image(image, *args, **kwargs))
            except ValueError as error:
                if len(images) == 1:
                    raise
                raise ValueError(f"Image {index} of the batch of {len(images)}: {error}") from error
        return processed

    def process_image(
        self,
        image: ImageInput,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs: Unpack[ImagesKwargs],
    ) -> np.ndarray:
        """
        Convert one input image to a channels-first array on the [0, 255] scale: uint8 for 8-bit inputs, float32
        for 16-bit and float inputs.

        Args:
            image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`):
                The image. Arrays and tensors are (height, width), (channels, height, width) or
                (height, width, channels), with 1, 3 or 4 channels.
            do_convert_rgb (`bool`, *optional*):
                Whether to convert the image to 3-channel RGB (see [`convert_image_to_rgb`] for PIL modes; arrays with
                1 channel are repeated, 4 channels are RGBA composited onto white).
            input_data_format (`str` or `ChannelDimension`, *optional*):
                Channel layout of arrays and tensors; inferred when unset (see the class docstring). Ignored for PIL
                images.

        Returns:
            `np.ndarray`: The image as (channels, height, width).
        """
        if isinstance(image, PIL.Image.Image):
            pixels = _pil_image_to_pixels(image, do_convert_rgb)
            input_data_format, channels_first_by_default = ChannelDimension.LAST, False
        elif isinstance(image, torch.Tensor):
            pixels, channels_first_by_default = _tensor_to_numpy(image), True
        elif isinstance(image, np.ndarray):
            pixels, channels_first_by_default = image, False
        else:
            raise ValueError(
                f"Expected an image as PIL.Image.Image, numpy.ndarray or torch.Tensor, got {type(image).__name__}."
            )
        pixels = _to_channels_last(pixels, input_data_format, channels_first_by_default)
        pixels = _to_8bit_range(pixels)
        if do_convert_rgb:
            pixels = _to_three_channels(pixels)
        return np.ascontiguousarray(np.moveaxis(pixels, -1, 0))

    def resize(
        self,
        image: np.ndarray,
        size: SizeDict,
        resample: PILImageResampling | int | None = None,
        **kwargs,
    ) -> np.ndarray:
        """
        Resize a channels-first image to `(size.height, size.width)`, ignoring its aspect ratio.

        Each channel is resized with Pillow: uint8 images exactly as Pillow resizes 8-bit images (as the authors'
        torchvision `Resize` on PIL images), float images in Pillow's 32-bit float mode, without rounding.

        Args:
            image (`np.ndarray`):
                Image of shape (channels, height, width), uint8 or float32.
            size (`SizeDict`):
                Output size, with `height` and `width`.
            resample (`PILImageResampling` or `int`, *optional*, defaults to `PILImageResampling.BILINEAR`):
                Resampling filter.

        Returns:
            `np.ndarray`: The resized image, of the same dtype.
        """
        _check_size(size)
        resample = PILImageResampling.BILINEAR if resample is None else resample
        if image.dtype != np.uint8:
            image = image.astype(np.float32)
        resized = [
            np.asarray(PIL.Image.fromarray(channel).resize((size.width, size.height), resample=resample))
            for channel in image
        ]
        return np.stack(resized)

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling | int | None,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | list[float] | None,
        image_std: float | list[float] | None,
        do_pad: bool | None,
        pad_size: SizeDict | None,
        return_tensors: str | TensorType | None,
        **kwargs,
    ) -> BatchFeature:
        """Resize, crop, rescale, normalize and pad channels-first images; `pixel_values` are float32."""
        processed_images = []
        for image in images:
            if do_resize:
                image = self.resize(image, size, resample)
            if do_center_crop:
                image = self.center_crop(image, crop_size)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed_images.append(image.astype(np.float32, copy=False))
        if do_pad:
            processed_images = self.pad(processed_images, pad_size=pad_size)
        shapes = sorted({image.shape for image in processed_images})
        if return_tensors is not None and len(shapes) > 1:
            raise ValueError(
                f"Cannot stack images of different shapes {shapes} into one tensor: enable do_resize (or do_pad), or "
                "pass return_tensors=None to get a list of arrays."
            )
        return BatchFeature(data={"pixel_values": processed_images}, tensor_type=return_tensors)

    def post_process_multi_label(
        self,
        logits: "torch.Tensor | np.ndarray",
        threshold: float | None = 0.5,
        top_k: int | None = None,
        id2label: Mapping[int, str] | Sequence[str] | None = None,
    ) -> list[list[dict]]:
        """
        Turn multi-label logits into the predicted labels of every image.

        Scores are the sigmoid of the logits (one independent probability per label). Labels are kept when their
        score is at least `threshold`, then at most `top_k` of them with the highest scores; ties keep the lower
        label index first.

        Args:
            logits (`torch.Tensor` or `np.ndarray` of shape `(batch_size, num_labels)`):
                The logits of the model, e.g. `outputs.logits`.
            threshold (`float`, *optional*, defaults to 0.5):
                Minimum score, in [0, 1], of a kept label. `None` keeps every label (then `top_k` alone selects).
            top_k (`int`, *optional*):
                Maximum number of labels kept per image (at least 1). `None` keeps every label above `threshold`.
            id2label (`dict[int, str]` or `list[str]`, *optional*):
                Name of every label index, e.g. `model.config.id2label`; must cover exactly the `num_labels` labels.
                Defaults to `LABEL_0`, `LABEL_1`, ...

        Returns:
            `list[list[dict]]`: For every image, the kept labels sorted by decreasing score, each as
            `{"label": str, "score": float, "index": int}`.

        Raises:
            ValueError: If `logits` is not a 2-D array of real numbers without NaN, `threshold` is not in [0, 1],
                `top_k` is not a positive integer, or `id2label` does not name the labels of `logits`.
        """
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 <= threshold <= 1
        ):
            raise ValueError(f"threshold must be a number in [0, 1] or None, got {threshold!r}.")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}.")
        probabilities = _sigmoid_probabilities(logits)
        names = _label_names(id2label, probabilities.shape[1])
        results = []
        for scores in probabilities:
            order = np.argsort(-scores, kind="stable")
            if threshold is not None:
                order = order[scores[order] >= threshold]
            if top_k is not None:
                order = order[:top_k]
            results.append(
                [{"label": names[index], "score": float(scores[index]), "index": int(index)} for index in order]
            )
        return results


HSVLTImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = ["HSVLTImageProcessor", "convert_image_to_rgb"]
