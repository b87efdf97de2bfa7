"""A corpus of hostile and odd images, generated: truncated, corrupt, bombs, lying headers, every
mode and bit depth that JPEG and PNG hold, CMYK, animated, odd EXIF, wrong formats, edge sizes.

``corpus(base)`` returns :class:`Case` entries: a name, the bytes, and what ``load_image`` must
do with them under the default limits (``"ok"`` or the Rekognition error code it raises).
``base`` is the picture the valid variants are made from (an LFW face in the tests; a synthetic
picture otherwise); keep it small, since every valid variant goes through face detection.

Run ``python tests/badimages.py OUT`` to write every case (the large ones too) into OUT.
"""

from __future__ import annotations

import contextlib
import io
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

OK = "ok"
FORMAT = "InvalidImageFormatException"
TOO_LARGE = "ImageTooLargeException"
PARAM = "InvalidParameterException"


class Case(NamedTuple):
    name: str
    data: bytes
    expected: str


# -- encoders -------------------------------------------------------------------------------------

def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png(width: int, height: int, depth: int, ctype: int, pixels: bytes, extra: bytes = b"",
        interlace: int = 0, level: int = 6) -> bytes:
    """A PNG from raw, unfiltered scanlines (``pixels``: the packed rows, no filter bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, interlace)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(
        _filtered(pixels, height), level)) + chunk(b"IEND", b"")


def _filtered(pixels: bytes, height: int) -> bytes:
    if height == 0:
        return b""
    row = len(pixels) // height
    return b"".join(b"\0" + pixels[i * row:(i + 1) * row] for i in range(height))


def png_rows(grey: np.ndarray, depth: int, channels: int) -> bytes:
    """Pack an 8-bit grey picture as ``channels`` samples of ``depth`` bits (PNG's order)."""
    if depth == 16:
        samples = np.repeat(grey.astype(">u2") * 257, channels, axis=1)
        return samples.tobytes()
    samples = np.repeat(grey >> (8 - depth), channels, axis=1).astype(np.uint8)
    if depth == 8:
        return samples.tobytes()
    per_byte = 8 // depth
    width = samples.shape[1]
    padded = np.zeros((samples.shape[0], -(-width // per_byte) * per_byte), np.uint8)
    padded[:, :width] = samples
    packed = np.zeros((samples.shape[0], padded.shape[1] // per_byte), np.uint8)
    for i in range(per_byte):
        packed |= padded[:, i::per_byte] << (8 - depth * (i + 1))
    return packed.tobytes()


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def adam7_png(grey: np.ndarray) -> bytes:
    """An interlaced (Adam7) 8-bit grey PNG."""
    h, w = grey.shape
    raw = b"".join(_filtered(sub.tobytes(), sub.shape[0]) for x0, y0, dx, dy in ADAM7
                   if (sub := grey[y0::dy, x0::dx]).size)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 1)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_header_only(width: int, height: int, ctype: int = 2) -> bytes:
    """A tiny PNG that claims huge dimensions: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, ctype, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def png_bomb(width: int, height: int) -> bytes:
    """A real 8-bit grey PNG of zeros: a few kB that decode to width x height bytes."""
    comp = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, offset of the marker, length of the segment with its marker) up to SOS."""
    i = 2
    while i + 4 <= len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        yield marker, i, 2 + length
        if marker == 0xDA:
            return
        i += 2 + length


def jpeg_set_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header claiming ``width`` x ``height``: a lying header."""
    out = bytearray(data)
    for marker, at, _ in jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            out[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(out)


def jpeg_patch_frame(data: bytes, offset: int, value: bytes, marker: int | None = None) -> bytes:
    """Overwrite bytes of the frame header (``offset`` from its marker), optionally its marker."""
    out = bytearray(data)
    for m, at, _ in jpeg_segments(data):
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            out[at + offset:at + offset + len(value)] = value
            if marker is not None:
                out[at + 1] = marker
    return bytes(out)


def jpeg_insert(data: bytes, marker: int, payload: bytes) -> bytes:
    """Insert an APPn/COM segment right after SOI."""
    return data[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + data[2:]


def jpeg_drop(data: bytes, marker: int) -> bytes:
    out, last = b"", 0
    for m, at, length in jpeg_segments(data):
        if m == marker:
            out += data[last:at]
            last = at + length
    return out + data[last:]


# -- EXIF -----------------------------------------------------------------------------------------

def tiff_ifd(entries: list[tuple[int, int, int, bytes]], order: str = ">", next_ifd: int = 0,
             header: bytes | None = None) -> bytes:
    """A TIFF header and IFD0: entries are (tag, type, count, value bytes, padded into 4 or
    placed after the IFD)."""
    head = header if header is not None else (b"MM\0*" if order == ">" else b"II*\0") + struct.pack(
        order + "I", 8)
    table = struct.pack(order + "H", len(entries))
    after = b""
    data_at = 8 + 2 + 12 * len(entries) + 4
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            field = value.ljust(4, b"\0")
        else:
            field = struct.pack(order + "I", data_at + len(after))
            after += value
        table += struct.pack(order + "HHI", tag, typ, count) + field
    return head + table + struct.pack(order + "I", next_ifd) + after


def exif_orientation(value: bytes, typ: int = 3, count: int = 1) -> bytes:
    return b"Exif\0\0" + tiff_ifd([(0x0112, typ, count, value)])


def _short(v: int) -> bytes:
    return struct.pack(">H", v)


EXIF_VARIANTS: dict[str, bytes] = {
    "orientation text '6'": exif_orientation(b"6\0", typ=2, count=2),
    "orientation text 'Rotate 90 CW'": exif_orientation(b"Rotate 90 CW\0", typ=2, count=13),
    "orientation 0": exif_orientation(_short(0)),
    "orientation 9": exif_orientation(_short(9)),
    "orientation 65535": exif_orientation(_short(65535)),
    "orientation two shorts": exif_orientation(_short(6) + _short(6), count=2),
    "orientation long 6": exif_orientation(struct.pack(">I", 6), typ=4),
    "orientation rational": exif_orientation(struct.pack(">II", 6, 1), typ=5),
    "orientation signed -6": exif_orientation(struct.pack(">h", -6), typ=8),
    "orientation float": exif_orientation(struct.pack(">f", 6.0), typ=11),
    "orientation unknown type": exif_orientation(_short(6), typ=99),
    "orientation count 0": exif_orientation(b"", count=0),
    "orientation count huge": exif_orientation(_short(6), count=0x7FFFFFFF),
    "ifd count beyond data": b"Exif\0\0MM\0*\0\0\0\x08\xff\xff" + b"\0\x12\0\x03" * 3,
    "ifd offset beyond data": b"Exif\0\0MM\0*\x7f\xff\xff\xff",
    "ifd loop": b"Exif\0\0" + tiff_ifd([(0x0112, 3, 1, _short(6))], next_ifd=8),
    "exif ifd pointer beyond data": b"Exif\0\0" + tiff_ifd([(0x8769, 4, 1, struct.pack(">I", 0x7FFFFFF0))]),
    "exif ifd pointer loop": b"Exif\0\0" + tiff_ifd([(0x8769, 4, 1, struct.pack(">I", 8))]),
    "gps ifd garbage": b"Exif\0\0" + tiff_ifd([(0x8825, 4, 1, struct.pack(">I", 11))]),
    "bad byte order": b"Exif\0\0XX\0*\0\0\0\x08" + b"\0" * 20,
    "header only": b"Exif\0\0",
    "exif of random bytes": b"Exif\0\0" + np.random.default_rng(9).bytes(600),
    "huge exif": b"Exif\0\0" + tiff_ifd([(0x0112, 3, 1, _short(6)),
                                         (0x010E, 2, 65_000, b"x" * 64_999 + b"\0")]),
}


def exif_variants() -> dict[str, bytes]:
    return dict(EXIF_VARIANTS)


# -- the corpus -----------------------------------------------------------------------------------

def synthetic(size: int = 160) -> Image.Image:
    """A deterministic picture with edges and colour (no face)."""
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([(x * 255 // size), (y * 255 // size), ((x + y) * 127 // size)], -1).astype(np.uint8)
    rgb[size // 4:size // 2, size // 4:3 * size // 4] = (200, 40, 40)
    return Image.fromarray(rgb)


def corpus(base: Image.Image | None = None, large: bool = False) -> list[Case]:
    """Every case; ``large`` adds the few that decode tens of megapixels (slow to detect in)."""
    base = (base or synthetic()).convert("RGB")
    makers: list[Callable[[Image.Image], list[Case]]] = [
        _jpeg_variants, _png_modes, _png_odd, _exif_cases, _sizes, _truncated_and_corrupt,
        _lying_and_bombs, _not_images, _wrong_formats]
    if large:
        makers.append(_large)
    cases = [case for make in makers for case in make(base)]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def _jpeg_variants(base: Image.Image) -> list[Case]:
    grey = base.convert("L")
    mpo = encode(base, "MPO", save_all=True, append_images=[base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    return [
        Case("jpeg baseline 4:2:0", encode(base, "JPEG", quality=90), OK),
        Case("jpeg 4:4:4", encode(base, "JPEG", quality=90, subsampling=0), OK),
        Case("jpeg 4:2:2", encode(base, "JPEG", quality=90, subsampling=1), OK),
        Case("jpeg progressive", encode(base, "JPEG", quality=90, progressive=True), OK),
        Case("jpeg optimized", encode(base, "JPEG", quality=90, optimize=True), OK),
        Case("jpeg quality 1", encode(base, "JPEG", quality=1), OK),
        Case("jpeg grey (L)", encode(grey, "JPEG"), OK),
        Case("jpeg grey progressive", encode(grey, "JPEG", progressive=True), OK),
        Case("jpeg bilevel (1)", encode(grey.convert("1"), "JPEG"), OK),
        Case("jpeg CMYK (Adobe)", encode(base.convert("CMYK"), "JPEG"), OK),
        Case("jpeg CMYK progressive", encode(base.convert("CMYK"), "JPEG", progressive=True), OK),
        Case("jpeg YCbCr input", encode(base.convert("YCbCr"), "JPEG"), OK),
        Case("jpeg RGBX input", encode(base.convert("RGBX"), "JPEG"), OK),
        Case("jpeg with ICC profile", encode(base, "JPEG", icc_profile=b"\0" * 128 + b"acsp" * 50), OK),
        Case("jpeg with 60 kB comment", encode(base, "JPEG", comment=b"c" * 60_000), OK),
        Case("jpeg MPO (two frames)", mpo, OK),
        Case("jpeg restart markers", encode(base, "JPEG", restart_marker_blocks=1), OK),
        Case("jpeg without JFIF", jpeg_drop(encode(base, "JPEG"), 0xE0), OK),
        Case("jpeg many APP segments", _many_apps(encode(base, "JPEG")), OK),
        Case("jpeg APP2 ICC garbage", jpeg_insert(encode(base, "JPEG"), 0xE2, b"ICC_PROFILE\0\x01\x01junk"), OK),
        Case("jpeg APP1 XMP orientation 6", jpeg_insert(encode(base, "JPEG"), 0xE1, _xmp(b"6")), OK),
        Case("jpeg APP1 XMP orientation 9", jpeg_insert(encode(base, "JPEG"), 0xE1, _xmp(b"9")), OK),
        Case("jpeg trailing garbage", encode(base, "JPEG") + b"\0garbage" * 100, OK),
    ]


def _many_apps(data: bytes) -> bytes:
    for n in range(3, 16):
        data = jpeg_insert(data, 0xE0 + n, b"APP%d\0" % n + b"x" * 100)
    return data


def _xmp(value: bytes) -> bytes:
    return (b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><rdf:Description "
            b"xmlns:tiff='http://ns.adobe.com/tiff/1.0/' tiff:Orientation=\"" + value
            + b"\"/></rdf:RDF></x:xmpmeta>")


def _png_modes(base: Image.Image) -> list[Case]:
    """Every colour type and bit depth PNG allows, with and without tRNS, as Pillow reads them
    (1, L, I;16, RGB, P, LA, RGBA; 16-bit RGB(A) and LA are read at 8 bits)."""
    grey = np.asarray(base.convert("L"))
    h, w = grey.shape
    palette = chunk(b"PLTE", bytes(np.repeat(np.arange(256, dtype=np.uint8), 3)))
    depths = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    trns = {0: b"\0\x05", 2: b"\0\x05\0\x05\0\x05", 3: b"\0" * 5}
    cases = []
    for ctype, ds in depths.items():
        for depth in ds:
            rows = png_rows(grey, depth, _CHANNELS[ctype])
            if ctype == 3 and depth < 8:  # palette indices: spread over the grey palette
                rows = png_rows(grey, depth, 1)
                extra = chunk(b"PLTE", bytes(np.repeat(np.linspace(0, 255, 2 ** depth).astype(np.uint8), 3)))
            else:
                extra = palette if ctype == 3 else b""
            name = f"png type {ctype} {depth}-bit"
            cases.append(Case(name, png(w, h, depth, ctype, rows, extra), OK))
            if ctype in trns:
                cases.append(Case(name + " tRNS", png(w, h, depth, ctype, rows, extra + chunk(
                    b"tRNS", trns[ctype] if ctype != 0 or depth != 16 else b"\x12\x34")), OK))
    return cases


def _png_odd(base: Image.Image) -> list[Case]:
    grey = np.asarray(base.convert("L"))
    h, w = grey.shape
    rgba = base.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: the colour beneath must still be read
    apng = encode(base, "PNG", save_all=True, append_images=[base.rotate(90), base.rotate(180)], duration=100)
    return [
        Case("png from pillow RGB", encode(base, "PNG"), OK),
        Case("png fully transparent RGBA", encode(rgba, "PNG"), OK),
        Case("png P from pillow", encode(base.convert("P"), "PNG"), OK),
        Case("png P with transparency", encode(base.convert("P"), "PNG", transparency=0), OK),
        Case("png adam7 interlaced", adam7_png(grey), OK),
        Case("png apng animated", apng, OK),
        Case("png text chunks", png(w, h, 8, 0, grey.tobytes(), chunk(b"tEXt", b"Comment\0" + b"z" * 5000)), OK),
        Case("png gamma and sRGB", png(w, h, 8, 0, grey.tobytes(),
                                       chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"sRGB", b"\0")), OK),
        Case("png iCCP garbage", png(w, h, 8, 0, grey.tobytes(), chunk(b"iCCP", b"p\0\0" + b"junk")), OK),
        Case("png unknown ancillary chunk", png(w, h, 8, 0, grey.tobytes(), chunk(b"xyZw", b"?" * 100)), OK),
        Case("png without IEND", png(w, h, 8, 0, grey.tobytes())[:-12], OK),
        Case("png zlib level 0", png(w, h, 8, 0, grey.tobytes(), level=0), OK),
    ]


def _exif_cases(base: Image.Image) -> list[Case]:
    jpeg = encode(base, "JPEG", quality=90)
    grey = np.asarray(base.convert("L"))
    h, w = grey.shape
    cases = [Case(f"jpeg exif {name}", jpeg_insert(jpeg, 0xE1, block), OK) for name, block in EXIF_VARIANTS.items()]
    cases += [
        Case("jpeg two exif blocks", jpeg_insert(jpeg_insert(jpeg, 0xE1, EXIF_VARIANTS["orientation 9"]),
                                                 0xE1, exif_orientation(_short(3))), OK),
        Case("png eXIf orientation text", png(w, h, 8, 0, grey.tobytes(),
                                              chunk(b"eXIf", EXIF_VARIANTS["orientation text '6'"][6:])), OK),
        Case("png eXIf garbage", png(w, h, 8, 0, grey.tobytes(), chunk(b"eXIf", b"garbage!" * 10)), OK),
        Case("png raw profile exif garbage", png(w, h, 8, 0, grey.tobytes(), chunk(
            b"tEXt", b"Raw profile type exif\0\nexif\n  40\nzzzz-not-hex\n")), OK),
    ]
    return cases


def _sizes(base: Image.Image) -> list[Case]:
    def sized(w: int, h: int, fmt: str) -> bytes:
        return encode(base.resize((w, h)), fmt)

    def grey_png(w: int, h: int) -> bytes:
        return png(w, h, 8, 0, bytes(w * h))

    return [
        Case("jpeg 80x80", sized(80, 80, "JPEG"), OK),
        Case("png 80x80", sized(80, 80, "PNG"), OK),
        Case("jpeg 79x79", sized(79, 79, "JPEG"), PARAM),
        Case("png 79x79", sized(79, 79, "PNG"), PARAM),
        Case("jpeg 80x79", sized(80, 79, "JPEG"), PARAM),
        Case("png 79x80", sized(79, 80, "PNG"), PARAM),
        Case("png 1x1", sized(1, 1, "PNG"), PARAM),
        Case("jpeg 1x1", sized(1, 1, "JPEG"), PARAM),
        Case("jpeg 80x4000 tall", sized(80, 4000, "JPEG"), OK),
        Case("png 2000x1 one pixel high", grey_png(2000, 1), PARAM),
        Case("png 20000x1 one pixel high", grey_png(20000, 1), PARAM),
        Case("jpeg 20000x1 one pixel high", encode(Image.new("L", (20000, 1), 128), "JPEG"), PARAM),
        Case("png 1x20000 one pixel wide", grey_png(1, 20000), PARAM),
        Case("png 20001x1 over the side limit", png_header_only(20001, 1), TOO_LARGE),
        Case("png 20000x80 at the side limits", grey_png(20000, 80), OK),
    ]


def _truncated_and_corrupt(base: Image.Image) -> list[Case]:
    jpeg = encode(base, "JPEG", quality=90)
    prog = encode(base, "JPEG", quality=90, progressive=True)
    pngb = encode(base, "PNG")
    grey = np.asarray(base.convert("L"))
    h, w = grey.shape
    sos = [at + length for m, at, length in jpeg_segments(jpeg) if m == 0xDA][0]
    flipped = bytearray(jpeg)
    for i in range(sos + 50, len(jpeg) - 2, 97):
        flipped[i] ^= 0x55
    ihdr_bad_crc = PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0), crc=0) + pngb[33:]
    idat_at = pngb.index(b"IDAT")
    zlib_bad = bytearray(pngb)
    zlib_bad[idat_at + 4:idat_at + 40] = b"\xff" * 36
    return [
        Case("jpeg truncated at half", jpeg[:len(jpeg) // 2], FORMAT),
        Case("jpeg truncated after headers", jpeg[:sos], FORMAT),
        Case("jpeg truncated in headers", jpeg[:100], FORMAT),
        Case("jpeg progressive truncated", prog[:len(prog) // 2], FORMAT),
        Case("jpeg truncated then EOI", jpeg[:len(jpeg) // 2] + b"\xff\xd9", OK),
        Case("jpeg SOI only", b"\xff\xd8", FORMAT),
        Case("jpeg SOI and marker", b"\xff\xd8\xff", FORMAT),
        Case("jpeg magic then zeros", b"\xff\xd8\xff\xe0" + b"\0" * 500, FORMAT),
        Case("jpeg scan bytes flipped", bytes(flipped), FORMAT),
        Case("jpeg without huffman tables", jpeg_drop(jpeg, 0xC4), OK),  # libjpeg's default tables
        Case("jpeg without quantization tables", jpeg_drop(jpeg, 0xDB), FORMAT),
        Case("jpeg without frame header", jpeg_drop(jpeg, 0xC0), FORMAT),
        Case("jpeg 12-bit precision claim", jpeg_patch_frame(jpeg, 4, b"\x0c"), FORMAT),
        Case("jpeg lossless SOF3 claim", jpeg_patch_frame(jpeg, 4, b"\x08", marker=0xC3), FORMAT),
        Case("jpeg arithmetic SOF9 claim", jpeg_patch_frame(jpeg, 4, b"\x08", marker=0xC9), OK),  # noise
        Case("jpeg zero components", jpeg_patch_frame(jpeg, 9, b"\x00"), FORMAT),
        Case("jpeg two components", jpeg_patch_frame(jpeg, 9, b"\x02"), FORMAT),
        Case("jpeg zero width", jpeg_set_size(jpeg, 0, h), FORMAT),
        Case("jpeg zero height (DNL)", jpeg_set_size(jpeg, w, 0), FORMAT),
        Case("jpeg segment length past end", jpeg[:20] + b"\xff\xe1\xff\xff" + b"x" * 50, FORMAT),
        Case("png truncated in IDAT", pngb[:len(pngb) // 2], FORMAT),
        Case("png truncated after IHDR", pngb[:33], FORMAT),
        Case("png signature only", PNG_SIGNATURE, FORMAT),
        Case("png IHDR bad CRC", ihdr_bad_crc, FORMAT),
        Case("png corrupt zlib", bytes(zlib_bad), FORMAT),
        Case("png bit depth 3", png(w, h, 3, 0, bytes(w * h)), FORMAT),
        Case("png colour type 5", png(w, h, 8, 5, bytes(w * h)), FORMAT),
        Case("png 16-bit palette", png(w, h, 16, 3, bytes(2 * w * h), chunk(b"PLTE", b"\0" * 768)), FORMAT),
        Case("png zero width", png_header_only(0, h), FORMAT),
        Case("png palette without PLTE", png(w, h, 8, 3, grey.tobytes()), OK),
        Case("png no IDAT", pngb[:33] + chunk(b"IEND", b""), FORMAT),
        Case("png IDAT too short for rows", png(w, h, 8, 0, bytes(w * (h // 2)))[:-12] + chunk(b"IEND", b""), FORMAT),
    ]


def _lying_and_bombs(base: Image.Image) -> list[Case]:
    small = base.resize((96, 96))
    jpeg = encode(base, "JPEG")
    textured = Image.fromarray(np.random.default_rng(9).integers(0, 255, (160, 160, 3), np.uint8))
    return [
        Case("jpeg lying 8900x8900 baseline", jpeg_set_size(encode(small, "JPEG", quality=50), 8900, 8900), FORMAT),
        Case("jpeg lying 8900x8900 progressive", jpeg_set_size(
            encode(small, "JPEG", quality=50, progressive=True, subsampling=0), 8900, 8900), FORMAT),
        Case("jpeg lying 8900x8900 20 kB", jpeg_set_size(encode(textured, "JPEG", quality=60), 8900, 8900), FORMAT),
        Case("jpeg lying 20000x20000", jpeg_set_size(encode(small, "JPEG"), 20000, 20000), TOO_LARGE),
        Case("jpeg lying 65535x65535", jpeg_set_size(encode(small, "JPEG"), 65535, 65535), TOO_LARGE),
        Case("jpeg lying 2000x2000 small data", jpeg_set_size(encode(small, "JPEG", quality=50), 2000, 2000), FORMAT),
        Case("jpeg 1000 empty COM segments", jpeg[:2] + b"\xff\xfe\x00\x02" * 1000 + jpeg[2:], OK),
        Case("jpeg 5000 empty COM segments", jpeg[:2] + b"\xff\xfe\x00\x02" * 5000 + jpeg[2:], FORMAT),
        Case("jpeg stray bytes between segments", jpeg[:2] + b"\xff\xfe\x00\x03c" + b"junk" * 25 + jpeg[2:], OK),
        Case("jpeg 100 kB of fill bytes", jpeg[:2] + b"\xff" * 100_000 + jpeg[2:], FORMAT),
        Case("jpeg 100 kB of stray 0xFF00", jpeg[:2] + b"\xff\x00" * 50_000 + jpeg[2:], FORMAT),
        Case("png lying 5000x5000 short data", png_header_only(5000, 5000), FORMAT),
        Case("png bomb header 60000x60000", png_header_only(60000, 60000), TOO_LARGE),
        Case("png bomb header 30000x100", png_header_only(30000, 100), TOO_LARGE),
        Case("png bomb header 2^31 side", png_header_only(2 ** 31 - 1, 2 ** 31 - 1), TOO_LARGE),
        Case("png bomb 7000x7000 zeros", png_bomb(7000, 7000), TOO_LARGE),
        Case("over 5 MB", b"\xff\xd8\xff" + b"\0" * (5 * 1024 * 1024), TOO_LARGE),
    ]


def _not_images(base: Image.Image) -> list[Case]:
    rng = np.random.default_rng(9)
    return [
        Case("zero-length", b"", PARAM),
        Case("one byte", b"\xff", FORMAT),
        Case("text", b"this is not an image at all\n" * 10, FORMAT),
        Case("html", b"<!doctype html><html><body><img src=x></body></html>", FORMAT),
        Case("json", b'{"Image": {"Bytes": "..."}}', FORMAT),
        Case("pdf header", b"%PDF-1.4\n" + b"0" * 200, FORMAT),
        Case("zip", b"PK\x03\x04" + rng.bytes(300), FORMAT),
        Case("random bytes", rng.bytes(4096), FORMAT),
        Case("nul bytes", b"\0" * 4096, FORMAT),
        Case("png signature then jpeg", PNG_SIGNATURE + encode(base, "JPEG"), FORMAT),
        Case("base64 of a jpeg", __import__("base64").b64encode(encode(base, "JPEG")), FORMAT),
    ]


def _wrong_formats(base: Image.Image) -> list[Case]:
    frames = [base, base.rotate(90)]
    cases = [
        Case("gif", encode(base, "GIF"), FORMAT),
        Case("gif animated", encode(base, "GIF", save_all=True, append_images=frames[1:]), FORMAT),
        Case("bmp", encode(base, "BMP"), FORMAT),
        Case("webp", encode(base, "WEBP"), FORMAT),
        Case("tiff", encode(base, "TIFF"), FORMAT),
        Case("tiff with jpeg compression", encode(base, "TIFF", compression="jpeg"), FORMAT),
        Case("ico", encode(base, "ICO"), FORMAT),
        Case("ppm", encode(base, "PPM"), FORMAT),
        Case("tga", encode(base, "TGA"), FORMAT),
        Case("pcx", encode(base, "PCX"), FORMAT),
    ]
    with contextlib.suppress(OSError, KeyError):  # Pillow built without OpenJPEG: no such case
        cases.append(Case("jpeg 2000", encode(base, "JPEG2000"), FORMAT))
    return cases


def _large(base: Image.Image) -> list[Case]:
    """Cases that decode tens of megapixels: refused or decoded at reduced size, but slow to detect in."""
    big = base.resize((6000, 6000), Image.Resampling.NEAREST)
    return [
        Case("jpeg honest 8900x8900", encode(base.resize((8900, 8900), Image.Resampling.NEAREST), "JPEG",
                                             quality=30), OK),
        Case("jpeg honest 6000x6000 progressive", encode(big, "JPEG", quality=30, progressive=True), OK),
        Case("jpeg honest 8900x8900 progressive", encode(base.resize((8900, 8900), Image.Resampling.NEAREST),
                                                         "JPEG", quality=30, progressive=True), TOO_LARGE),
        Case("png bomb 6000x6000 zeros", png_bomb(6000, 6000), OK),
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/badimages.py OUT_FOLDER", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(corpus(large=True)):
        slug = "".join(ch if ch.isalnum() else "-" for ch in case.name).strip("-")
        (out / f"{i:03d}-{slug}.{case.expected}.bin").write_bytes(case.data)
    print(f"wrote {i + 1} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
