"""Rekognition Video's shapes, in snake_case, each ``to_dict()`` giving Rekognition's JSON.

Result items (``PersonMatch``, ``FaceDetection``, ``TextDetectionResult``, ``SegmentDetection``)
are what the analysers emit; the ``Get*Result`` shapes are what the Get operations answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faceprint.types import FaceDetail, FaceMatch, RekognitionShape, TextDetection

JOB_STATUSES = ("IN_PROGRESS", "SUCCEEDED", "FAILED")


@dataclass
class S3Object(RekognitionShape):
    bucket: str
    name: str
    version: str | None = None


@dataclass
class Video(RekognitionShape):
    s3_object: S3Object | None = field(default=None, metadata={"json": "S3Object"})


@dataclass
class VideoMetadata(RekognitionShape):
    codec: str
    duration_millis: int
    format: str
    frame_rate: float
    frame_height: int
    frame_width: int
    color_range: str | None = None
    """"FULL" or "LIMITED" (None when the file does not say)."""


@dataclass
class AudioMetadata(RekognitionShape):
    codec: str
    duration_millis: int
    sample_rate: int
    number_of_channels: int


@dataclass
class PersonDetail(RekognitionShape):
    index: int
    bounding_box: Any = None
    face: FaceDetail | None = None


@dataclass
class PersonMatch(RekognitionShape):
    timestamp: int
    person: PersonDetail
    face_matches: list[FaceMatch] | None = None


@dataclass
class FaceDetection(RekognitionShape):
    timestamp: int
    face: FaceDetail


@dataclass
class TextDetectionResult(RekognitionShape):
    timestamp: int
    text_detection: TextDetection


@dataclass
class TechnicalCueSegment(RekognitionShape):
    type: str
    confidence: float


@dataclass
class ShotSegment(RekognitionShape):
    index: int
    confidence: float


@dataclass
class SegmentDetection(RekognitionShape):
    type: str
    """"SHOT" or "TECHNICAL_CUE"."""
    start_timestamp_millis: int
    end_timestamp_millis: int
    duration_millis: int
    start_timecode_smpte: str = field(metadata={"json": "StartTimecodeSMPTE"})
    end_timecode_smpte: str = field(metadata={"json": "EndTimecodeSMPTE"})
    duration_smpte: str = field(metadata={"json": "DurationSMPTE"})
    start_frame_number: int
    end_frame_number: int
    duration_frames: int
    technical_cue_segment: TechnicalCueSegment | None = None
    shot_segment: ShotSegment | None = None


@dataclass
class SegmentTypeInfo(RekognitionShape):
    type: str
    model_version: str


@dataclass
class StartJobResult(RekognitionShape):
    job_id: str


@dataclass
class _GetResult(RekognitionShape):
    job_status: str
    job_id: str | None = None
    status_message: str | None = None
    next_token: str | None = None
    video: Video | None = None
    job_tag: str | None = None


@dataclass
class GetFaceSearchResult(_GetResult):
    video_metadata: VideoMetadata | None = None
    persons: list[dict[str, Any]] | None = None
    """PersonMatch items as Rekognition's JSON (stored so; see ``faceprint.video.jobs``)."""


@dataclass
class GetFaceDetectionResult(_GetResult):
    video_metadata: VideoMetadata | None = None
    faces: list[dict[str, Any]] | None = None


@dataclass
class GetTextDetectionResult(_GetResult):
    video_metadata: VideoMetadata | None = None
    text_detections: list[dict[str, Any]] | None = None
    text_model_version: str | None = None


@dataclass
class GetSegmentDetectionResult(_GetResult):
    video_metadata: list[VideoMetadata] | None = None
    audio_metadata: list[AudioMetadata] | None = None
    segments: list[dict[str, Any]] | None = None
    selected_segment_types: list[SegmentTypeInfo] | None = None
