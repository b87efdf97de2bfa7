"""The served operations: ``SERVED`` maps a Rekognition operation name to a function that
calls the :class:`~faceprint.service.Faceprint` Python API with the validated request and
returns the result's ``to_dict()``.

Images arrive as ``Image.Bytes`` (decoded from base64 by the validator) or ``Image.S3Object``
(read through :class:`faceprint.server.s3.Buckets`); a string is never taken for a path.
Videos arrive as ``Video.S3Object`` only, passed on as ``{"S3Object": ...}``: the video jobs
(:mod:`faceprint.video.service`) measure and copy the object through the same Buckets.
Stream processors (:mod:`faceprint.streams.service`) are only read and written in the processor
store here; the home's stream host runs them.

The operations that identify or enrol (:data:`AUDITED`) are called with the request's
``caller`` (who, why, which case) so that their audit entry names it; their answer carries the
entry's sequence number in ``X-Faceprint-Audit-Id`` and, for a search by image, the probe's
quality in ``X-Faceprint-Probe-*`` headers (Rekognition's JSON has no place for either).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faceprint.errors import InvalidParameterException
from faceprint.imaging import DecodedImage, ImageLimits, load_image
from faceprint.text import parse_filters

if TYPE_CHECKING:
    from faceprint.audit.caller import Caller
    from faceprint.server.s3 import Buckets
    from faceprint.service import Faceprint

AUDIT_ID_HEADER = "X-Faceprint-Audit-Id"
S3_MAX_BYTES = 15 * 1024 * 1024
"""Rekognition reads images of up to 15 MB from S3 (5 MB as bytes)."""


@dataclass
class Call:
    """One validated request: the Faceprint to call, the parameters, and where images come from."""

    fp: Faceprint
    params: dict[str, Any]
    buckets: Buckets | None = None
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The request body as sent (for faceprint's extensions, which the model's validation drops)."""
    caller: Caller | None = None
    """Who makes the request (the signing key, the case and purpose headers), for the audit record."""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    """faceprint's reply headers, set by :meth:`answer`."""

    def audited(self) -> dict[str, Any]:
        """The keyword arguments that name the caller to an audited Faceprint method."""
        return {"caller": self.caller}

    def answer(self, result: Any) -> dict[str, Any]:
        """``result.to_dict()``, its audit entry's id and probe quality set aside as reply headers."""
        audit_id = getattr(result, "audit_id", None)
        if audit_id is not None:
            self.headers[AUDIT_ID_HEADER] = str(audit_id)
        probe = getattr(result, "probe", None)
        if probe is not None:
            self.headers.update(probe.headers())
        return result.to_dict()

    def get(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name)
        return default if value is None else value

    def image(self, name: str = "Image") -> DecodedImage:
        """Decode the image member ``name``: bytes up to the Faceprint's limit (5 MB), S3
        objects up to 15 MB."""
        image = self.params.get(name) or {}
        if ("Bytes" in image) == ("S3Object" in image):
            raise InvalidParameterException(f"{name} must have exactly one of Bytes and S3Object.")
        if "Bytes" in image:
            return load_image(image["Bytes"], self.fp.limits)
        return load_image(self._s3(image["S3Object"]), self.s3_limits())

    def video(self) -> dict[str, Any]:
        """The Start operations' ``Video``: ``{"S3Object": ...}`` (Rekognition reads videos from S3 only)."""
        from faceprint.errors import InvalidS3ObjectException

        s3_object = (self.params.get("Video") or {}).get("S3Object")
        if s3_object is None:
            raise InvalidParameterException("Video must have an S3Object (Bucket and Name).")
        if self.buckets is None:
            raise InvalidS3ObjectException("This server has no S3 buckets configured (faceprint serve --bucket).")
        return {"S3Object": s3_object}

    def job(self) -> dict[str, Any]:
        """The members common to every Start operation, as the Python API names them."""
        return {"client_request_token": self.params.get("ClientRequestToken"),
                "notification_channel": self.params.get("NotificationChannel"), "job_tag": self.params.get("JobTag")}

    def page(self) -> dict[str, Any]:
        """The members common to every Get operation, as the Python API names them."""
        return {"max_results": self.get("MaxResults", 1000), "next_token": self.params.get("NextToken")}

    def s3_limits(self) -> ImageLimits:
        return dataclasses.replace(self.fp.limits, max_bytes=max(self.fp.limits.max_bytes, S3_MAX_BYTES))

    def _s3(self, s3_object: dict[str, Any]) -> bytes:
        from faceprint.errors import InvalidS3ObjectException

        if self.buckets is None:
            raise InvalidS3ObjectException("This server has no S3 buckets configured (faceprint serve --bucket).")
        return self.buckets.read(s3_object)


Handler = Callable[[Call], dict[str, Any]]


def _detect_faces(c: Call) -> dict[str, Any]:
    return c.fp.detect_faces(c.image(), c.get("Attributes", ["DEFAULT"])).to_dict()


def _compare_faces(c: Call) -> dict[str, Any]:
    return c.answer(c.fp.compare_faces(c.image("SourceImage"), c.image("TargetImage"),
                                       c.get("SimilarityThreshold", 80.0), c.get("QualityFilter", "NONE"),
                                       **c.audited()))


def _detect_text(c: Call) -> dict[str, Any]:
    filters = parse_filters(c.get("Filters"))  # refused (a polygon of 11 points, ...) before the image is read
    return c.fp.detect_text(c.image(), filters).to_dict()


def _create_collection(c: Call) -> dict[str, Any]:
    if c.params.get("Tags"):
        raise InvalidParameterException("faceprint does not store collection Tags; create the collection "
                                        "without them.")
    return c.fp.create_collection(c.params["CollectionId"]).to_dict()


def _index_faces(c: Call) -> dict[str, Any]:
    return c.answer(c.fp.index_faces(c.params["CollectionId"], c.image(), c.get("ExternalImageId"),
                                     c.get("DetectionAttributes", []), c.get("MaxFaces"),
                                     c.get("QualityFilter", "AUTO"), **c.audited()))


def _list_faces(c: Call) -> dict[str, Any]:
    return c.fp.list_faces(c.params["CollectionId"], c.get("MaxResults", 1000), c.get("NextToken"),
                           c.get("FaceIds"), c.get("UserId")).to_dict()


def _search_faces(c: Call) -> dict[str, Any]:
    return c.answer(c.fp.search_faces(c.params["CollectionId"], c.params["FaceId"], c.get("MaxFaces", 80),
                                      c.get("FaceMatchThreshold", 80.0), **c.audited()))


def _search_faces_by_image(c: Call) -> dict[str, Any]:
    return c.answer(c.fp.search_faces_by_image(c.params["CollectionId"], c.image(), c.get("MaxFaces", 80),
                                               c.get("FaceMatchThreshold", 80.0), c.get("QualityFilter", "NONE"),
                                               **c.audited()))


def _associate_faces(c: Call) -> dict[str, Any]:
    return c.fp.associate_faces(c.params["CollectionId"], c.params["UserId"], c.params["FaceIds"],
                                c.get("UserMatchThreshold", 75.0), c.get("ClientRequestToken")).to_dict()


def _disassociate_faces(c: Call) -> dict[str, Any]:
    return c.fp.disassociate_faces(c.params["CollectionId"], c.params["UserId"], c.params["FaceIds"],
                                   c.get("ClientRequestToken")).to_dict()


def _search_users(c: Call) -> dict[str, Any]:
    return c.answer(c.fp.search_users(c.params["CollectionId"], c.get("UserId"), c.get("FaceId"),
                                      c.get("UserMatchThreshold", 80.0), c.get("MaxUsers", 100), **c.audited()))


def _search_users_by_image(c: Call) -> dict[str, Any]:
    return c.answer(c.fp.search_users_by_image(c.params["CollectionId"], c.image(),
                                               c.get("UserMatchThreshold", 80.0), c.get("MaxUsers", 100),
                                               c.get("QualityFilter", "NONE"), **c.audited()))


def _start_face_search(c: Call) -> dict[str, Any]:
    return c.answer(c.fp.start_face_search(c.video(), c.params["CollectionId"], c.params.get("FaceMatchThreshold"),
                                           **c.job(), **c.audited()))


def _start_face_detection(c: Call) -> dict[str, Any]:
    return c.fp.start_face_detection(c.video(), c.params.get("FaceAttributes"), **c.job()).to_dict()


def _start_text_detection(c: Call) -> dict[str, Any]:
    return c.fp.start_text_detection(c.video(), c.params.get("Filters"), **c.job()).to_dict()


def _start_segment_detection(c: Call) -> dict[str, Any]:
    return c.fp.start_segment_detection(c.video(), c.params["SegmentTypes"], c.params.get("Filters"),
                                        **c.job()).to_dict()


VIDEO_OPERATIONS: dict[str, Handler] = {
    "StartFaceSearch": _start_face_search,
    "GetFaceSearch": lambda c: c.fp.get_face_search(c.params["JobId"], sort_by=c.get("SortBy", "TIMESTAMP"),
                                                    **c.page()).to_dict(),
    "StartFaceDetection": _start_face_detection,
    "GetFaceDetection": lambda c: c.fp.get_face_detection(c.params["JobId"], **c.page()).to_dict(),
    "StartTextDetection": _start_text_detection,
    "GetTextDetection": lambda c: c.fp.get_text_detection(c.params["JobId"], **c.page()).to_dict(),
    "StartSegmentDetection": _start_segment_detection,
    "GetSegmentDetection": lambda c: c.fp.get_segment_detection(c.params["JobId"], **c.page()).to_dict(),
}
"""Stored video: the Start operations queue a job and answer its JobId at once; the Get operations
read the job store. None of them runs inference on the request's thread."""

def _create_stream_processor(c: Call) -> dict[str, Any]:
    p = c.params
    return c.fp.create_stream_processor(p["Input"], p["Output"], p["Name"], p["Settings"], p["RoleArn"],
                                        tags=p.get("Tags"), notification_channel=p.get("NotificationChannel"),
                                        kms_key_id=p.get("KmsKeyId"), regions_of_interest=p.get("RegionsOfInterest"),
                                        data_sharing_preference=p.get("DataSharingPreference")).to_dict()


def _update_stream_processor(c: Call) -> dict[str, Any]:
    return c.fp.update_stream_processor(c.params["Name"], settings_for_update=settings_for_update(c),
                                        regions_of_interest_for_update=c.params.get("RegionsOfInterestForUpdate"),
                                        data_sharing_preference_for_update=c.params.get(
                                            "DataSharingPreferenceForUpdate"),
                                        parameters_to_delete=c.params.get("ParametersToDelete")).to_dict()


def settings_for_update(c: Call) -> dict[str, Any] | None:
    """``SettingsForUpdate`` with faceprint's extension ``FaceSearchForUpdate`` (``{"FaceMatchThreshold":
    N}``), which Rekognition's model lacks and its validation therefore drops: taken from the raw body."""
    settings = c.params.get("SettingsForUpdate")
    raw = c.raw.get("SettingsForUpdate")
    if isinstance(raw, dict) and "FaceSearchForUpdate" in raw:
        extension = raw["FaceSearchForUpdate"]
        if not isinstance(extension, dict):
            raise InvalidParameterException("SettingsForUpdate.FaceSearchForUpdate must be an object such as "
                                            '{"FaceMatchThreshold": 85}.')
        settings = dict(settings or {}) | {"FaceSearchForUpdate": extension}
    return settings


STREAM_OPERATIONS: dict[str, Handler] = {
    "CreateStreamProcessor": _create_stream_processor,
    "DescribeStreamProcessor": lambda c: c.fp.describe_stream_processor(c.params["Name"]).to_dict(),
    "ListStreamProcessors": lambda c: c.fp.list_stream_processors(c.get("MaxResults", 1000),
                                                                  c.params.get("NextToken")).to_dict(),
    "StartStreamProcessor": lambda c: c.fp.start_stream_processor(c.params["Name"], c.params.get("StartSelector"),
                                                                  c.params.get("StopSelector")).to_dict(),
    "StopStreamProcessor": lambda c: c.fp.stop_stream_processor(c.params["Name"]).to_dict(),
    "UpdateStreamProcessor": _update_stream_processor,
    "DeleteStreamProcessor": lambda c: c.fp.delete_stream_processor(c.params["Name"]).to_dict(),
}
"""Stream processors (docs/streams.md): the API sets what the home's stream host is to run."""

SERVED: dict[str, Handler] = {
    "DetectFaces": _detect_faces,
    "CompareFaces": _compare_faces,
    "DetectText": _detect_text,
    "CreateCollection": _create_collection,
    "DescribeCollection": lambda c: c.fp.describe_collection(c.params["CollectionId"]).to_dict(),
    "ListCollections": lambda c: c.fp.list_collections(c.get("MaxResults", 1000), c.get("NextToken")).to_dict(),
    "DeleteCollection": lambda c: c.answer(c.fp.delete_collection(c.params["CollectionId"], **c.audited())),
    "IndexFaces": _index_faces,
    "ListFaces": _list_faces,
    "DeleteFaces": lambda c: c.answer(c.fp.delete_faces(c.params["CollectionId"], c.params["FaceIds"],
                                                        **c.audited())),
    "SearchFaces": _search_faces,
    "SearchFacesByImage": _search_faces_by_image,
    "CreateUser": lambda c: c.fp.create_user(c.params["CollectionId"], c.params["UserId"],
                                             c.get("ClientRequestToken")).to_dict(),
    "DeleteUser": lambda c: c.fp.delete_user(c.params["CollectionId"], c.params["UserId"],
                                             c.get("ClientRequestToken")).to_dict(),
    "ListUsers": lambda c: c.fp.list_users(c.params["CollectionId"], c.get("MaxResults", 100),
                                           c.get("NextToken")).to_dict(),
    "AssociateFaces": _associate_faces,
    "DisassociateFaces": _disassociate_faces,
    "SearchUsers": _search_users,
    "SearchUsersByImage": _search_users_by_image,
    **VIDEO_OPERATIONS,
    **STREAM_OPERATIONS,
}
"""Every operation of the Python API, by Rekognition name."""

AUDITED = frozenset({"CompareFaces", "IndexFaces", "DeleteFaces", "DeleteCollection", "SearchFaces",
                     "SearchFacesByImage", "SearchUsers", "SearchUsersByImage", "StartFaceSearch"})
"""The operations whose Faceprint method records an audit entry (called with the request's caller)."""

NOT_SUPPORTED_MEMBERS: dict[str, tuple[str, ...]] = {"CreateCollection": ("Tags",)}
"""Request members of served operations that faceprint refuses (documented in docs/operations.md)."""
