"""Stream processors' statuses, their stored row, and the operations' answers (Rekognition's shapes;
``to_dict()`` gives Rekognition's JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faceprint.types import RekognitionShape

STOPPED, STARTING, RUNNING, FAILED, STOPPING, UPDATING = (
    "STOPPED", "STARTING", "RUNNING", "FAILED", "STOPPING", "UPDATING")
STATUSES = (STOPPED, STARTING, RUNNING, FAILED, STOPPING, UPDATING)
DESIRED = (RUNNING, STOPPED)
DEFAULT_THRESHOLD = 80.0
"""FaceSearch's FaceMatchThreshold when the request gives none (Rekognition's default)."""


@dataclass
class ProcessorRow:
    """One stream processor as the store keeps it. ``request`` holds the Rekognition-named members
    as created and updated (Input, Output, Settings, RoleArn, and any of NotificationChannel,
    KmsKeyId, RegionsOfInterest, DataSharingPreference): ARNs and settings, never a URL.
    ``desired`` is what the API asked (RUNNING or STOPPED) and ``generation`` grows at each
    start, stop and update, so the host can tell a new request from one it has applied. ``health``
    is what the host last wrote: {"connected", "reconnects", "frames_read", "frames_analysed",
    "frames_dropped", "last_frame"}."""

    name: str
    arn: str
    status: str
    status_message: str | None
    created: float
    updated: float
    request: dict[str, Any]
    desired: str = STOPPED
    generation: int = 0
    session_id: str | None = None
    start_selector: dict[str, Any] | None = None
    stop_selector: dict[str, Any] | None = None
    started_at: float | None = None
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def face_search(self) -> dict[str, Any]:
        return self.request.get("Settings", {}).get("FaceSearch", {})

    @property
    def collection_id(self) -> str:
        return str(self.face_search.get("CollectionId", ""))

    @property
    def threshold(self) -> float:
        return float(self.face_search.get("FaceMatchThreshold", DEFAULT_THRESHOLD))

    @property
    def video_stream_arn(self) -> str:
        return str(self.request.get("Input", {}).get("KinesisVideoStream", {}).get("Arn", ""))

    @property
    def data_stream_arn(self) -> str | None:
        arn = self.request.get("Output", {}).get("KinesisDataStream", {}).get("Arn")
        return str(arn) if arn is not None else None

    @property
    def video_stream(self) -> str:
        """The Kinesis video stream name of the input: the camera's name in the stream config."""
        from faceprint.streams.config import kvs_stream_name

        return kvs_stream_name(self.video_stream_arn)

    @property
    def data_stream(self) -> str | None:
        """The Kinesis data stream name of the output: the sinks' name in the stream config."""
        from faceprint.streams.config import kinesis_stream_name

        arn = self.data_stream_arn
        return kinesis_stream_name(arn) if arn is not None else None

    @property
    def regions(self) -> list[dict[str, Any]]:
        return list(self.request.get("RegionsOfInterest") or [])


@dataclass
class CreateStreamProcessorResult(RekognitionShape):
    stream_processor_arn: str


@dataclass
class DescribeStreamProcessorResult(RekognitionShape):
    name: str
    stream_processor_arn: str
    status: str
    status_message: str | None = None
    creation_timestamp: float | None = None
    last_update_timestamp: float | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    role_arn: str | None = None
    settings: dict[str, Any] | None = None
    notification_channel: dict[str, Any] | None = None
    kms_key_id: str | None = None
    regions_of_interest: list[dict[str, Any]] | None = None
    data_sharing_preference: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: ProcessorRow) -> DescribeStreamProcessorResult:
        r = row.request
        return cls(name=row.name, stream_processor_arn=row.arn, status=row.status,
                   status_message=row.status_message, creation_timestamp=row.created,
                   last_update_timestamp=row.updated, input=r.get("Input"), output=r.get("Output"),
                   role_arn=r.get("RoleArn"), settings=r.get("Settings"),
                   notification_channel=r.get("NotificationChannel"), kms_key_id=r.get("KmsKeyId"),
                   regions_of_interest=r.get("RegionsOfInterest"),
                   data_sharing_preference=r.get("DataSharingPreference"))


@dataclass
class ListStreamProcessorsResult(RekognitionShape):
    stream_processors: list[dict[str, str]] = field(default_factory=list)
    next_token: str | None = None


@dataclass
class StartStreamProcessorResult(RekognitionShape):
    session_id: str
