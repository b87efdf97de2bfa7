"""Input decoding and the bad-input corpus: every case raises the right Rekognition error."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import lfw_image
from faceprint.errors import (
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
)
from faceprint.imaging import ImageLimits, load_image

SAMPLE = lfw_image("Aaron_Peirsol", 1)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_jpeg_bytes_path_and_array_agree() -> None:
    from_path = load_image(SAMPLE)
    from_bytes = load_image(SAMPLE.read_bytes())
    from_array = load_image(from_path.rgb)
    assert from_path.rgb.shape == (250, 250, 3) and from_path.format == "JPEG"
    assert np.array_equal(from_path.rgb, from_bytes.rgb)
    assert np.array_equal(from_path.rgb, from_array.rgb)
    assert np.array_equal(from_path.bgr[:, :, ::-1], from_path.rgb)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_png_modes_decode_to_rgb(mode: str) -> None:
    img = Image.open(SAMPLE).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
    decoded = load_image(encode(img, "PNG"))
    assert decoded.rgb.shape == (250, 250, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.format == "PNG"


def test_cmyk_jpeg_decodes() -> None:
    decoded = load_image(encode(Image.open(SAMPLE).convert("CMYK"), "JPEG"))
    assert decoded.rgb.shape == (250, 250, 3)


@pytest.mark.parametrize("orientation, stored_as", [
    (3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_is_applied(orientation: int, stored_as: Image.Transpose) -> None:
    upright = Image.open(SAMPLE).crop((0, 0, 250, 150))  # wide, so a rotation shows in the shape
    exif = Image.Exif()
    exif[0x0112] = orientation  # how the viewer must turn the stored pixels
    decoded = load_image(encode(upright.transpose(stored_as), "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.exif_orientation == orientation
    assert decoded.rgb.shape == (150, 250, 3)
    diff = np.abs(decoded.rgb.astype(int) - np.asarray(upright).astype(int)).mean()
    assert diff < 6


def test_grey_and_rgba_arrays() -> None:
    grey = np.asarray(Image.open(SAMPLE).convert("L"))
    assert load_image(grey).rgb.shape == (250, 250, 3)
    rgba = np.dstack([load_image(SAMPLE).rgb, np.full((250, 250), 255, np.uint8)])
    assert load_image(rgba).rgb.shape == (250, 250, 3)


BAD_INPUTS = {
    "empty": (b"", InvalidParameterException),
    "text": (b"this is not an image at all\n" * 10, InvalidImageFormatException),
    "truncated jpeg": (SAMPLE.read_bytes()[:2000], InvalidImageFormatException),
    "truncated png": (encode(Image.open(SAMPLE), "PNG")[:3000], InvalidImageFormatException),
    "jpeg magic then junk": (b"\xff\xd8\xff\xe0" + b"\x00" * 500, InvalidImageFormatException),
    "gif": (encode(Image.open(SAMPLE), "GIF"), InvalidImageFormatException),
    "bmp": (encode(Image.open(SAMPLE), "BMP"), InvalidImageFormatException),
    "webp": (encode(Image.open(SAMPLE), "WEBP"), InvalidImageFormatException),
    "pdf-ish": (b"%PDF-1.4\n" + b"0" * 200, InvalidImageFormatException),
    "bomb 60000x60000": (png_header_only(60000, 60000), ImageTooLargeException),
    "too wide 30000x100": (png_header_only(30000, 100), ImageTooLargeException),
    "too small 50x50": (encode(Image.open(SAMPLE).resize((50, 50)), "PNG"), InvalidParameterException),
    "too small 300x60": (encode(Image.open(SAMPLE).resize((300, 60)), "JPEG"), InvalidParameterException),
    "over 5 MB": (b"\xff\xd8\xff" + b"\x00" * (5 * 1024 * 1024), ImageTooLargeException),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_rekognition_error(case: str) -> None:
    data, error = BAD_INPUTS[case]
    with pytest.raises(error) as info:
        load_image(data)
    assert info.value.code == error.__name__
    assert info.value.message


def test_bad_arrays_and_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterException):
        load_image(np.zeros((100, 100, 3), np.float32))
    with pytest.raises(InvalidParameterException):
        load_image(np.zeros((100, 100, 5), np.uint8))
    with pytest.raises(InvalidParameterException):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(InvalidParameterException):
        load_image(tmp_path)
    with pytest.raises(InvalidParameterException):
        load_image(12345)  # type: ignore[arg-type]
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * 6_000_000)
    with pytest.raises(ImageTooLargeException):
        load_image(big)


def test_limits_are_configurable() -> None:
    data = SAMPLE.read_bytes()
    with pytest.raises(ImageTooLargeException):
        load_image(data, ImageLimits(max_bytes=len(data) - 1))
    assert load_image(data, ImageLimits(max_bytes=len(data))).width == 250
    with pytest.raises(InvalidParameterException):
        load_image(data, ImageLimits(min_side=300))
