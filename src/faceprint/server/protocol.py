"""AWS JSON 1.1, the wire protocol of Rekognition: the request's operation and body, the
answer's body and headers, and errors as Rekognition writes them:
``{"__type": CODE, "Code": CODE, "Message": TEXT}``.

Requests are ``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>`` and
``Content-Type: application/x-amz-json-1.1``; botocore maps ``__type`` to the modelled
exception class (``client.exceptions.ResourceNotFoundException``, ...). A server fault's
message (which may name files) goes to the server log only; the client gets a generic one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from faceprint.errors import DELIBERATE_FAULTS, FaceprintError, error_body
from faceprint.server.model import ServiceModel
from faceprint.server.validation import SerializationException

CONTENT_TYPE = "application/x-amz-json-1.1"
ACCEPTED_TYPES = ("application/x-amz-json-1.1", "application/x-amz-json-1.0", "application/json")
INTERNAL_MESSAGE = "Internal server error; see the server log."

log = logging.getLogger("faceprint.server")


class UnknownOperationException(FaceprintError):
    """The target names no Rekognition operation (AWS's own code for this)."""

    code = "UnknownOperationException"
    http_status = 400


class UnsupportedOperationException(FaceprintError):
    """A Rekognition operation that faceprint does not serve."""

    code = "UnsupportedOperationException"
    http_status = 400


class ThrottlingException(FaceprintError):
    code = "ThrottlingException"
    http_status = 500


class RequestTimeoutException(FaceprintError):
    """The body did not arrive in time (a code the AWS SDKs retry as transient)."""

    code = "RequestTimeoutException"
    http_status = 408


class RequestTooLargeException(FaceprintError):
    code = "RequestEntityTooLargeException"
    http_status = 413


@dataclass(frozen=True)
class Reply:
    """An answer: HTTP status and JSON body (the result, or ``__type``, ``Code`` and ``Message``)."""

    status: int
    body: dict[str, Any]

    @property
    def error_code(self) -> str | None:
        return self.body.get("__type") if self.status >= 300 else None

    def encode(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def operation_of(target: str | None, model: ServiceModel) -> str:
    """The operation named by ``X-Amz-Target``; unknown targets raise
    ``UnknownOperationException``."""
    prefix = model.target_prefix + "."
    if not target:
        raise UnknownOperationException("The request has no X-Amz-Target header; Rekognition requests "
                                        f"name their operation as {prefix}<Operation>.")
    name = target[len(prefix):] if target.startswith(prefix) else None
    if name is None or name not in model.raw["operations"]:
        raise UnknownOperationException(f"X-Amz-Target {target[:200]!r} names no Rekognition operation "
                                        f"(expected {prefix}<Operation>).")
    return name


def check_content_type(content_type: str | None) -> None:
    base = (content_type or "").split(";")[0].strip().lower()
    if base and base not in ACCEPTED_TYPES:
        raise SerializationException(f"Content-Type {content_type!r} is not {CONTENT_TYPE}.")


def parse_body(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, an int over 4,300 digits
        raise SerializationException(f"The request body is not valid JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def error_reply(exc: FaceprintError, model: ServiceModel) -> Reply:
    """An AWS JSON error: the modelled status of the code when the model has the shape. A server
    fault's message is logged in full and answered with a generic one (it may name files)."""
    shape = model.raw["shapes"].get(exc.code)
    status = model.error_status(exc.code) if shape and shape.get("exception") else exc.http_status
    if max(status, exc.http_status) >= 500 and exc.code not in DELIBERATE_FAULTS:
        log.error("%s answered as a generic %s: %s", type(exc).__name__, exc.code, exc.message)
        return Reply(status, error_body(exc.code, INTERNAL_MESSAGE))
    return Reply(status, exc.to_dict())


def internal_error_reply(detail: str = "") -> Reply:
    """The answer to a bug or an unexpected failure (logged by the caller): a generic 500."""
    suffix = f" ({detail})" if detail else ""
    return Reply(500, error_body("InternalServerError", f"Internal server error{suffix}; see the server log."))


def response_headers(request_id: str, length: int) -> dict[str, str]:
    return {"content-type": CONTENT_TYPE, "x-amzn-requestid": request_id, "content-length": str(length)}
