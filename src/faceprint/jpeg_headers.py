"""What a JPEG's headers say, read before Pillow or libjpeg touch it.

Enough to see that a header lies (its data too short for the size it claims: Huffman
coding spends at least one bit on every 8 x 8 block) and whether libjpeg will hold every
coefficient of the image in memory (progressive or multi-scan files), so that the caller can
refuse or reduce the work before any of it is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from faceprint.errors import InvalidImageFormatException

MAX_JPEG_SEGMENTS = 4096
"""Marker segments allowed before the first scan (real files have a few dozen)."""
MAX_JPEG_JUNK = 65536
"""Fill and extraneous bytes allowed between them (libjpeg skips them; Pillow byte by byte)."""


@dataclass(frozen=True)
class JpegFrame:
    """What a JPEG's headers say, up to its first scan."""

    marker: int
    """The SOFn marker (0xC0 baseline, 0xC2 progressive, ...)."""
    width: int
    height: int
    sampling: dict[int, tuple[int, int]]
    """Component id -> (horizontal, vertical) sampling factor."""
    scan: tuple[int, ...]
    """Component ids of the first scan."""
    data_at: int
    """Offset of the first scan's entropy-coded data."""

    @property
    def buffered(self) -> bool:
        """libjpeg holds every coefficient of the image: progressive, or several scans."""
        return self.marker in _PROGRESSIVE or len(set(self.scan)) < len(self.sampling)

    def min_data_bytes(self) -> int:
        """Bytes that the first scan needs at least: Huffman coding spends one bit or more on
        every 8 x 8 block (0 for arithmetic coding, which has no such floor)."""
        if self.marker in _ARITHMETIC:
            return 0
        hmax = max(h for h, _ in self.sampling.values())
        vmax = max(v for _, v in self.sampling.values())
        blocks = 0
        for cid in set(self.scan) & set(self.sampling):
            h, v = self.sampling[cid]
            blocks += _ceil_div(_ceil_div(self.width * h, hmax), 8) * _ceil_div(_ceil_div(self.height * v, vmax), 8)
        return blocks // 8


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_FILL = re.compile(rb"\xff+")


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """Parse a JPEG's markers up to its first scan; None if they cannot be read. Stray bytes
    between segments are skipped, as libjpeg skips them; more than ``MAX_JPEG_SEGMENTS``
    segments or ``MAX_JPEG_JUNK`` stray bytes are refused (Pillow would walk them byte by byte)."""
    i, frame, junk = 2, None, 0
    try:
        for _ in range(MAX_JPEG_SEGMENTS):
            ff = data.find(b"\xff", i)
            if ff < 0:
                return None
            at = _FILL.match(data, ff).end()  # the marker byte, after any 0xFF fill bytes
            junk += at - i - 1
            if junk > MAX_JPEG_JUNK:
                break
            marker = data[at]
            if marker in _STANDALONE or marker == 0:  # RSTn, TEM or a stray 0xFF00: no length
                i, junk = at + 1, junk + 2
                continue
            end = at + 1 + int.from_bytes(data[at + 1:at + 3], "big")
            if marker in _SOF:
                frame = _frame_header(marker, data[at + 3:end])
            elif marker == 0xDA:
                scan = tuple(data[at + 4:at + 4 + 2 * data[at + 3]:2])
                return None if frame is None else JpegFrame(*frame, scan=scan, data_at=end)
            i = end
    except IndexError:
        return None
    raise InvalidImageFormatException(
        f"JPEG has more than {MAX_JPEG_SEGMENTS} marker segments or {MAX_JPEG_JUNK} stray bytes before "
        "its image data.")


def _frame_header(marker: int, segment: bytes) -> tuple[int, int, int, dict[int, tuple[int, int]]]:
    height, width, count = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"), segment[5]
    sampling = {segment[6 + 3 * k]: (segment[7 + 3 * k] >> 4, segment[7 + 3 * k] & 15) for k in range(count)}
    if not sampling or min(min(hv) for hv in sampling.values()) < 1:
        raise IndexError("invalid sampling factors")
    return marker, width, height, sampling
