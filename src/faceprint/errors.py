"""Errors carrying Amazon Rekognition's error codes.

Every failure the domain core raises on purpose is a :class:`FaceprintError`
whose ``code`` is the Rekognition error name, so the CLI and the server can
report it without translating.
"""

from __future__ import annotations

from typing import Any

DELIBERATE_FAULTS = frozenset({"ThrottlingException"})
"""Codes the model marks as server faults (HTTP 500) whose message the server answers as is:
they say the server is busy, not what failed inside it."""


class FaceprintError(Exception):
    """Base error: ``code`` is the Rekognition error code, ``message`` the text.

    A server fault (HTTP 500 or more) may name files or internals in its message: the server
    logs it and answers a generic one instead, except for the codes in ``DELIBERATE_FAULTS``.
    """

    code = "InternalServerError"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The AWS JSON error body, as Rekognition writes it: ``__type``, ``Code`` and ``Message``."""
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> dict[str, str]:
    """``{"__type": CODE, "Code": CODE, "Message": TEXT}``: botocore reads ``__type`` and
    ``Message`` (or ``message``); SDKs that deserialize the modelled error shape read ``Message``."""
    return {"__type": code, "Code": code, "Message": message}


class InvalidParameterException(FaceprintError):
    code = "InvalidParameterException"
    http_status = 400


class InvalidImageFormatException(FaceprintError):
    code = "InvalidImageFormatException"
    http_status = 400


class ImageTooLargeException(FaceprintError):
    code = "ImageTooLargeException"
    http_status = 400


class ResourceNotFoundException(FaceprintError):
    code = "ResourceNotFoundException"
    http_status = 400


class InvalidS3ObjectException(FaceprintError):
    """The S3 object named by ``Image.S3Object`` (bucket, key or version) cannot be read."""

    code = "InvalidS3ObjectException"
    http_status = 400


class ModelUnavailableError(FaceprintError):
    """A pinned model file could not be fetched or failed its SHA-256 check."""

    code = "InternalServerError"
    http_status = 500


class ResourceAlreadyExistsException(FaceprintError):
    code = "ResourceAlreadyExistsException"
    http_status = 400


class InvalidPaginationTokenException(FaceprintError):
    code = "InvalidPaginationTokenException"
    http_status = 400


class ConflictException(FaceprintError):
    code = "ConflictException"
    http_status = 400


class IdempotentParameterMismatchException(FaceprintError):
    code = "IdempotentParameterMismatchException"
    http_status = 400


class ServiceQuotaExceededException(FaceprintError):
    code = "ServiceQuotaExceededException"
    http_status = 400


class VideoTooLargeException(FaceprintError):
    """The video is larger (bytes) or longer (duration) than this service accepts."""

    code = "VideoTooLargeException"
    http_status = 400


class LimitExceededException(FaceprintError):
    """Too many video jobs queued or in progress at once."""

    code = "LimitExceededException"
    http_status = 400


class ResourceInUseException(FaceprintError):
    """The resource exists already, or its status does not allow the operation now (a stream
    processor that is running cannot be deleted)."""

    code = "ResourceInUseException"
    http_status = 400


def shown(value: Any, most: int = 200) -> str:
    """A request's value as an error message may show it, short whatever its size: text cut to
    ``most`` characters, a huge integer by its size (Python refuses to write one of more than 4,300
    digits), a list or an object by its type."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= most else text[:most] + "..."
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, int | float) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


class AccessDeniedException(FaceprintError):
    """The caller may not do this (e.g. a key that must give a case reference gave none)."""

    code = "AccessDeniedException"
    http_status = 400


class AuditUnavailable(FaceprintError):
    """The audit record could not be written, so the operation gives no result (no entry, no
    result). Its message names no file, so the server answers it as is (``safe_message``)."""

    code = "InternalServerError"
    http_status = 500
    safe_message = True
