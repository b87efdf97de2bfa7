"""Result types mirroring Amazon Rekognition's shapes, in snake_case.

Every type's ``to_dict()`` returns exactly Rekognition's JSON: PascalCase
keys, the same nesting, absent members left out (never ``null``). This is the
one serializer the CLI and the server use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _plain(value: Any) -> Any:
    if isinstance(value, RekognitionShape):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return float(value)
    return value


class RekognitionShape:
    """Mixin: ``to_dict()`` in Rekognition's JSON form."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.metadata.get("internal"):
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.metadata.get("json", _pascal(f.name))] = _plain(value)
        return out


@dataclass
class BoundingBox(RekognitionShape):
    """A box as ratios of the image's width and height."""

    width: float
    height: float
    left: float
    top: float


@dataclass
class Landmark(RekognitionShape):
    type: str
    x: float
    y: float


@dataclass
class Pose(RekognitionShape):
    roll: float
    yaw: float
    pitch: float


@dataclass
class ImageQuality(RekognitionShape):
    brightness: float
    sharpness: float


@dataclass
class FaceDetail(RekognitionShape):
    bounding_box: BoundingBox
    confidence: float
    landmarks: list[Landmark] | None = None
    pose: Pose | None = None
    quality: ImageQuality | None = None


@dataclass
class DetectFacesResult(RekognitionShape):
    face_details: list[FaceDetail] = field(default_factory=list)
    orientation_correction: str | None = None


@dataclass
class ComparedFace(RekognitionShape):
    bounding_box: BoundingBox
    confidence: float
    landmarks: list[Landmark] | None = None
    pose: Pose | None = None
    quality: ImageQuality | None = None


@dataclass
class ComparedSourceImageFace(RekognitionShape):
    bounding_box: BoundingBox
    confidence: float


@dataclass
class CompareFacesMatch(RekognitionShape):
    similarity: float
    face: ComparedFace


@dataclass
class CompareFacesResult(RekognitionShape):
    source_image_face: ComparedSourceImageFace | None = None
    face_matches: list[CompareFacesMatch] = field(default_factory=list)
    unmatched_faces: list[ComparedFace] = field(default_factory=list)
    source_image_orientation_correction: str | None = None
    target_image_orientation_correction: str | None = None


@dataclass
class Point(RekognitionShape):
    x: float
    y: float


@dataclass
class Geometry(RekognitionShape):
    bounding_box: BoundingBox
    polygon: list[Point]


@dataclass
class TextDetection(RekognitionShape):
    detected_text: str
    type: str
    """"LINE" or "WORD"."""
    id: int
    confidence: float
    geometry: Geometry
    parent_id: int | None = None


@dataclass
class DetectTextResult(RekognitionShape):
    text_detections: list[TextDetection] = field(default_factory=list)
    text_model_version: str | None = None
