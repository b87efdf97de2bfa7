"""The records a stream processor writes.

:func:`frame_record` is Rekognition's Kinesis face search frame record, exactly ("Understanding
the Kinesis face recognition JSON frame record"): one a frame analysed, with every face in view.
Faces not matched carry only their ``BoundingBox`` and ``Confidence`` (nothing else about people
who match no one leaves faceprint). The Kinesis Video-only fields are filled plainly:
``FragmentNumber`` is the source's fragment counter (a new fragment at each key frame) as a
string, ``ProducerTimestamp`` the frame's producer time (when faceprint received it, for a live camera)
and ``ServerTimestamp`` the time the record was made (the host passes it; epoch seconds),
``FrameOffsetInSeconds`` the frame's offset in its fragment.

:func:`alert_record` is faceprint's own record of a track's first match (for webhooks and
Server-Sent Events; never written to the Kinesis-format stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceprint.streams.live import Alert, FrameResult
    from faceprint.types import FaceDetail, FaceMatch

DETECTED_FACE_KEYS = ("BoundingBox", "Confidence", "Landmarks", "Pose", "Quality")
"""A matched face's ``DetectedFace`` members, as in Rekognition's record."""
UNMATCHED_FACE_KEYS = ("BoundingBox", "Confidence")
"""All a face that matches no one carries."""
MATCHED_FACE_KEYS = ("BoundingBox", "Confidence", "ExternalImageId", "FaceId", "ImageId")
"""A ``MatchedFaces`` entry's ``Face`` members (``ExternalImageId`` when the face has one)."""
QUALITY_KEYS = ("Brightness", "Sharpness")


def frame_record(result: FrameResult, stream_arn: str, status: str = "RUNNING",
                 server_time: float | None = None) -> dict[str, Any]:
    """Rekognition's Kinesis frame record of one analysed frame. ``server_time`` (epoch seconds)
    defaults to when the frame was captured here."""
    frame = result.frame
    served = frame.captured if server_time is None else server_time
    return {
        "InputInformation": {"KinesisVideo": {
            "StreamArn": stream_arn,
            "FragmentNumber": str(int(frame.fragment)),
            "ServerTimestamp": _seconds(served),
            "ProducerTimestamp": _seconds(frame.producer_ms / 1000.0),
            "FrameOffsetInSeconds": round(float(frame.offset_s), 3),
        }},
        "StreamProcessorInformation": {"Status": status},
        "FaceSearchResponse": [{"DetectedFace": detected_face(face.detail, full=bool(face.matches)),
                                "MatchedFaces": matched_faces(face.matches)} for face in result.faces],
    }


def alert_record(alert: Alert, processor: str, processor_arn: str, stream_arn: str) -> dict[str, Any]:
    """faceprint's alert: a track matched for the first time."""
    return {"Alert": {
        "StreamProcessorName": processor,
        "StreamProcessorArn": processor_arn,
        "StreamArn": stream_arn,
        "TrackId": int(alert.track_id),
        "ProducerTimestamp": _seconds(alert.frame.producer_ms / 1000.0),
        "ServerTimestamp": _seconds(alert.decided_at),
        "DetectedFace": detected_face(alert.detail, full=True),
        "MatchedFaces": matched_faces(alert.matches),
    }}


def has_match(record: dict[str, Any]) -> bool:
    """Whether a frame record has a matched face (an alert record always has)."""
    if "Alert" in record:
        return True
    return any(entry.get("MatchedFaces") for entry in record.get("FaceSearchResponse") or [])


def detected_face(detail: FaceDetail, full: bool) -> dict[str, Any]:
    """A ``DetectedFace``: everything Rekognition's record has when ``full``, else only the box
    and the confidence."""
    data = detail.to_dict()
    out = {key: data[key] for key in (DETECTED_FACE_KEYS if full else UNMATCHED_FACE_KEYS) if key in data}
    if "Quality" in out:
        out["Quality"] = {key: out["Quality"][key] for key in QUALITY_KEYS if key in out["Quality"]}
    return out


def matched_faces(matches: list[FaceMatch]) -> list[dict[str, Any]]:
    out = []
    for match in matches:
        face = match.face.to_dict()
        out.append({"Similarity": float(match.similarity),
                    "Face": {key: face[key] for key in MATCHED_FACE_KEYS if key in face}})
    return out


def _seconds(value: float) -> float:
    return round(float(value), 3)
