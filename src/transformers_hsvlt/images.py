"""Loading images from paths, URLs or bytes into upright RGB PIL images, with errors naming the source and the cause.

Every image is fully decoded, so truncated or corrupt files fail here and not later in a data loader. Pillow's
`ImageFile.LOAD_TRUNCATED_IMAGES` must stay `False` (this module never changes it): with it enabled Pillow silently
fills the missing part of truncated files.
"""

import functools
import http.client
import io
import math
import os
import socket
import stat
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass

import PIL.Image
import PIL.ImageOps

from .image_conversion_multilabel import convert_image_to_rgb


#: Most pixels (width x height) `load_image` decodes at once by default: 8000 x 8000, or a 61-megapixel photograph;
#: at most 256 MiB in memory (Pillow holds up to 4 bytes a pixel). A JPEG counts the pixels of the reduced scale it
#: is decoded at (see `max_side`), so only formats decoded at full size (PNG, TIFF, ...) meet this limit in practice.
#: A 448x448 model input needs 200,704 pixels.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000

#: Longest side of the images `load_image` returns by default: larger images are reduced while decoding (see
#: `load_image`). Over 4 times the 448-pixel input of the family's largest models, so the models see the same
#: content, while a batch of such images stays small in the models' preprocessing (float32 copies).
DEFAULT_MAX_SIDE = 2048

#: Rows of the full-size image reduced at a time (times the reduction factor): converting or premultiplying the alpha
#: of a strip, not of the whole image, keeps the memory of a reduction small beside the decoded image.
_REDUCE_STRIP_ROWS = 64

#: Modes `PIL.Image.reduce` cannot average (bilevel, palette indices, 16-bit) and the mode each is reduced in.
_REDUCIBLE_MODE = {"1": "L", "P": "RGB", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I"}

#: Modes with an alpha band, which `PIL.Image.reduce` averages premultiplied.
_ALPHA_MODES = frozenset({"LA", "La", "RGBA", "RGBa", "PA"})

#: Seconds `load_image` waits for a URL to connect or to send data.
DEFAULT_TIMEOUT = 10.0

#: Seconds a whole download may take, from connecting to the last byte (a server that trickles its headers or body
#: cannot hold a prediction forever).
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
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> PIL.Image.Image:
    """
    Load an image as an upright, fully decoded RGB PIL image.

    The EXIF orientation is applied and every mode is converted to RGB as by
    [`~image_conversion_multilabel.convert_image_to_rgb`]: transparency composited onto white, 16-bit images scaled to
    8 bits, CMYK, palette and grayscale images converted.

    Args:
        source (`str`, `os.PathLike`, `bytes` or `bytearray`):
            A local path, an `http://` or `https://` URL, or the encoded bytes of an image file.
        max_image_pixels (`int`, *optional*, defaults to `DEFAULT_MAX_IMAGE_PIXELS`):
            Most pixels decoded at once (width x height at the scale the image is decoded at: a JPEG's reduced one),
            checked from the image header before decoding, so that decompression bombs (small files declaring huge
            images) are refused without allocating their memory. `None` disables this check; Pillow still refuses
            images over twice `PIL.Image.MAX_IMAGE_PIXELS`.
        timeout (`float`, *optional*, defaults to `DEFAULT_TIMEOUT`):
            Seconds a URL may take to connect or between two pieces of data.
        download_seconds (`float`, *optional*, defaults to `DEFAULT_DOWNLOAD_SECONDS`):
            Seconds a whole download may take: connecting, the headers and the body.
        max_download_bytes (`int`, *optional*, defaults to `DEFAULT_MAX_DOWNLOAD_BYTES`):
            Largest accepted body of a URL (streamed to a temporary file while it arrives).
        max_side (`int`, *optional*, defaults to `DEFAULT_MAX_SIDE`):
            An image whose longer side exceeds this is reduced by the smallest integer factor that brings it within
            it, averaging blocks of pixels: a JPEG while it is decoded (Pillow's `draft`, at 1/2, 1/4 or 1/8 scale),
            other formats strip by strip right after decoding. Memory then holds the decoded file once, and everything
            after (conversion, the model's preprocessing, heatmap figures) works on the reduced image. `None` keeps
            the full size.

    Returns:
        `PIL.Image.Image`: The image, in mode `RGB`.

    Raises:
        ImageLoadError: If the source is missing, empty, unreachable, not an image, corrupt or truncated, too large,
            or of an unsupported type.
    """
    if max_image_pixels is not None and max_image_pixels < 1:
        raise ValueError(f"max_image_pixels must be a positive integer or None, got {max_image_pixels!r}.")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive integer or None, got {max_side!r}.")
    name = _describe(source)
    limits = _DownloadLimits(timeout, download_seconds, max_download_bytes)
    image = _open(_read_source(source, name, limits), name, max_image_pixels, max_side)
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
            reduced = _reduce(image, _reduction_factor(image.size, max_side))
            return convert_image_to_rgb(PIL.ImageOps.exif_transpose(reduced))
        except ValueError as error:
            raise ImageLoadError(f"Cannot convert image {name} (mode {image.mode}) to RGB: {error}") from error


def _reduction_factor(size: tuple[int, int], max_side: int | None) -> int:
    """The smallest integer factor bringing the longer side of `size` to at most `max_side` (1: no reduction)."""
    return 1 if max_side is None else max(1, math.ceil(max(size) / max_side))


def _reduce(image: PIL.Image.Image, factor: int) -> PIL.Image.Image:
    """`image` reduced by `factor` (block averages, as `PIL.Image.reduce`), strip by strip so that only one strip at
    a time is converted to a mode that can be averaged (with an alpha band if it has transparency); the image itself
    if `factor` is 1. The EXIF orientation is kept."""
    if factor == 1:
        return image
    if image.has_transparency_data and image.mode not in _ALPHA_MODES:
        mode = "RGBA"  # a `transparency` colour becomes an alpha band, averaged with the colours
    else:
        mode = _REDUCIBLE_MODE.get(image.mode, image.mode)
    reduced = PIL.Image.new(mode, (math.ceil(image.width / factor), math.ceil(image.height / factor)))
    rows = _REDUCE_STRIP_ROWS * factor
    for top in range(0, image.height, rows):
        strip = image.crop((0, top, image.width, min(top + rows, image.height)))
        reduced.paste((strip if strip.mode == mode else strip.convert(mode)).reduce(factor), (0, top // factor))
    reduced.getexif().update(image.getexif())
    return reduced


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

    def __post_init__(self):
        for name, value in (("timeout", self.timeout), ("download_seconds", self.total_seconds)):
            if not 0 < value < math.inf:  # NaN too: a NaN deadline would never pass
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}.")
        if self.max_bytes < 1:
            raise ValueError(f"max_download_bytes must be positive, got {self.max_bytes!r}.")


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
    if not os.path.isfile(path):  # reading a FIFO may wait forever, a device may never end
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(os.stat(path).st_mode) else "a device or socket"
        raise ImageLoadError(f"Cannot load image {name}: it is {kind}, not a regular file.")
    if os.path.getsize(path) == 0:
        raise ImageLoadError(f"Cannot load image {name}: the file is empty (0 bytes).")
    return path


def _download(url: str, name: str, limits: _DownloadLimits) -> tempfile.SpooledTemporaryFile:
    """The body of an http(s) URL in a temporary file, or an `ImageLoadError` naming the HTTP status, the network
    error, or the time or size limit exceeded. The time limit covers connecting, the headers and the body: every
    socket read waits at most until the deadline."""
    request = urllib.request.Request(url, headers={"User-Agent": "transformers-hsvlt"})
    deadline = time.monotonic() + limits.total_seconds
    opener = urllib.request.build_opener(_DeadlineHTTPHandler(deadline), _DeadlineHTTPSHandler(deadline))
    body = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    try:
        with opener.open(request, timeout=limits.timeout) as response:
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
    except ImageLoadError:
        body.close()
        raise
    except urllib.error.HTTPError as error:
        error.close()  # the error holds the open response
        body.close()
        raise ImageLoadError(f"Cannot load image {name}: HTTP error {error.code} ({error.reason}).") from error
    except (OSError, ValueError, http.client.HTTPException) as error:
        body.close()
        if time.monotonic() >= deadline:
            raise ImageLoadError(
                f"Cannot load image {name}: the download took more than {limits.total_seconds:g} s."
            ) from error
        reason = error.reason if isinstance(error, urllib.error.URLError) else f"{type(error).__name__}: {error}"
        raise ImageLoadError(f"Cannot load image {name}: download failed ({reason}).") from error
    if body.tell() == 0:
        body.close()
        raise ImageLoadError(f"Cannot load image {name}: it is empty (0 bytes).")
    body.seek(0)
    return body


class _DeadlineReader(io.RawIOBase):
    """The reading side of a socket (`socket.SocketIO`) whose every read waits at most `timeout` and never past
    `deadline` (`time.monotonic()`); past it, reading raises `TimeoutError`."""

    def __init__(self, sock: socket.socket, timeout: float, deadline: float):
        super().__init__()
        self._sock, self._timeout, self._deadline = sock, timeout, deadline
        self._raw = sock.makefile("rb", buffering=0)  # keeps the socket open until this reader is closed

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("download deadline passed")
        self._sock.settimeout(min(self._timeout, remaining))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """A connected socket whose `makefile("rb")` (what `http.client` reads the status, headers and body from) is a
    `_DeadlineReader`; everything else is the socket's."""

    def __init__(self, sock: socket.socket, timeout: float, deadline: float):
        self._sock, self._timeout, self._deadline = sock, timeout, deadline

    def makefile(self, mode: str = "r", *args, **kwargs):
        if mode != "rb":
            return self._sock.makefile(mode, *args, **kwargs)
        return io.BufferedReader(_DeadlineReader(self._sock, self._timeout, self._deadline))

    def __getattr__(self, attribute):
        return getattr(self._sock, attribute)


class _DeadlineConnection:
    """Mixin of `http.client.HTTP(S)Connection`: connecting waits at most until `deadline`, and so does every read."""

    def __init__(self, *args, deadline: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        read_timeout = self.timeout
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("download deadline passed")
        self.timeout = min(read_timeout, remaining)
        super().connect()
        self.timeout = read_timeout
        self.sock = _DeadlineSocket(self.sock, read_timeout, self._deadline)


class _DeadlineHTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: float):
        super().__init__()
        self._deadline = deadline

    def http_open(self, request):
        return self.do_open(functools.partial(_DeadlineHTTPConnection, deadline=self._deadline), request)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: float):
        super().__init__()
        self._deadline = deadline

    def https_open(self, request):
        connection = functools.partial(_DeadlineHTTPSConnection, deadline=self._deadline)
        return self.do_open(connection, request, context=self._context)


def _open(file: str | io.BytesIO, name: str, max_image_pixels: int | None, max_side: int | None) -> PIL.Image.Image:
    """Open an image (reading only its header), set a JPEG to decode at the reduced scale `max_side` asks for, and
    refuse the image if it has more than `max_image_pixels` to decode."""
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
    factor = _reduction_factor(image.size, max_side)
    if factor > 1:
        image.draft(image.mode, (image.width // factor, image.height // factor))  # JPEG only; others ignore it
    width, height = image.size
    if max_image_pixels is not None and width * height > max_image_pixels:
        image.close()
        raise ImageLoadError(
            f"Cannot load image {name}: its header declares {width}x{height} = {width * height:,} pixels to decode, "
            f"more than max_image_pixels={max_image_pixels:,} (possible decompression bomb). Pass a larger "
            "max_image_pixels to load it if the file is trusted."
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
