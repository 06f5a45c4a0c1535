"""The image processor of the whole family (HSVLT, MSRN, PatchCT, PVLR): `MultiLabelImageProcessor`.

Its defaults reproduce HSVLT's authors' preprocessing (resize to 448x448 without keeping the aspect ratio, bilinear, pixel values in
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

from .image_conversion_multilabel import (
    check_size,
    open_image,
    pil_image_to_pixels,
    split_batch,
    tensor_to_numpy,
    to_8bit_range,
    to_channels_last,
    to_three_channels,
)


def _sigmoid_probabilities(logits) -> np.ndarray:
    """Validate (batch_size, num_labels) logits and return their sigmoid as a float64 array."""
    if isinstance(logits, torch.Tensor):
        logits = tensor_to_numpy(logits)
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


class MultiLabelImageProcessor(PilBackend):
    r"""
    Constructs the family's image processor (PIL/NumPy backend, no torchvision needed); each architecture sets its
    resize and normalisation (MSRN: ImageNet mean/std; PatchCT, PVLR: CLIP's).

    The defaults are HSVLT's authors' preprocessing: resize to 448x448 without keeping the aspect ratio (bilinear, as
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
    >>> from transformers_hsvlt import MultiLabelImageProcessor

    >>> processor = MultiLabelImageProcessor()
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
        check_size(self.size)

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
            return open_image(image_url_or_urls)
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
        flat = [image for item in batch for image in split_batch(item)]
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
            pixels = pil_image_to_pixels(image, do_convert_rgb)
            input_data_format, channels_first_by_default = ChannelDimension.LAST, False
        elif isinstance(image, torch.Tensor):
            pixels, channels_first_by_default = tensor_to_numpy(image), True
        elif isinstance(image, np.ndarray):
            pixels, channels_first_by_default = image, False
        else:
            raise ValueError(
                f"Expected an image as PIL.Image.Image, numpy.ndarray or torch.Tensor, got {type(image).__name__}."
            )
        pixels = to_channels_last(pixels, input_data_format, channels_first_by_default)
        pixels = to_8bit_range(pixels)
        if do_convert_rgb:
            pixels = to_three_channels(pixels)
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
        check_size(size)
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
        threshold: "float | Sequence[float] | Mapping[str, float] | str | None" = "auto",
        top_k: int | None = None,
        id2label: Mapping[int, str] | Sequence[str] | None = None,
        config=None,
    ) -> list[list[dict]]:
        """
        Turn multi-label logits into the predicted labels of every image.

        Scores are the sigmoid of the logits (one independent probability per label). Labels are kept when their
        score is at least their threshold, then at most `top_k` of them with the highest scores; ties keep the lower
        label index first.

        Args:
            logits (`torch.Tensor` or `np.ndarray` of shape `(batch_size, num_labels)`):
                The logits of the model, e.g. `outputs.logits`.
            threshold (`float`, `list[float]`, `dict[str, float]`, `"auto"` or `None`, *optional*, defaults to `"auto"`):
                Minimum score, in [0, 1], of a kept label: one number for every label, one per label, or a mapping
                from label names to thresholds (the other labels follow `"auto"`). `"auto"`: the checkpoint's
                calibrated thresholds (`config.label_thresholds`, see `hsvlt-calibrate`) when `config` has them,
                else 0.5. `None` keeps every label (then `top_k` alone selects).
            top_k (`int`, *optional*):
                Maximum number of labels kept per image (at least 1). `None` keeps every label above its threshold.
            id2label (`dict[int, str]` or `list[str]`, *optional*):
                Name of every label index; must cover exactly the `num_labels` labels. Defaults to `config.id2label`,
                else `LABEL_0`, `LABEL_1`, ...
            config (`PreTrainedConfig`, *optional*):
                The model's config (`model.config`): its `id2label` and its calibrated `label_thresholds`, matched to
                the labels by name.

        Returns:
            `list[list[dict]]`: For every image, the kept labels sorted by decreasing score, each as
            `{"label": str, "score": float, "index": int}`.

        Raises:
            ValueError: If `logits` is not a 2-D array of real numbers without NaN, a threshold is not in [0, 1] (or
                a mapping names an unknown label, or a list has not one value per label), `top_k` is not a positive
                integer, or `id2label` does not name the labels of `logits`.
        """
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}.")
        probabilities = _sigmoid_probabilities(logits)
        if id2label is None and config is not None:
            id2label = config.id2label
        names = _label_names(id2label, probabilities.shape[1])
        thresholds = decision_thresholds(threshold, names, calibrated_thresholds(config))
        results = []
        for scores in probabilities:
            order = np.argsort(-scores, kind="stable")
            if thresholds is not None:
                order = order[scores[order] >= thresholds[order]]
            if top_k is not None:
                order = order[:top_k]
            results.append(
                [{"label": names[index], "score": float(scores[index]), "index": int(index)} for index in order]
            )
        return results


DEFAULT_THRESHOLD = 0.5
"""The decision threshold of a label without a calibrated one."""


def calibrated_thresholds(config) -> dict[str, float]:
    """The calibrated threshold of each label of a model config, by label name (`config.label_thresholds`, written by
    `hsvlt-calibrate`); empty for a config without them."""
    thresholds = getattr(config, "label_thresholds", None)
    if not thresholds:
        return {}
    return {config.id2label[index]: float(value) for index, value in enumerate(thresholds)}


def _check_threshold(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
        raise ValueError(
            f"threshold must be a number in [0, 1] (or one per label, a mapping from label names to such numbers, "
            f"'auto' or None), got {what}{value!r}."
        )
    return float(value)


def decision_thresholds(threshold, names: Sequence[str], calibrated: Mapping[str, float]) -> np.ndarray | None:
    """
    The threshold of every label `names[i]`, from `threshold` as `post_process_multi_label` takes it: a number, one
    per label, a mapping from names (other labels follow `"auto"`), `"auto"` (the `calibrated` threshold of a label by
    name, else `DEFAULT_THRESHOLD`) or `None` (no threshold: returns `None`).
    """
    if threshold is None:
        return None
    automatic = {name: calibrated.get(name, DEFAULT_THRESHOLD) for name in names}
    if isinstance(threshold, str) and threshold == "auto":
        chosen = automatic
    elif isinstance(threshold, Mapping):
        unknown = sorted(set(threshold) - set(names), key=str)
        if unknown:
            raise ValueError(f"threshold names labels the model does not have: {unknown[:10]}; its labels: {names}.")
        chosen = {**automatic, **{name: _check_threshold(value, f"{name!r}: ") for name, value in threshold.items()}}
    elif isinstance(threshold, (Sequence, np.ndarray)) and not isinstance(threshold, (str, bytes)):
        if len(threshold) != len(names):
            raise ValueError(f"threshold must hold one value per label ({len(names)}), got {len(threshold)} values.")
        chosen = {name: _check_threshold(value, f"{name!r}: ") for name, value in zip(names, threshold)}
    else:
        value = _check_threshold(threshold, "")
        chosen = dict.fromkeys(names, value)
    return np.array([chosen[name] for name in names], dtype=np.float64)


HSVLTImageProcessor = MultiLabelImageProcessor
"""The former name (before 0.2, in `image_processing_hsvlt.py`): checkpoints saved then carry their own copy of that
module and name it in `preprocessor_config.json`; the toolkit reads their settings with this class."""

MultiLabelImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "DEFAULT_THRESHOLD",
    "HSVLTImageProcessor",
    "MultiLabelImageProcessor",
    "calibrated_thresholds",
    "decision_thresholds",
]
