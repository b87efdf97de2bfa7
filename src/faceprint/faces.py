"""Turn detections into Rekognition's face shapes, and apply quality filters."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from faceprint.analysis import estimate_pose, estimate_quality
from faceprint.attributes import Described
from faceprint.errors import InvalidParameterException
from faceprint.imaging import DecodedImage
from faceprint.models.detector import Detections, face_confidence
from faceprint.types import (
    BoundingBox,
    ComparedFace,
    FaceDetail,
    ImageQuality,
    Landmark,
    Pose,
)

LANDMARK_TYPES = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")
QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")
ATTRIBUTES = ("DEFAULT", "ALL", "AGE_RANGE", "BEARD", "EMOTIONS", "EYE_DIRECTION", "EYEGLASSES",
              "EYES_OPEN", "GENDER", "MOUTH_OPEN", "MUSTACHE", "FACE_OCCLUDED", "SMILE", "SUNGLASSES")


@dataclass
class MeasuredFace:
    """One detected face with everything measured about it (pixels and ratios)."""

    index: int
    box_px: np.ndarray
    landmarks_px: np.ndarray
    confidence: float
    bounding_box: BoundingBox
    landmarks: list[Landmark]
    pose: Pose
    quality: ImageQuality
    reduced_by: int = 1
    """The picture was decoded at 1/``reduced_by`` of its size: ``box_px`` times this is in its own pixels."""

    def detail(self, described: Described | None = None) -> FaceDetail:
        """Rekognition's FaceDetail: the DEFAULT fields, and the attributes of ``described``
        (its 30 landmarks, when there, replace the five)."""
        detail = FaceDetail(bounding_box=self.bounding_box, confidence=self.confidence,
                            landmarks=self.landmarks, pose=self.pose, quality=self.quality)
        return dataclasses.replace(detail, **described.values) if described is not None else detail

    def compared(self) -> ComparedFace:
        return ComparedFace(bounding_box=self.bounding_box, confidence=self.confidence,
                            landmarks=self.landmarks, pose=self.pose, quality=self.quality)


@dataclass
class Analysis:
    """The faces of one image: those that passed the quality filter (largest first) with one
    profile vector each, and those that did not, with Rekognition's reason."""

    image: DecodedImage | None
    """None once the analysis has left the process that decoded the image."""
    faces: list[MeasuredFace]
    rejected: list[tuple[MeasuredFace, str]]
    vectors: np.ndarray


def measure(image: DecodedImage, faces: Detections,
            confidence: Callable[[float], float] = face_confidence) -> list[MeasuredFace]:
    """Each face's Rekognition measures; ``confidence`` maps the detector's raw score to Confidence
    (YuNet's measured table by default; ``FaceEngine.face_confidence`` for the profile's detector)."""
    w, h = float(image.width), float(image.height)
    out = []
    for i in range(len(faces)):
        x, y, bw, bh = (float(v) for v in faces.boxes[i])
        pts = faces.landmarks[i]
        out.append(MeasuredFace(
            index=i,
            box_px=faces.boxes[i],
            landmarks_px=pts,
            confidence=confidence(float(faces.scores[i])),  # calibrated: the chance the box is a face
            bounding_box=BoundingBox(width=bw / w, height=bh / h, left=x / w, top=y / h),
            landmarks=[Landmark(type=t, x=float(px) / w, y=float(py) / h)
                       for t, (px, py) in zip(LANDMARK_TYPES, pts, strict=True)],
            pose=estimate_pose(pts),
            quality=estimate_quality(image.bgr, faces.boxes[i]),
            reduced_by=image.reduced_by,
        ))
    return out


# Per level: minimum box side (px), detector confidence, brightness, sharpness; max |yaw|, |pitch|.
# The confidence bars are YuNet's raw scores 0.6, 0.75 and 0.9 on the calibrated scale (15.22, 62.59, 99.69).
_BARS = {
    "LOW": (20, face_confidence(0.6), 5.0, 3.0, 75.0, 60.0),
    "MEDIUM": (32, face_confidence(0.75), 12.0, 8.0, 60.0, 45.0),
    "HIGH": (48, face_confidence(0.9), 20.0, 15.0, 45.0, 30.0),
}
_BARS["AUTO"] = _BARS["LOW"]


def validate_quality_filter(value: str) -> str:
    if value not in QUALITY_FILTERS:
        raise InvalidParameterException(
            f"QualityFilter must be one of {', '.join(QUALITY_FILTERS)}, not {value!r}."
        )
    return value


def validate_attributes(values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise InvalidParameterException("Attributes must be a list of attribute names.")
    bad = list(dict.fromkeys(repr(v)[:40] for v in values if not isinstance(v, str) or v not in ATTRIBUTES))
    if bad:  # a few, shortened: the message stays small whatever the list holds
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InvalidParameterException(
            f"Unknown attribute(s) {shown}; valid values are {', '.join(ATTRIBUTES)} (upper case)."
        )
    return tuple(values)


def quality_reason(face: MeasuredFace, level: str) -> str | None:
    """Why ``face`` fails the ``level`` bar (Rekognition's reason names), or None."""
    if level == "NONE":
        return None
    min_side, min_conf, min_bright, min_sharp, max_yaw, max_pitch = _BARS[level]
    if min(face.box_px[2], face.box_px[3]) * face.reduced_by < min_side:  # in the picture's own pixels
        return "SMALL_BOUNDING_BOX"
    if face.confidence < min_conf:
        return "LOW_CONFIDENCE"
    if abs(face.pose.yaw) > max_yaw or abs(face.pose.pitch) > max_pitch:
        return "EXTREME_POSE"
    if face.quality.brightness < min_bright:
        return "LOW_BRIGHTNESS"
    if face.quality.sharpness < min_sharp:
        return "LOW_SHARPNESS"
    return None


def validate_percent(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int too large for a float
        raise InvalidParameterException(f"{name} must be a number from 0 to 100.") from None
    if math.isnan(number) or not 0.0 <= number <= 100.0:
        raise InvalidParameterException(f"{name} must be from 0 to 100, got {number!r}.")
    return number
