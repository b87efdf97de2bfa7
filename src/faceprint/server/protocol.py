"""AWS JSON 1.1, the wire protocol of Rekognition: the request's operation and body, the
answer's body and headers, and errors as Rekognition writes them:
``{"__type": CODE, "Code": CODE, "Message": TEXT}``.

Requests are ``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>`` and
``Content-Type: application/x-amz-json-1.1``; botocore maps ``__type`` to the modelled
exception class (``client.exceptions.ResourceNotFoundException``, ...). A server fault's
message (which may name files) goes to the server log only; the client gets a generic one,
except for errors that say their message is safe to show (``safe_message``: the audit record
could not be written) and deliberate faults (``ThrottlingException``).
faceprint's own operations (``FaceprintService.<Operation>``) use the same protocol.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from faceprint.errors import DELIBERATE_FAULTS, FaceprintError, InvalidParameterException, error_body
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
    """An answer: HTTP status, JSON body (the result, or ``__type``, ``Code`` and ``Message``) and
    faceprint's own reply headers (``X-Faceprint-Audit-Id``, ``X-Faceprint-Probe-*``)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def error_code(self) -> str | None:
        return self.body.get("__type") if self.status >= 300 else None

    def encode(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def operation_of(target: str | None, model: ServiceModel, *others: ServiceModel) -> str:
    """The operation named by ``X-Amz-Target`` in ``model`` or one of ``others`` (faceprint's own);
    unknown targets raise ``UnknownOperationException``."""
    return target_of(target, model, *others)[1]


def target_of(target: str | None, model: ServiceModel, *others: ServiceModel) -> tuple[ServiceModel, str]:
    """The model whose target prefix ``X-Amz-Target`` has, and the operation it names there."""
    prefix = model.target_prefix + "."
    if not target:
        raise UnknownOperationException("The request has no X-Amz-Target header; Rekognition requests "
                                        f"name their operation as {prefix}<Operation>.")
    for candidate in (model, *others):
        own = candidate.target_prefix + "."
        if target.startswith(own) and target[len(own):] in candidate.raw["operations"]:
            return candidate, target[len(own):]
    expected = " or ".join(f"{m.target_prefix}.<Operation>" for m in (model, *others))
    raise UnknownOperationException(f"X-Amz-Target {target[:200]!r} names no Rekognition operation "
                                    f"(expected {expected}).")


CASE_HEADER = "x-faceprint-case"
PURPOSE_HEADER = "x-faceprint-purpose"
ENCODED_PER_CHARACTER = 12
"""The most bytes one character takes percent-encoded (4 UTF-8 bytes, each ``%XX``)."""


def declared(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The purpose and case reference a request declares in ``X-Faceprint-Purpose`` and
    ``X-Faceprint-Case``: percent-encoded UTF-8 (``urllib.parse.quote(text, safe="")``), decoded.
    Raw whitespace is taken as the signature's canonical form has it (runs of it as one space, none
    at either end), so the text recorded is the text signed.
    A header that is not ASCII, longer than its longest encoded value, or not UTF-8 once decoded is
    ``InvalidParameterException`` (the decoded text's length is checked with the caller)."""
    from faceprint.audit.caller import MAX_CASE, MAX_PURPOSE

    return (_header_text(headers, PURPOSE_HEADER, "X-Faceprint-Purpose", MAX_PURPOSE),
            _header_text(headers, CASE_HEADER, "X-Faceprint-Case", MAX_CASE))


def _header_text(headers: Mapping[str, str], name: str, shown: str, most: int) -> str | None:
    raw = headers.get(name)
    if raw is None:
        return None
    if len(raw) > most * ENCODED_PER_CHARACTER or not raw.isascii():
        raise InvalidParameterException(f"{shown} must be percent-encoded UTF-8 (urllib.parse.quote(text, safe='') "
                                        f"in Python) of at most {most} characters.")
    raw = " ".join(raw.split())  # as SigV4 signs it: whitespace a signed header may gain on the way changes nothing
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidParameterException(f"{shown} is not percent-encoded UTF-8.") from None


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
    fault's message is logged in full and answered with a generic one (it may name files), unless
    the error says its message is safe (``safe_message``, e.g. the audit record is unavailable)."""
    shape = model.raw["shapes"].get(exc.code)
    status = model.error_status(exc.code) if shape and shape.get("exception") else exc.http_status
    safe = exc.code in DELIBERATE_FAULTS or getattr(exc, "safe_message", False) is True
    if max(status, exc.http_status) >= 500 and not safe:
        log.error("%s answered as a generic %s: %s", type(exc).__name__, exc.code, exc.message)
        return Reply(status, error_body(exc.code, INTERNAL_MESSAGE))
    return Reply(status, exc.to_dict())


def internal_error_reply(detail: str = "") -> Reply:
    """The answer to a bug or an unexpected failure (logged by the caller): a generic 500."""
    suffix = f" ({detail})" if detail else ""
    return Reply(500, error_body("InternalServerError", f"Internal server error{suffix}; see the server log."))


def response_headers(request_id: str, length: int) -> dict[str, str]:
    return {"content-type": CONTENT_TYPE, "x-amzn-requestid": request_id, "content-length": str(length)}
