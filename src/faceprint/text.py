"""DetectText: lines and words in Rekognition's shape, with its filters.

Filters come in Rekognition's JSON form (``{"WordFilter": {...}, "RegionsOfInterest": [...]}``),
as boto3 callers already write them. ``WordFilter`` drops words below ``MinConfidence`` (0-100,
default 80 as Rekognition documents, also when no filter is given)
or smaller than ``MinBoundingBoxHeight`` / ``MinBoundingBoxWidth`` (ratios of the image); a
word is in a region of interest if more than half of it lies inside one region. As Rekognition
documents, there are at most 10 regions and a polygon has at most 10 points (the service model
states no point limit): larger filters are refused before any geometry is built, so the work of
a filter is at most words x 10 regions x 10 points. A line is kept
while at least one of its words is, and is cut down to those words. At most ``max_words`` words
are returned (Rekognition's 100 by default): the largest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceprint.errors import InvalidParameterException
from faceprint.models.text import TextLine, TextWord
from faceprint.types import BoundingBox, Geometry, Point, TextDetection

MAX_REGIONS = 10
MAX_POLYGON_POINTS = 10
"""Rekognition: a region's Polygon is "a shape made up of up to 10 Point objects"."""


DEFAULT_MIN_CONFIDENCE = 80.0
"""Rekognition: "The default MinConfidence is 80." Pass 0 to see every word."""


@dataclass(frozen=True)
class TextFilters:
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    min_height: float = 0.0
    min_width: float = 0.0
    regions: tuple[Any, ...] = ()
    """shapely polygons, in ratios of the image."""

    def keeps(self, word: TextWord, width: int, height: int) -> bool:
        xs, ys = word.quad[:, 0] / width, word.quad[:, 1] / height
        if word.confidence * 100.0 < self.min_confidence:
            return False
        if ys.max() - ys.min() < self.min_height or xs.max() - xs.min() < self.min_width:
            return False
        if not self.regions:
            return True
        from shapely.geometry import Polygon

        shape = Polygon(np.stack([xs, ys], axis=1)).buffer(0)
        if shape.area <= 0:
            return False
        return any(shape.intersection(region).area > 0.5 * shape.area for region in self.regions)


def parse_filters(filters: dict[str, Any] | TextFilters | None) -> TextFilters:
    """Validate Rekognition's ``DetectTextFilters`` and turn it into :class:`TextFilters` (which
    is returned as it is)."""
    if isinstance(filters, TextFilters):
        return filters
    if filters is None:
        return TextFilters()
    if not isinstance(filters, dict):
        raise InvalidParameterException("Filters must be an object with WordFilter and/or RegionsOfInterest.")
    _only(filters, ("WordFilter", "RegionsOfInterest"), "Filters")
    word = filters.get("WordFilter") or {}
    if not isinstance(word, dict):
        raise InvalidParameterException("Filters.WordFilter must be an object.")
    _only(word, ("MinConfidence", "MinBoundingBoxHeight", "MinBoundingBoxWidth"), "WordFilter")
    regions = filters.get("RegionsOfInterest") or []
    if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
        raise InvalidParameterException(f"RegionsOfInterest must be a list of at most {MAX_REGIONS} regions.")
    return TextFilters(
        min_confidence=_number(word, "MinConfidence", 100.0, DEFAULT_MIN_CONFIDENCE),
        min_height=_number(word, "MinBoundingBoxHeight", 1.0),
        min_width=_number(word, "MinBoundingBoxWidth", 1.0),
        regions=tuple(_region(r, i) for i, r in enumerate(regions)),
    )


def _only(obj: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in set(obj) - set(allowed))  # keys of any type (the Python API's)
    if unknown:
        raise InvalidParameterException(f"{where} has unknown member(s) {unknown}; allowed: {', '.join(allowed)}.")


def _number(obj: dict[str, Any], key: str, top: float, default: float = 0.0) -> float:
    value = _finite(obj.get(key, default))
    if value is None or not 0.0 <= value <= top:
        raise InvalidParameterException(f"{key} must be a number from 0 to {top:g}.")
    return value


def _region(region: Any, index: int) -> Any:
    from shapely.geometry import Polygon, box

    where = f"RegionsOfInterest[{index}]"
    if not isinstance(region, dict):
        raise InvalidParameterException(f"{where} must be an object with BoundingBox or Polygon.")
    _only(region, ("BoundingBox", "Polygon"), where)
    if region.get("Polygon"):
        points = region["Polygon"]
        if not isinstance(points, list) or not 3 <= len(points) <= MAX_POLYGON_POINTS:
            count = f"{len(points)} points" if isinstance(points, list) else "no list of points"
            raise InvalidParameterException(f"{where}.Polygon has {count}; a polygon has 3 to "
                                            f"{MAX_POLYGON_POINTS} points.")
        coords = [(_coord(p, "X", where), _coord(p, "Y", where)) for p in points]
        shape = Polygon(coords).buffer(0)
    elif region.get("BoundingBox"):
        bb = region["BoundingBox"]
        if not isinstance(bb, dict):
            raise InvalidParameterException(f"{where}.BoundingBox must be an object.")
        _only(bb, ("Width", "Height", "Left", "Top"), f"{where}.BoundingBox")
        left, top = _coord(bb, "Left", where), _coord(bb, "Top", where)
        width, height = _coord(bb, "Width", where), _coord(bb, "Height", where)
        shape = box(left, top, left + width, top + height)
    else:
        raise InvalidParameterException(f"{where} needs a BoundingBox or a Polygon.")
    if shape.area <= 0:
        raise InvalidParameterException(f"{where} has no area.")
    return shape


def _coord(obj: Any, key: str, where: str) -> float:
    value = _finite(obj.get(key) if isinstance(obj, dict) else None)
    if value is None:
        raise InvalidParameterException(f"{where}: {key} must be a finite number.")
    return value


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, NaN, infinite, an integer too large)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def assemble(lines: list[TextLine], width: int, height: int, filters: TextFilters,
             max_words: int) -> list[TextDetection]:
    """Rekognition's list: LINE entries (Id 0..) in reading order, then their WORD entries."""
    kept = [(line, [w for w in line.words if filters.keeps(w, width, height)]) for line in lines]
    kept = _cap(kept, max_words)
    kept.sort(key=lambda lw: (float(lw[0].quad[:, 1].min()), float(lw[0].quad[:, 0].min())))
    detections: list[TextDetection] = []
    for line_id, (line, words) in enumerate(kept):
        text = line.text if len(words) == len(line.words) else " ".join(w.text for w in words)
        detections.append(TextDetection(detected_text=text, type="LINE", id=line_id,
                                        confidence=_percent(line.confidence),
                                        geometry=_geometry(line.quad, width, height)))
    next_id = len(kept)
    for line_id, (_, words) in enumerate(kept):
        for word in words:
            detections.append(TextDetection(detected_text=word.text, type="WORD", id=next_id,
                                            parent_id=line_id, confidence=_percent(word.confidence),
                                            geometry=_geometry(word.quad, width, height)))
            next_id += 1
    return detections


def _cap(kept: list[tuple[TextLine, list[TextWord]]], max_words: int) -> list[tuple[TextLine, list[TextWord]]]:
    """Keep the ``max_words`` largest words; drop lines left with none."""
    words = [w for _, ws in kept for w in ws]
    if len(words) > max_words:
        areas = {id(w): _area(w.quad) for w in words}
        chosen = {id(w) for w in sorted(words, key=lambda w: -areas[id(w)])[:max_words]}
        kept = [(line, [w for w in ws if id(w) in chosen]) for line, ws in kept]
    return [(line, ws) for line, ws in kept if ws]


def _area(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _percent(score: float) -> float:
    return round(min(max(score, 0.0), 1.0) * 100.0, 4)


def _geometry(quad: np.ndarray, width: int, height: int) -> Geometry:
    xs = np.clip(quad[:, 0], 0, width) / width
    ys = np.clip(quad[:, 1], 0, height) / height
    return Geometry(
        bounding_box=BoundingBox(width=float(xs.max() - xs.min()), height=float(ys.max() - ys.min()),
                                 left=float(xs.min()), top=float(ys.min())),
        polygon=[Point(x=float(x), y=float(y)) for x, y in zip(xs, ys, strict=True)],
    )
