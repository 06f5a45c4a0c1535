"""load_image: every source kind, mode conversion, EXIF orientation, and an ImageLoadError for every bad file."""

import functools
import http.server
import io
import struct
import threading
import warnings
import zlib

import numpy as np
import PIL.Image
import PIL.ImageFile
import pytest

from transformers_hsvlt.image_processing_multilabel import MultiLabelImageProcessor
from transformers_hsvlt.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, load_image


def random_rgb(height=20, width=30, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(image: PIL.Image.Image, format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **params)
    return buffer.getvalue()


def png_declaring_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header (IHDR chunk, with a correct CRC) claims `width` x `height` pixels."""
    data = bytearray(encode(PIL.Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture
def write(tmp_path):
    """Write bytes to a file in the test's directory and return its path."""

    def write_file(name: str, data: bytes):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write_file


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    """Serve the test's directory over HTTP on localhost; returns the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_path_str_bytes_and_url_give_the_same_pixels(write, serve):
    rgb = random_rgb()
    path = write("image.png", encode(PIL.Image.fromarray(rgb), "PNG"))
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes()), f"{serve}/image.png"):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (30, 20)
        np.testing.assert_array_equal(np.asarray(image), rgb)


def test_image_is_fully_decoded(write):
    path = write("image.png", encode(PIL.Image.fromarray(random_rgb()), "PNG"))
    image = load_image(path)
    path.unlink()
    np.testing.assert_array_equal(np.asarray(image), random_rgb())


@pytest.mark.parametrize(
    "image, format, expected",
    [
        (PIL.Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG", (255, 255, 255)),
        (PIL.Image.new("RGBA", (4, 4), (255, 0, 0, 255)), "PNG", (255, 0, 0)),
        (PIL.Image.new("LA", (4, 4), (0, 0)), "PNG", (255, 255, 255)),
        (PIL.Image.new("L", (4, 4), 77), "PNG", (77, 77, 77)),
        (PIL.Image.new("1", (4, 4), 1), "PNG", (255, 255, 255)),
        (PIL.Image.new("I;16", (4, 4), 65535), "PNG", (255, 255, 255)),
        (PIL.Image.new("I;16", (4, 4), 257 * 100), "PNG", (100, 100, 100)),
        (PIL.Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", (0, 255, 255)),
        (PIL.Image.new("CMYK", (16, 16), (0, 0, 0, 255)), "JPEG", (0, 0, 0)),
        (PIL.Image.new("CMYK", (16, 16), (0, 0, 0, 255)), "TIFF", (0, 0, 0)),
    ],
    ids=["rgba-transparent", "rgba-opaque", "la", "l", "1", "16bit-max", "16bit-mid", "cmyk-c", "cmyk-k", "cmyk-tiff"],
)
def test_modes_are_converted_to_rgb(image, format, expected):
    loaded = load_image(encode(image, format))
    assert loaded.mode == "RGB"
    np.testing.assert_allclose(
        np.asarray(loaded).reshape(-1, 3), np.tile(expected, (image.width * image.height, 1)), atol=2
    )


def test_palette_png_with_transparency():
    palette_image = PIL.Image.new("P", (2, 1), 0)
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette_image.putpixel((1, 0), 1)
    loaded = load_image(encode(palette_image, "PNG", transparency=0))
    np.testing.assert_array_equal(np.asarray(loaded), [[[255, 255, 255], [0, 0, 255]]])


def test_sixteen_bit_png_keeps_its_scale(write):
    ramp = np.linspace(0, 65535, 256).astype(np.uint16).reshape(16, 16)
    loaded = load_image(write("ramp.png", encode(PIL.Image.fromarray(ramp), "PNG")))
    np.testing.assert_allclose(np.asarray(loaded)[..., 0], ramp / 257, atol=0.5 + 1e-9)


def test_exif_orientation_is_applied(write):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[...] = (0, 0, 255)
    stored[:8, :8] = (255, 0, 0)  # red marker in the stored top-left corner
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate the stored image 90 degrees clockwise to show it upright
    path = write("rotated.jpg", encode(PIL.Image.fromarray(stored), "JPEG", quality=95, exif=exif))

    loaded = load_image(path)
    assert loaded.size == (20, 40)  # (width, height): transposed
    decoded = np.asarray(PIL.Image.open(path).convert("RGB"))  # stored pixels, orientation ignored
    np.testing.assert_array_equal(np.asarray(loaded), np.rot90(decoded, k=-1))
    top_right, top_left = np.asarray(loaded)[2, 17], np.asarray(loaded)[2, 2]
    assert top_right[0] > 230 and top_right[2] < 25
    assert top_left[0] < 25 and top_left[2] > 230


def test_loaded_images_are_preprocessed_like_the_original_file(write):
    rgba = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    path = write("rgba.png", encode(PIL.Image.fromarray(rgba, mode="RGBA"), "PNG"))
    processor = MultiLabelImageProcessor()
    from_loader = processor(load_image(path), return_tensors="np")["pixel_values"]
    from_file = processor(PIL.Image.open(path), return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(from_loader, from_file)


def expect_error(source, *fragments, **kwargs):
    with pytest.raises(ImageLoadError) as caught:
        load_image(source, **kwargs)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return caught.value


def test_missing_file(tmp_path):
    expect_error(tmp_path / "missing.jpg", "missing.jpg", "no such file")


def test_directory(tmp_path):
    expect_error(tmp_path, str(tmp_path), "is a directory")


def test_zero_byte_file_and_empty_bytes(write):
    expect_error(write("empty.png", b""), "empty.png", "empty (0 bytes)")
    expect_error(b"", "<0 bytes>", "empty (0 bytes)")


def test_text_file(write):
    expect_error(write("notes.jpg", b"this is not an image\n" * 10), "notes.jpg", "not a recognised image file")


@pytest.mark.parametrize("format", ["JPEG", "PNG"])
def test_truncated_file(write, format):
    assert PIL.ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = encode(PIL.Image.fromarray(random_rgb(64, 64)), format)
    path = write(f"truncated.{format.lower()}", data[: len(data) * 2 // 3])
    expect_error(path, path.name, "corrupt or truncated", "truncated")


def test_corrupt_png(write):
    data = bytearray(encode(PIL.Image.fromarray(random_rgb(64, 64)), "PNG"))
    data[len(data) // 3 : len(data) // 3 + 200] = bytes(200)
    path = write("corrupt.png", bytes(data))
    expect_error(path, "corrupt.png", "corrupt or truncated")


def test_corrupt_header(write):
    data = bytearray(encode(PIL.Image.fromarray(random_rgb()), "JPEG"))
    data[2:20] = bytes(18)
    expect_error(write("header.jpg", bytes(data)), "header.jpg", "not a recognised image file")


def test_decompression_bomb_over_max_image_pixels(write):
    path = write("small.png", encode(PIL.Image.fromarray(random_rgb(20, 20)), "PNG"))
    error = expect_error(
        path, "small.png", "20x20 = 400 pixels", "max_image_pixels=100", "decompression bomb", max_image_pixels=100
    )
    assert error.__cause__ is None
    assert load_image(path, max_image_pixels=400).size == (20, 20)


def test_decompression_bomb_refused_before_decoding(write, monkeypatch):
    """A 12000x12000 header (144 Mpixels, a 432 MB RGB image) in a 70-byte file: refused from its header alone."""

    def fail_if_decoded(self):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", fail_if_decoded)
    path = write("bomb.png", png_declaring_size(12_000, 12_000))
    assert path.stat().st_size < 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not leak either
        expect_error(
            path, "bomb.png", "12000x12000 = 144,000,000 pixels", "decompression bomb", max_image_pixels=10_000_000
        )


def test_default_limit_bounds_what_is_decoded_at_full_size(write, monkeypatch):
    """8000x8000 (the default limit) is opened; a 144 Mpixel PNG header is refused (only headers are read here:
    decoding is stubbed out). A large JPEG counts the pixels of the reduced scale it is decoded at."""
    assert DEFAULT_MAX_IMAGE_PIXELS == 8000 * 8000

    def stop_before_decoding(self):
        raise OSError("decoding stubbed out by the test")

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", stop_before_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expect_error(png_declaring_size(8000, 8000), "corrupt or truncated", "decoding stubbed out by the test")
        expect_error(png_declaring_size(12_000, 12_000), "12000x12000 = 144,000,000 pixels", "decompression bomb")
    monkeypatch.undo()
    jpeg = write("wide.jpg", encode(PIL.Image.new("RGB", (9000, 8000), (10, 200, 30)), "JPEG"))
    image = load_image(jpeg)
    assert max(image.size) <= 2048 and np.abs(np.asarray(image, dtype=float) - (10, 200, 30)).mean() < 3


def test_decompression_bomb_over_pillows_hard_limit(write):
    path = write("huge.png", png_declaring_size(20_000, 20_000))
    expect_error(path, "huge.png", "decompression bomb")
    expect_error(path, "huge.png", "decompression bomb", max_image_pixels=None)


def test_url_errors(serve):
    expect_error(f"{serve}/missing.png", f"{serve}/missing.png", "HTTP error 404")
    expect_error("http://127.0.0.1:9/image.png", "127.0.0.1:9", "download failed", timeout=2)


@pytest.mark.parametrize(
    "source, fragments",
    [
        ("ftp://example.com/image.png", ["ftp://example.com/image.png", "unsupported URL scheme"]),
        (None, ["expected a path", "got NoneType"]),
        (12, ["expected a path", "got int"]),
    ],
)
def test_unsupported_sources(source, fragments):
    expect_error(source, *fragments)


def test_errors_are_value_errors():
    assert issubclass(ImageLoadError, ValueError)
    with pytest.raises(ValueError, match="max_image_pixels must be a positive integer"):
        load_image(b"unused", max_image_pixels=0)
