"""Loading images from paths, URLs or bytes into upright RGB PIL images, with errors naming the source and the cause.

Every image is fully decoded, so truncated or corrupt files fail here and not later in a data loader. Pillow's
`ImageFile.LOAD_TRUNCATED_IMAGES` must stay `False` (this module never changes it): with it enabled Pillow silently
fills the missing part of truncated files.
"""

import http.client
import io
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass

import PIL.Image
import PIL.ImageOps

from .image_conversion_hsvlt import convert_image_to_rgb


#: Largest image (width x height) `load_image` decodes by default: twice Pillow's default `MAX_IMAGE_PIXELS`
#: (89,478,485), i.e. the size above which Pillow itself refuses to open an image as a decompression bomb. A 448x448
#: model input needs 200,704 pixels; 178,956,970 pixels is about 13,000 x 13,000, or 537 MB once decoded to RGB.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970

#: Seconds `load_image` waits for a URL to connect or to send data.
DEFAULT_TIMEOUT = 10.0

#: Seconds a whole download may take (a server that trickles bytes cannot hold a prediction forever).
DEFAULT_DOWNLOAD_SECONDS = 60.0

#: Largest body a download may have; it is streamed to a temporary file, not held in memory while it arrives.
DEFAULT_MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024

_DOWNLOAD_CHUNK = 1 << 16

_URL_PREFIXES = ("http://", "https://")


class ImageLoadError(ValueError):
    """An image source (path, URL or bytes) could not be loaded; the message names the source and the cause."""


def load_image(
    source: str | os.PathLike | bytes | bytearray,
    *,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    timeout: float = DEFAULT_TIMEOUT,
    download_seconds: float = DEFAULT_DOWNLOAD_SECONDS,
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
) -> PIL.Image.Image:
    """
    Load an image as an upright, fully decoded RGB PIL image.

    The EXIF orientation is applied and every mode is converted to RGB as by
    [`~image_conversion_hsvlt.convert_image_to_rgb`]: transparency composited onto white, 16-bit images scaled to
    8 bits, CMYK, palette and grayscale images converted.

    Args:
        source (`str`, `os.PathLike`, `bytes` or `bytearray`):
            A local path, an `http://` or `https://` URL, or the encoded bytes of an image file.
        max_image_pixels (`int`, *optional*, defaults to `DEFAULT_MAX_IMAGE_PIXELS`):
            Largest accepted width x height, checked from the image header before decoding, so that decompression
            bombs (small files declaring huge images) are refused without allocating their memory. `None` disables
            this check; Pillow still refuses images over twice `PIL.Image.MAX_IMAGE_PIXELS`.
        timeout (`float`, *optional*, defaults to `DEFAULT_TIMEOUT`):
            Seconds a URL may take to connect or between two pieces of data.
        download_seconds (`float`, *optional*, defaults to `DEFAULT_DOWNLOAD_SECONDS`):
            Seconds a whole download may take.
        max_download_bytes (`int`, *optional*, defaults to `DEFAULT_MAX_DOWNLOAD_BYTES`):
            Largest accepted body of a URL (streamed to a temporary file while it arrives).

    Returns:
        `PIL.Image.Image`: The image, in mode `RGB`.

    Raises:
        ImageLoadError: If the source is missing, empty, unreachable, not an image, corrupt or truncated, too large,
            or of an unsupported type.
    """
    if max_image_pixels is not None and max_image_pixels < 1:
        raise ValueError(f"max_image_pixels must be a positive integer or None, got {max_image_pixels!r}.")
    name = _describe(source)
    limits = _DownloadLimits(timeout, download_seconds, max_download_bytes)
    image = _open(_read_source(source, name, limits), name, max_image_pixels)
    with image:
        try:
            image.load()
        except PIL.Image.DecompressionBombError as error:
            raise ImageLoadError(
                f"Cannot decode image {name}: refused as a possible decompression bomb ({error})."
            ) from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageLoadError(f"Cannot decode image {name}: the file is corrupt or truncated ({error}).") from error
        try:
            return convert_image_to_rgb(PIL.ImageOps.exif_transpose(image))
        except ValueError as error:
            raise ImageLoadError(f"Cannot convert image {name} (mode {image.mode}) to RGB: {error}") from error


def _describe(source) -> str:
    """How error messages name a source: the path or URL, or the size of raw bytes."""
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return f"<{type(source).__name__}>"


@dataclass(frozen=True)
class _DownloadLimits:
    timeout: float
    total_seconds: float
    max_bytes: int


def _read_source(source, name: str, limits: _DownloadLimits) -> str | io.BytesIO | tempfile.SpooledTemporaryFile:
    """The path of a checked local file, or the downloaded or given bytes as a file object."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, str) and source.lower().startswith(_URL_PREFIXES):
        return _download(source, name, limits)
    elif isinstance(source, (str, os.PathLike)):
        return _check_file(os.fspath(source), name)
    else:
        raise ImageLoadError(
            f"Cannot load image {name}: expected a path (str or os.PathLike), an http(s) URL or bytes, got "
            f"{type(source).__name__}."
        )
    if not data:
        raise ImageLoadError(f"Cannot load image {name}: it is empty (0 bytes).")
    return io.BytesIO(data)


def _check_file(path: str, name: str) -> str:
    """Return `path` if it is a non-empty regular file, else raise an `ImageLoadError` saying what it is."""
    if "://" in path:
        raise ImageLoadError(f"Cannot load image {name}: unsupported URL scheme, expected http:// or https://.")
    if not os.path.exists(path):
        raise ImageLoadError(f"Cannot load image {name}: no such file.")
    if os.path.isdir(path):
        raise ImageLoadError(f"Cannot load image {name}: it is a directory, not an image file.")
    if os.path.getsize(path) == 0:
        raise ImageLoadError(f"Cannot load image {name}: the file is empty (0 bytes).")
    return path


def _download(url: str, name: str, limits: _DownloadLimits) -> tempfile.SpooledTemporaryFile:
    """The body of an http(s) URL in a temporary file, or an `ImageLoadError` naming the HTTP status, the network
    error, or the time or size limit exceeded."""
    request = urllib.request.Request(url, headers={"User-Agent": "transformers-hsvlt"})
    deadline = time.monotonic() + limits.total_seconds
    body = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    try:
        with urllib.request.urlopen(request, timeout=limits.timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise ImageLoadError(
                    f"Cannot load image {name}: the server announces {int(declared):,} bytes, more than the limit of "
                    f"{limits.max_bytes:,} bytes."
                )
            while chunk := response.read1(_DOWNLOAD_CHUNK):
                body.write(chunk)
                if body.tell() > limits.max_bytes:
                    raise ImageLoadError(
                        f"Cannot load image {name}: the body exceeds the limit of {limits.max_bytes:,} bytes."
                    )
                if time.monotonic() > deadline:
                    raise ImageLoadError(
                        f"Cannot load image {name}: the download took more than {limits.total_seconds:g} s."
                    )
    except ImageLoadError:
        body.close()
        raise
    except urllib.error.HTTPError as error:
        error.close()  # the error holds the open response
        body.close()
        raise ImageLoadError(f"Cannot load image {name}: HTTP error {error.code} ({error.reason}).") from error
    except urllib.error.URLError as error:
        body.close()
        raise ImageLoadError(f"Cannot load image {name}: download failed ({error.reason}).") from error
    except (OSError, ValueError, http.client.HTTPException) as error:
        body.close()
        raise ImageLoadError(f"Cannot load image {name}: download failed ({type(error).__name__}: {error}).") from error
    if body.tell() == 0:
        body.close()
        raise ImageLoadError(f"Cannot load image {name}: it is empty (0 bytes).")
    body.seek(0)
    return body


def _open(file: str | io.BytesIO, name: str, max_image_pixels: int | None) -> PIL.Image.Image:
    """Open an image (reading only its header) and refuse it if it declares more than `max_image_pixels`."""
    try:
        with warnings.catch_warnings():
            # Replaced by the `max_image_pixels` check below.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            image = PIL.Image.open(file)
    except PIL.Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"Cannot load image {name}: refused as a possible decompression bomb ({error})."
        ) from error
    except PIL.UnidentifiedImageError as error:
        raise ImageLoadError(
            f"Cannot load image {name}: not a recognised image file (not an image, or its header is corrupt or "
            "truncated)."
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageLoadError(f"Cannot load image {name}: cannot read its header ({error}).") from error
    width, height = image.size
    if max_image_pixels is not None and width * height > max_image_pixels:
        image.close()
        raise ImageLoadError(
            f"Cannot load image {name}: its header declares {width}x{height} = {width * height:,} pixels, more than "
            f"max_image_pixels={max_image_pixels:,} (possible decompression bomb). Pass a larger max_image_pixels to "
            "load it if the file is trusted."
        )
    return image


__all__ = [
    "DEFAULT_DOWNLOAD_SECONDS",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_TIMEOUT",
    "ImageLoadError",
    "load_dataset_image",
    "load_image",
]


def load_dataset_image(encoded: dict) -> PIL.Image.Image:
    """Load an undecoded `datasets.Image` value (`{"bytes", "path"}`) with `load_image`. Embedded bytes win over the
    path, as in `datasets` (Hub datasets keep only a file name beside the bytes); errors name the path if any."""
    data, path = encoded.get("bytes"), encoded.get("path")
    if data is None:
        return load_image(path)
    try:
        return load_image(data)
    except ImageLoadError as error:
        if not path:
            raise
        raise ImageLoadError(f"{path}: {error}") from error
