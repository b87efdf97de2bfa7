"""Decode and validate input images.

Accepts what callers naturally hold: encoded bytes, a path, or an RGB numpy
array. Encoded input must be JPEG or PNG (Rekognition's formats), at most
``max_bytes`` long; EXIF orientation is applied, so boxes are relative to the
upright image, as Rekognition does (a malformed orientation or EXIF block is
ignored, as image viewers ignore it).

A request's cost follows its size, not what its header claims. Dimensions are
checked before anything is allocated; a large JPEG is decoded at reduced size
by libjpeg's DCT scaling and a large PNG is reduced right after decoding, to no
less than ``decode_side`` pixels on the long side (face detection never looks
at more); the pixels decoded at full size (a PNG's, a progressive JPEG's
coefficients) are bounded by ``max_full_pixels``; and a JPEG whose data is too
short for the size it claims (a lying header) is refused without decoding.
Boxes and landmarks are ratios of the image and quality filters measure a face's size in the
image's own pixels (``reduced_by``), so a reduced decode keeps them; what is measured on the
pixels themselves (sharpness, face vectors) comes from the reduced picture and moves a little.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.errors import (
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
)
from faceprint.jpeg_headers import JpegFrame, jpeg_frame

ImageInput = bytes | bytearray | memoryview | str | os.PathLike | np.ndarray

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MIN_IMAGE_SIDE = 80
MAX_IMAGE_PIXELS = 80_000_000
MAX_IMAGE_SIDE = 20_000
MAX_FULL_PIXELS = 40_000_000
MAX_PNG_CHUNKS = 16_384
"""Chunks a PNG may hold (a 5 MB one in libpng's 8 kB IDATs has 640): Pillow walks them in Python."""
DECODE_SIDE = 2560
EXIF_ORIENTATION = 0x0112

# Pillow's decode errors for malformed data (struct.error and friends come from its parsers).
_DATA_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                ZeroDivisionError, struct.error)


@dataclass(frozen=True)
class ImageLimits:
    """Input limits; the byte and side minimum are Rekognition's (5 MB, 80 px).

    ``max_pixels`` and ``max_side`` bound the size an image claims; ``max_full_pixels`` the
    pixels decoded at full size (a PNG's; a progressive or multi-scan JPEG's, whose
    coefficients libjpeg holds in full); ``decode_side`` is the long side that large images are
    decoded at, at least (0: always full size; keep it at or above the detector's ``max_side``).
    """

    max_bytes: int = MAX_IMAGE_BYTES
    min_side: int = MIN_IMAGE_SIDE
    max_pixels: int = MAX_IMAGE_PIXELS
    max_side: int = MAX_IMAGE_SIDE
    max_full_pixels: int = MAX_FULL_PIXELS
    decode_side: int = DECODE_SIDE


@dataclass
class DecodedImage:
    """An upright RGB image (``uint8``, H x W x 3) and where it came from."""

    rgb: np.ndarray
    format: str | None = None
    exif_orientation: int = 1
    reduced_by: int = 1
    """The image was decoded at 1/``reduced_by`` of its size (each side)."""
    _bgr: np.ndarray | None = field(default=None, repr=False)
    source: bytes | None = field(default=None, repr=False, compare=False)
    """The encoded bytes it was decoded from (None for an array): what the audit record's probe
    digest is of, when the image reaches a search already decoded (the server's)."""

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def bgr(self) -> np.ndarray:
        """The same pixels in OpenCV's channel order (computed once)."""
        if self._bgr is None:
            self._bgr = np.ascontiguousarray(self.rgb[:, :, ::-1])
        return self._bgr


def load_image(image: ImageInput | DecodedImage, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode ``image`` (bytes, path or RGB array) into a :class:`DecodedImage`.

    Raises ``InvalidImageFormatException``, ``ImageTooLargeException`` or
    ``InvalidParameterException`` as Rekognition would.
    """
    limits = limits or ImageLimits()
    if isinstance(image, DecodedImage):
        return image
    if isinstance(image, np.ndarray):
        return _check_side(_from_array(image, limits), limits)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(bytes(image), limits)
    if isinstance(image, (str, os.PathLike)):
        return _decode(_read_path(Path(image), limits), limits)
    raise InvalidParameterException(
        f"Image must be bytes, a file path or an RGB numpy array, not {type(image).__name__}."
    )


def _read_path(path: Path, limits: ImageLimits) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidParameterException(f"Cannot read image file {path}: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise InvalidParameterException(f"Image path is a directory: {path}")
    if size > limits.max_bytes:
        raise ImageTooLargeException(_too_many_bytes(size, limits))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidParameterException(f"Cannot read image file {path}: {exc.strerror or exc}") from exc


def _too_many_bytes(size: int, limits: ImageLimits) -> str:
    return f"Image size {size} bytes exceeds the maximum of {limits.max_bytes} bytes."


def _decode(data: bytes, limits: ImageLimits) -> DecodedImage:
    if not data:
        raise InvalidParameterException("Image bytes are empty.")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeException(_too_many_bytes(len(data), limits))
    kind = _sniff(data)
    if kind is None:
        raise InvalidImageFormatException("Unsupported image format: expected JPEG or PNG data.")
    frame = jpeg_frame(data) if kind == "JPEG" else None  # before Pillow walks the same markers
    if kind == "PNG":
        _check_png_chunks(data)
    pil = _open(data, kind)
    _check_claim(pil.size[0], pil.size[1], limits)
    reduced_by = _plan_jpeg(pil, frame, len(data), limits) if kind == "JPEG" else 1
    _check_full_pixels(pil.size[0] * pil.size[1], limits)
    try:
        pil.load()
    except _DATA_ERRORS as exc:
        raise InvalidImageFormatException(f"Image data is corrupt or truncated: {exc}") from exc
    orientation = exif_orientation(pil)
    pil, factor = _reduce(eight_bit(pil), limits)
    if orientation != 1:
        pil = pil.transpose(_transposes()[orientation])
    return DecodedImage(rgb=_to_array(pil), format=kind, exif_orientation=orientation,
                        reduced_by=reduced_by * factor, source=data)


def _sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    return None


def _check_png_chunks(data: bytes) -> None:
    """Refuse a PNG of more than ``MAX_PNG_CHUNKS`` chunks (from their lengths alone)."""
    at = 8
    for _ in range(MAX_PNG_CHUNKS):
        if at + 8 > len(data) or data[at + 4:at + 8] == b"IEND":
            return
        at += 12 + int.from_bytes(data[at:at + 4], "big")
    if at + 8 <= len(data) and data[at + 4:at + 8] != b"IEND":
        raise InvalidImageFormatException(f"PNG has more than {MAX_PNG_CHUNKS} chunks.")


def _open(data: bytes, kind: str) -> Any:
    """Pillow's reader for ``kind``, opened on ``data`` (headers read, nothing decoded).

    The plugin class is used directly: ``Image.open`` would first apply Pillow's own,
    process-wide decompression-bomb limit; the limits here are per call."""
    from PIL import JpegImagePlugin, PngImagePlugin

    reader = JpegImagePlugin.JpegImageFile if kind == "JPEG" else PngImagePlugin.PngImageFile
    try:
        return reader(io.BytesIO(data))
    except _DATA_ERRORS as exc:
        raise InvalidImageFormatException(f"Image data is not a valid {kind}: {exc}") from exc


def _check_claim(width: int, height: int, limits: ImageLimits) -> None:
    """The dimensions an image claims, checked before anything is decoded."""
    _check_dimensions(width, height, limits)
    if min(width, height) < limits.min_side:
        raise InvalidParameterException(_too_small(width, height, limits))


def _check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise ImageTooLargeException(
            f"Image dimensions {width}x{height} exceed the limit of {limits.max_pixels} pixels "
            f"or {limits.max_side} pixels a side."
        )


def _check_full_pixels(pixels: int, limits: ImageLimits, why: str = "") -> None:
    if pixels > limits.max_full_pixels:
        raise ImageTooLargeException(
            f"Image has {pixels} pixels to decode at full size{why}; the limit is "
            f"{limits.max_full_pixels} (JPEGs are decoded at reduced size; PNGs cannot be)."
        )


def _too_small(width: int, height: int, limits: ImageLimits) -> str:
    return (f"Image is {width}x{height} pixels; the minimum is {limits.min_side} pixels for both "
            f"height and width.")


def _check_side(image: DecodedImage, limits: ImageLimits) -> DecodedImage:
    if min(image.width, image.height) < limits.min_side:
        raise InvalidParameterException(_too_small(image.width, image.height, limits))
    return image


# -- JPEG: refuse lying headers, bound buffered decodes, decode large ones at reduced size ------

def _plan_jpeg(pil: Any, frame: JpegFrame | None, size: int, limits: ImageLimits) -> int:
    """Check a JPEG's claims against its data and the limits, then set Pillow to decode it at
    1/2, 1/4 or 1/8 scale when it is large; returns that factor."""
    width, height = pil.size
    if frame is not None and size - frame.data_at < frame.min_data_bytes():
        raise InvalidImageFormatException(
            f"JPEG data is too short for the {width}x{height} pixels its header claims: "
            f"{size - frame.data_at} bytes of image data, at least {frame.min_data_bytes()} needed."
        )
    if frame is None or frame.buffered:
        _check_full_pixels(width * height, limits, " (a progressive or multi-scan JPEG is decoded whole)")
    scale = next((s for s in (8, 4, 2) if s <= reduction(width, height, limits)), 1)
    if scale > 1:
        pil.draft(pil.mode, (width // scale, height // scale))
    return scale


# -- pixels: any mode to 8-bit RGB, reduced, upright --------------------------------------------

_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def eight_bit(pil: Any) -> Any:
    """The image as 8-bit ``RGB`` or ``L``: 16-bit grey scaled (not clipped) to 8 bits, alpha
    dropped (the colour under it is kept), palette, CMYK and YCbCr converted."""
    from PIL import Image

    if pil.mode in ("RGB", "L"):
        return pil
    if pil.mode in _SIXTEEN_BIT:
        samples = np.asarray(pil)
        if samples.dtype.kind != "u":  # mode I: 32-bit, holding 16-bit samples
            samples = np.clip(samples, 0, 65535)
        return Image.fromarray((samples >> 8).astype(np.uint8), "L")
    if pil.mode in ("1", "LA", "La"):
        return pil.convert("L")
    if pil.mode in ("P", "PA"):
        pil = pil.convert("RGBA")  # Pillow reads the palette's transparency only this way
    return pil.convert("RGB")


def reduction(width: int, height: int, limits: ImageLimits) -> int:
    """The largest factor an image may be reduced by: its long side stays at least
    ``decode_side`` and its short side at least ``min_side``."""
    if limits.decode_side <= 0:
        return 1
    return max(1, min(max(width, height) // limits.decode_side, min(width, height) // max(1, limits.min_side)))


def _reduce(pil: Any, limits: ImageLimits) -> tuple[Any, int]:
    """Box-reduce a large image (see :func:`reduction`); returns the image and the factor."""
    factor = reduction(pil.size[0], pil.size[1], limits)
    if factor < 2:
        return pil, 1
    return pil.reduce(factor), factor


def _to_array(pil: Any) -> np.ndarray:
    array = np.asarray(pil)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array)


def exif_orientation(pil: Any) -> int:
    """The EXIF orientation (1-8) of an opened image; 1 where it is absent or malformed (text,
    out of range, unreadable EXIF), as image viewers treat it."""
    try:
        value = pil.getexif().get(EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - any malformed EXIF is ignored, never a refusal
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    return 1


def _transposes() -> dict[int, Any]:
    from PIL import Image

    t = Image.Transpose
    return {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE,
            6: t.ROTATE_270, 7: t.TRANSVERSE, 8: t.ROTATE_90}


def _from_array(array: np.ndarray, limits: ImageLimits) -> DecodedImage:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InvalidParameterException(
            f"Image array must be H x W x 3 (RGB), got shape {tuple(array.shape)}."
        )
    if array.dtype != np.uint8:
        raise InvalidParameterException(f"Image array must be uint8, got {array.dtype}.")
    _check_dimensions(array.shape[1], array.shape[0], limits)
    return DecodedImage(rgb=np.ascontiguousarray(array[:, :, :3]))
