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
class AgeRange(RekognitionShape):
    """Apparent age in years: the band that holds the true age for a measured share of faces."""

    low: int
    high: int


@dataclass
class Gender(RekognitionShape):
    value: str
    """``Male`` or ``Female``: apparent gender from the face, not a person's identity."""
    confidence: float


@dataclass
class Emotion(RekognitionShape):
    type: str
    """HAPPY, SAD, ANGRY, CONFUSED, DISGUSTED, SURPRISED, CALM or FEAR (never UNKNOWN here)."""
    confidence: float


@dataclass
class BoolAttribute(RekognitionShape):
    """Smile, EyesOpen, MouthOpen, Eyeglasses, Sunglasses, Beard, Mustache, FaceOccluded: the
    value, and the confidence (50-100) that the value is right."""

    value: bool
    confidence: float


@dataclass
class EyeDirection(RekognitionShape):
    """Where the eyes look relative to the head, in degrees (yaw positive towards the picture's
    right, pitch positive up, as ``Pose``)."""

    yaw: float
    pitch: float
    confidence: float


@dataclass
class FaceDetail(RekognitionShape):
    bounding_box: BoundingBox
    confidence: float
    landmarks: list[Landmark] | None = None
    pose: Pose | None = None
    quality: ImageQuality | None = None
    age_range: AgeRange | None = None
    smile: BoolAttribute | None = None
    eyeglasses: BoolAttribute | None = None
    sunglasses: BoolAttribute | None = None
    gender: Gender | None = None
    beard: BoolAttribute | None = None
    mustache: BoolAttribute | None = None
    eyes_open: BoolAttribute | None = None
    mouth_open: BoolAttribute | None = None
    emotions: list[Emotion] | None = None
    face_occluded: BoolAttribute | None = None
    eye_direction: EyeDirection | None = None


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
    audit_id: int | None = field(default=None, metadata={"internal": True})
    """The audit entry of this call (faceprint.audit; None when the record is off)."""
    probe: Any = field(default=None, metadata={"internal": True})
    """The probe's quality (faceprint.probes.ProbeQuality) where the call searched by image."""


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


@dataclass
class Face(RekognitionShape):
    face_id: str
    bounding_box: BoundingBox
    image_id: str
    confidence: float
    external_image_id: str | None = None
    index_faces_model_version: str | None = None
    user_id: str | None = None


@dataclass
class FaceRecord(RekognitionShape):
    face: Face
    face_detail: FaceDetail


@dataclass
class UnindexedFace(RekognitionShape):
    reasons: list[str]
    face_detail: FaceDetail


@dataclass
class IndexFacesResult(RekognitionShape):
    face_records: list[FaceRecord] = field(default_factory=list)
    unindexed_faces: list[UnindexedFace] = field(default_factory=list)
    face_model_version: str | None = None
    orientation_correction: str | None = None
    audit_id: int | None = field(default=None, metadata={"internal": True})
    """The audit entry of this call (faceprint.audit; None when the record is off)."""


@dataclass
class FaceMatch(RekognitionShape):
    similarity: float
    face: Face


@dataclass
class SearchFacesResult(RekognitionShape):
    searched_face_id: str
    face_matches: list[FaceMatch] = field(default_factory=list)
    face_model_version: str | None = None
    audit_id: int | None = field(default=None, metadata={"internal": True})
    """The audit entry of this call (faceprint.audit; None when the record is off)."""
    compared: int | None = field(default=None, metadata={"internal": True})
    """How many faces the search compared with (the collection's index at the search)."""


@dataclass
class SearchFacesByImageResult(RekognitionShape):
    searched_face_bounding_box: BoundingBox
    searched_face_confidence: float
    face_matches: list[FaceMatch] = field(default_factory=list)
    face_model_version: str | None = None
    audit_id: int | None = field(default=None, metadata={"internal": True})
    """The audit entry of this call (faceprint.audit; None when the record is off)."""
    compared: int | None = field(default=None, metadata={"internal": True})
    """How many faces the search compared with (the collection's index at the search)."""
    probe: Any = field(default=None, metadata={"internal": True})
    """The probe's quality (faceprint.probes.ProbeQuality) where the call searched by image."""


@dataclass
class CreateCollectionResult(RekognitionShape):
    status_code: int
    collection_arn: str
    face_model_version: str


@dataclass
class DescribeCollectionResult(RekognitionShape):
    face_count: int
    face_model_version: str
    collection_arn: str = field(metadata={"json": "CollectionARN"})
    creation_timestamp: float
    user_count: int = 0


@dataclass
class ListCollectionsResult(RekognitionShape):
    collection_ids: list[str] = field(default_factory=list)
    face_model_versions: list[str] = field(default_factory=list)
    next_token: str | None = None


@dataclass
class DeleteCollectionResult(RekognitionShape):
    status_code: int = 200


@dataclass
class ListFacesResult(RekognitionShape):
    faces: list[Face] = field(default_factory=list)
    face_model_version: str | None = None
    next_token: str | None = None


@dataclass
class UnsuccessfulFaceDeletion(RekognitionShape):
    face_id: str
    reasons: list[str]
    user_id: str | None = None


@dataclass
class DeleteFacesResult(RekognitionShape):
    deleted_faces: list[str] = field(default_factory=list)
    unsuccessful_face_deletions: list[UnsuccessfulFaceDeletion] = field(default_factory=list)


@dataclass
class EmptyResult(RekognitionShape):
    """CreateUser and DeleteUser answer an empty object."""


@dataclass
class User(RekognitionShape):
    user_id: str
    user_status: str


@dataclass
class ListUsersResult(RekognitionShape):
    users: list[User] = field(default_factory=list)
    next_token: str | None = None


@dataclass
class AssociatedFace(RekognitionShape):
    face_id: str


@dataclass
class UnsuccessfulFaceAssociation(RekognitionShape):
    face_id: str
    reasons: list[str]
    user_id: str | None = None
    confidence: float | None = None


@dataclass
class AssociateFacesResult(RekognitionShape):
    associated_faces: list[AssociatedFace] = field(default_factory=list)
    unsuccessful_face_associations: list[UnsuccessfulFaceAssociation] = field(default_factory=list)
    user_status: str = "ACTIVE"


@dataclass
class UnsuccessfulFaceDisassociation(RekognitionShape):
    face_id: str
    reasons: list[str]
    user_id: str | None = None


@dataclass
class DisassociateFacesResult(RekognitionShape):
    disassociated_faces: list[AssociatedFace] = field(default_factory=list)
    unsuccessful_face_disassociations: list[UnsuccessfulFaceDisassociation] = field(default_factory=list)
    user_status: str = "ACTIVE"


@dataclass
class UserMatch(RekognitionShape):
    similarity: float
    user: User


@dataclass
class SearchedFaceId(RekognitionShape):
    face_id: str


@dataclass
class SearchedUserId(RekognitionShape):
    user_id: str


@dataclass
class SearchUsersResult(RekognitionShape):
    user_matches: list[UserMatch] = field(default_factory=list)
    face_model_version: str | None = None
    searched_face: SearchedFaceId | None = None
    searched_user: SearchedUserId | None = None
    audit_id: int | None = field(default=None, metadata={"internal": True})
    """The audit entry of this call (faceprint.audit; None when the record is off)."""


@dataclass
class SearchedFaceDetails(RekognitionShape):
    face_detail: FaceDetail


@dataclass
class UnsearchedFace(RekognitionShape):
    face_details: FaceDetail
    reasons: list[str]


@dataclass
class SearchUsersByImageResult(RekognitionShape):
    user_matches: list[UserMatch] = field(default_factory=list)
    face_model_version: str | None = None
    searched_face: SearchedFaceDetails | None = None
    unsearched_faces: list[UnsearchedFace] = field(default_factory=list)
    audit_id: int | None = field(default=None, metadata={"internal": True})
    """The audit entry of this call (faceprint.audit; None when the record is off)."""
    probe: Any = field(default=None, metadata={"internal": True})
    """The probe's quality (faceprint.probes.ProbeQuality) where the call searched by image."""
