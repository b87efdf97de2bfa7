"""A DET curve (false-non-match rate against false-match rate, both on log axes) as a PNG, with Pillow only.

Rates of zero cannot sit on a log axis: they are drawn on the axis' floor (one decade below the
smallest rate the data can show) and the legend says so. The profile's thresholds are marked on the
curve with their similarity.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 900, 640
LEFT, RIGHT, TOP, BOTTOM = 90, 30, 50, 70
CURVE = (31, 90, 180)
MARK = (200, 60, 30)
GRID = (225, 225, 225)
INK = (30, 30, 30)


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


class _Axes:
    """Log10 axes mapping rates in [10^lo, 1] onto the plot area."""

    def __init__(self, x_lo: int, y_lo: int) -> None:
        self.x_lo, self.y_lo = x_lo, y_lo

    def x(self, rate: float) -> float:
        value = math.log10(max(rate, 10.0 ** self.x_lo))
        return LEFT + (value - self.x_lo) / -self.x_lo * (WIDTH - LEFT - RIGHT)

    def y(self, rate: float) -> float:
        value = math.log10(max(rate, 10.0 ** self.y_lo))
        return HEIGHT - BOTTOM - (value - self.y_lo) / -self.y_lo * (HEIGHT - TOP - BOTTOM)


def _floor_decade(smallest: float) -> int:
    """The decade one below ``smallest`` (a rate > 0), at most -1."""
    return min(-1, math.floor(math.log10(smallest)) - 1)


def det_png(points: Sequence[Sequence[float | None]], thresholds: Sequence[dict[str, Any]], title: str,
            impostor_pairs: int, genuine_pairs: int) -> bytes:
    """The PNG of a DET curve: ``points`` are [score, FMR, FNMR]; ``thresholds`` rows with ``similarity``,
    ``fmr`` and ``fnmr`` are marked."""
    curve = [(float(p[1]), float(p[2])) for p in points if p[1] is not None and p[2] is not None]
    axes = _Axes(_floor_decade(1.0 / max(impostor_pairs, 1)), _floor_decade(1.0 / max(genuine_pairs, 1)))
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    _grid(draw, axes)
    if len(curve) > 1:
        draw.line([(axes.x(f), axes.y(n)) for f, n in curve], fill=CURVE, width=3)
    small = _font(13)
    for row in thresholds:
        if row.get("fmr") is None or row.get("fnmr") is None:
            continue
        cx, cy = axes.x(row["fmr"]), axes.y(row["fnmr"])
        draw.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), outline=MARK, width=2)
        draw.text((cx + 7, cy - 18), f"{row['similarity']:g}", fill=MARK, font=small)
    draw.text((LEFT, 12), title, fill=INK, font=_font(18))
    draw.text((WIDTH - RIGHT - 430, TOP + 8), f"{impostor_pairs:,} impostor pairs, {genuine_pairs:,} genuine pairs;",
              fill=INK, font=small)
    draw.text((WIDTH - RIGHT - 430, TOP + 26), "circles: similarity thresholds; zero rates drawn on the floor",
              fill=INK, font=small)
    _axis_labels(image, draw)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _grid(draw: ImageDraw.ImageDraw, axes: _Axes) -> None:
    font = _font(13)
    for decade in range(axes.x_lo, 1):
        x = axes.x(10.0 ** decade)
        draw.line([(x, TOP), (x, HEIGHT - BOTTOM)], fill=GRID, width=1)
        draw.text((x - 14, HEIGHT - BOTTOM + 6), f"1e{decade}" if decade else "1", fill=INK, font=font)
    for decade in range(axes.y_lo, 1):
        y = axes.y(10.0 ** decade)
        draw.line([(LEFT, y), (WIDTH - RIGHT, y)], fill=GRID, width=1)
        draw.text((LEFT - 44, y - 8), f"1e{decade}" if decade else "1", fill=INK, font=font)
    draw.rectangle((LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM), outline=INK, width=1)


def _axis_labels(image: Image.Image, draw: ImageDraw.ImageDraw) -> None:
    font = _font(15)
    draw.text((LEFT + (WIDTH - LEFT - RIGHT) // 2 - 110, HEIGHT - 32), "false-match rate (FMR, log)", fill=INK,
              font=font)
    label = Image.new("RGB", (300, 24), "white")
    ImageDraw.Draw(label).text((4, 2), "false-non-match rate (FNMR, log)", fill=INK, font=font)
    rotated = label.rotate(90, expand=True)
    image.paste(rotated, (8, TOP + (HEIGHT - TOP - BOTTOM - rotated.height) // 2))


def write_det(path: Path, calibration: dict[str, Any], title: str) -> Path:
    """Write the DET PNG of a calibration dict (its ``det``, ``thresholds`` and pair counts)."""
    path = Path(path)
    path.write_bytes(det_png(calibration["det"], calibration["thresholds"], title, calibration["impostor"],
                             calibration["genuine"]))
    return path
