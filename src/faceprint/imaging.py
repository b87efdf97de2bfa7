"""Decode and validate input images.

Accepts what callers naturally hold: encoded bytes, a path, or an RGB numpy
array. Encoded input must be JPEG or PNG (Rekognition's formats), at most
``max_bytes`` long; EXIF orientation is applied, so boxes are relative to the
upright image, as Rekognition does. Dimensions are read before decoding so a
decompression bomb is refused without allocating it.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceprint.errors import (
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
)

ImageInput = bytes | bytearray | memoryview | str | os.PathLike | np.ndarray

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MIN_IMAGE_SIDE = 80
MAX_IMAGE_PIXELS = 80_000_000
MAX_IMAGE_SIDE = 20_000
ACCEPTED_FORMATS = ("JPEG", "PNG")


@dataclass(frozen=True)
class ImageLimits:
    """Input limits; the defaults are Rekognition's (5 MB, 80 px minimum)."""

    max_bytes: int = MAX_IMAGE_BYTES
    min_side: int = MIN_IMAGE_SIDE
    max_pixels: int = MAX_IMAGE_PIXELS
    max_side: int = MAX_IMAGE_SIDE


@dataclass
class DecodedImage:
    """An upright RGB image (``uint8``, H x W x 3) and where it came from."""

    rgb: np.ndarray
    format: str | None = None
    exif_orientation: int = 1
    _bgr: np.ndarray | None = field(default=None, repr=False)

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
        return _check_side(_decode(bytes(image), limits), limits)
    if isinstance(image, (str, os.PathLike)):
        return _check_side(_decode(_read_path(Path(image), limits), limits), limits)
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
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise InvalidParameterException("Image bytes are empty.")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeException(_too_many_bytes(len(data), limits))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            _check_dimensions(pil.width, pil.height, limits)
            pil.load()
            orientation = int(pil.getexif().get(0x0112, 1) or 1)
            pil = ImageOps.exif_transpose(pil)
            rgb = np.asarray(pil.convert("RGB"))
    except UnidentifiedImageError as exc:
        raise InvalidImageFormatException(
            "Unsupported image format: expected JPEG or PNG data."
        ) from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageTooLargeException(f"Image dimensions are too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageFormatException(f"Image data is corrupt or truncated: {exc}") from exc
    return DecodedImage(rgb=np.ascontiguousarray(rgb), format=pil.format or _sniff(data),
                        exif_orientation=orientation)


def _sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    return None


def _check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise ImageTooLargeException(
            f"Image dimensions {width}x{height} exceed the limit of {limits.max_pixels} pixels "
            f"or {limits.max_side} pixels a side."
        )


def _check_side(image: DecodedImage, limits: ImageLimits) -> DecodedImage:
    if min(image.width, image.height) < limits.min_side:
        raise InvalidParameterException(
            f"Image is {image.width}x{image.height} pixels; the minimum is "
            f"{limits.min_side} pixels for both height and width."
        )
    return image


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
