"""Input decoding and the bad-input corpus: every case raises the right Rekognition error."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from badimages import EXIF_VARIANTS, corpus, jpeg_insert, jpeg_set_size, png, png_bomb
from conftest import DATA, lfw_image
from faceprint.errors import (
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidParameterException,
)
from faceprint.imaging import ImageLimits, eight_bit, load_image, reduction

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


GREY = np.asarray(Image.open(SAMPLE).convert("L"))
PNG_MODES = [c for c in corpus(Image.open(SAMPLE)) if c.name.startswith("png type ")]


@pytest.mark.parametrize("case", PNG_MODES, ids=[c.name for c in PNG_MODES])
def test_every_png_colour_type_and_depth_keeps_its_tones(case) -> None:
    """Grey, RGB, palette, grey+alpha and RGBA at every bit depth, with and without tRNS, all
    made from the same grey picture: each decodes to that picture at the file's precision (a
    16-bit one exactly, not clipped to white; alpha dropped, the colour beneath kept)."""
    depth = int(case.name.split()[3].split("-")[0])
    levels = 2 ** min(depth, 8) - 1
    expected = (GREY >> (8 - min(depth, 8))).astype(np.int32) * (255 // levels)
    decoded = load_image(case.data)
    assert decoded.rgb.shape == (250, 250, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.format == "PNG"
    for channel in range(3):
        assert np.array_equal(decoded.rgb[:, :, channel], expected), channel


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_grey_is_scaled_not_clipped(mode: str) -> None:
    wide = GREY.astype(np.uint16) * 257
    if mode == "I":
        img = Image.fromarray(wide.astype(np.int32))
    else:  # Pillow's convert() to I;16B clips at 255: build the big-endian samples directly
        img = Image.frombytes(mode, (250, 250), wide.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    assert img.mode == mode
    assert np.array_equal(np.asarray(eight_bit(img)), GREY)
    if mode != "I":  # Pillow writes no mode I PNG; older Pillows read 16-bit grey as I
        decoded = load_image(encode(img, "PNG"))
        assert np.array_equal(decoded.rgb[:, :, 0], GREY)


def test_sixteen_bit_grey_face_is_found_and_indexed(fast) -> None:
    """Defect 4 of issue 9: a 16-bit grey PNG decoded almost white and lost its face."""
    data = encode(Image.fromarray(GREY.astype(np.uint16) * 257), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert len(fast.detect_faces(data).face_details) == 1
    fast.create_collection("sixteen-bit")
    indexed = fast.index_faces("sixteen-bit", data, external_image_id="grey16")
    assert len(indexed.face_records) == 1
    stored = fast.list_faces("sixteen-bit").faces
    assert [f.external_image_id for f in stored] == ["grey16"]


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "YCbCr", "RGBX"])
def test_jpeg_modes_decode_to_rgb(mode: str) -> None:
    img = Image.open(SAMPLE)
    decoded = load_image(encode(img.convert(mode), "JPEG", quality=95))
    reference = np.asarray(img.convert(mode if mode in ("L", "1") else "RGB").convert("RGB")).astype(int)
    assert decoded.rgb.shape == (250, 250, 3)
    assert np.abs(decoded.rgb.astype(int) - reference).mean() < 6


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


# -- EXIF: malformed orientation and EXIF blocks are ignored, as image viewers ignore them -------

APPLIED = {"orientation two shorts": 6, "orientation long 6": 6, "ifd loop": 6, "huge exif": 6}
"""EXIF_VARIANTS whose orientation is a readable integer in 1..8 (Pillow reads the first of two
shorts); every other variant is ignored (orientation 1)."""


@pytest.mark.parametrize("variant", sorted(EXIF_VARIANTS))
def test_malformed_exif_never_refuses_a_good_image(variant: str) -> None:
    upright = Image.open(SAMPLE).crop((0, 0, 250, 150))
    orientation = APPLIED.get(variant, 1)
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    decoded = load_image(jpeg_insert(encode(stored, "JPEG", quality=95), 0xE1, EXIF_VARIANTS[variant]))
    assert decoded.exif_orientation == orientation
    assert decoded.rgb.shape == (150, 250, 3)
    assert np.abs(decoded.rgb.astype(int) - np.asarray(upright).astype(int)).mean() < 6


def test_text_orientation_in_png_exif_is_ignored() -> None:
    exif = EXIF_VARIANTS["orientation text 'Rotate 90 CW'"][6:]
    data = png(250, 250, 8, 0, GREY.tobytes(), extra=_chunk(b"eXIf", exif))
    decoded = load_image(data)
    assert decoded.exif_orientation == 1 and np.array_equal(decoded.rgb[:, :, 0], GREY)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(orientation: int) -> None:
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.open(SAMPLE).crop((0, 0, 250, 150)), "JPEG", exif=exif.tobytes(), quality=95)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = load_image(data)
    assert decoded.exif_orientation == orientation
    assert np.array_equal(decoded.rgb, reference)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# -- cost follows size: lying headers, reduced decodes, pixel bounds -----------------------------

def test_lying_jpeg_header_is_refused_before_decoding() -> None:
    """Defect 3 of issue 9: 2 kB claiming 8,900 x 8,900 was decoded in full (seconds, 1 GB)."""
    small = encode(Image.open(SAMPLE).resize((96, 96)), "JPEG", quality=50)
    for progressive in (False, True):
        lying = jpeg_set_size(encode(Image.open(SAMPLE).resize((96, 96)), "JPEG", progressive=progressive),
                              8900, 8900)
        with pytest.raises(InvalidImageFormatException, match="too short for the 8900x8900"):
            load_image(lying)
    assert load_image(small, ImageLimits(min_side=80)).width == 96  # the honest original decodes


def test_large_jpeg_is_decoded_at_reduced_size() -> None:
    img = Image.open(SAMPLE).resize((5200, 3000))
    data = encode(img, "JPEG", quality=80)
    decoded = load_image(data)
    assert (decoded.width, decoded.height, decoded.reduced_by) == (2600, 1500, 2)
    full = load_image(data, ImageLimits(decode_side=0))
    assert (full.width, full.reduced_by) == (5200, 1)
    shrunk = cv2.resize(full.rgb, (2600, 1500), interpolation=cv2.INTER_AREA)
    assert np.abs(decoded.rgb.astype(int) - shrunk.astype(int)).mean() < 3


def test_large_png_is_reduced_and_a_png_bomb_refused() -> None:
    decoded = load_image(png_bomb(6000, 5200))  # 31 Mpixel of zeros in 30 kB: allowed, reduced
    assert (decoded.width, decoded.height, decoded.reduced_by) == (3000, 2600, 2)
    with pytest.raises(ImageTooLargeException, match="49000000 pixels to decode at full size"):
        load_image(png_bomb(7000, 7000))  # 49 Mpixel: over max_full_pixels, refused unallocated


def test_reduction_keeps_both_sides_above_their_minimum() -> None:
    limits = ImageLimits()
    assert reduction(8900, 8900, limits) == 3
    assert reduction(5119, 5119, limits) == 1
    assert reduction(20000, 100, limits) == 1  # the short side stays at 80 px or more
    assert reduction(20000, 400, limits) == 5
    assert reduction(8900, 8900, ImageLimits(decode_side=0)) == 1
    decoded = load_image(png(20000, 100, 8, 0, bytes(20000 * 100)))
    assert (decoded.width, decoded.height) == (20000, 100)


def test_full_size_decodes_are_bounded() -> None:
    """A PNG and a progressive JPEG are decoded whole: their pixels count against
    max_full_pixels; a baseline JPEG of the same size is decoded at reduced size."""
    limits = ImageLimits(max_full_pixels=1_000_000, decode_side=500)
    img = Image.open(SAMPLE).resize((1200, 1000))
    with pytest.raises(ImageTooLargeException):
        load_image(encode(img, "PNG"), limits)
    with pytest.raises(ImageTooLargeException, match="progressive"):
        load_image(encode(img, "JPEG", progressive=True), limits)
    assert load_image(encode(img, "JPEG"), limits).width == 600
    with pytest.raises(ImageTooLargeException):  # unless it would not be reduced
        load_image(encode(img, "JPEG"), ImageLimits(max_full_pixels=1_000_000, decode_side=0))


@pytest.fixture(scope="module")
def large_group_photo() -> bytes:
    """A real group photo (1920 x 1440) upscaled to a 6000 x 4500 JPEG."""
    img = Image.open(DATA / "faces" / "groups" / "human_groups" / "group-1.jpg")
    return encode(img.resize((6000, 4500), Image.Resampling.BICUBIC), "JPEG", quality=85)


def test_faces_of_a_large_photo_are_found_at_reduced_size(fast, large_group_photo: bytes) -> None:
    original = DATA / "faces" / "groups" / "human_groups" / "group-1.jpg"
    assert load_image(large_group_photo).reduced_by == 2
    small = fast.detect_faces(original).face_details
    large = fast.detect_faces(large_group_photo).face_details
    assert len(small) >= 10 and abs(len(large) - len(small)) <= 1
    for face in small:  # every face of the original is found at the same place (ratios)
        b = face.bounding_box
        assert any(abs(b.left - o.bounding_box.left) < 0.01 and abs(b.top - o.bounding_box.top) < 0.01
                   for o in large)
    compared = fast.compare_faces(large_group_photo, original)
    assert compared.face_matches and compared.face_matches[0].similarity > 90


def test_text_of_a_large_photo_is_read_at_reduced_size(fp) -> None:
    img = Image.open(DATA / "text" / "icdar2015-train" / "images" / "img_8.jpg")  # 1280 x 720
    data = encode(img.resize((5200, 2925), Image.Resampling.BICUBIC), "JPEG", quality=85)
    assert load_image(data).reduced_by == 2
    words = [d.detected_text.upper() for d in fp.detect_text(data).text_detections if d.type == "WORD"]
    for expected in ("WHY", "PAY", "FOR", "NOTHING?"):
        assert expected in words


def test_quality_filters_measure_faces_in_the_pictures_own_pixels(fast) -> None:
    """A reduced decode changes no quality verdict: six faces about 55 px wide in a 5200 x 3000
    JPEG (decoded at half size, where they are 27 px) pass MEDIUM and HIGH's size bars (32 and
    48 px), as they do decoded at full size."""
    face = Image.open(SAMPLE).resize((140, 140))
    canvas = Image.new("RGB", (5200, 3000), (120, 120, 120))
    for i in range(6):
        canvas.paste(face, (300 + i * 800, 1400))
    data = encode(canvas, "JPEG", quality=92)
    for level in ("MEDIUM", "HIGH"):
        reduced = fast.analyze(data, quality_filter=level)
        assert reduced.image.reduced_by == 2 and len(reduced.faces) + len(reduced.rejected) == 6
        assert "SMALL_BOUNDING_BOX" not in [reason for _, reason in reduced.rejected], level


def test_a_png_of_countless_chunks_is_refused_before_pillow_walks_them() -> None:
    """Pillow reads a PNG chunk by chunk in Python: 5 MB of empty chunks cost it seconds, 50x an
    honest PNG of that size. More than 16,384 chunks are refused, wherever they lie."""
    honest = png(250, 250, 8, 0, GREY.tobytes())
    spam = _chunk(b"prVt", b"") * 20_000
    for data in (honest[:33] + spam + honest[33:], honest[:-12] + spam + honest[-12:]):
        with pytest.raises(InvalidImageFormatException, match="chunks"):
            load_image(data)
    assert load_image(honest[:33] + _chunk(b"prVt", b"") * 1000 + honest[33:]).width == 250
