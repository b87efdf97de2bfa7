"""One Rekognition request from bytes to answer, synchronously (the app runs it on a worker
thread): verify the signature, find the operation, parse and authorize, validate against the
model, call Faceprint, and turn every failure into an AWS JSON error.

Requests name a Rekognition operation (``RekognitionService.<Op>``) or one of faceprint's own
(``FaceprintService.<Op>``: review, collection settings, audit, erasure; :mod:`.faceprint_ops`),
each validated against its service model. Every request has a :class:`Caller` for the audit
record: the signing key's name, purpose and requirements, with the request's case reference and
purpose from ``X-Faceprint-Case`` / ``X-Faceprint-Purpose`` (percent-encoded UTF-8, signed).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from faceprint.audit.caller import Caller
from faceprint.errors import FaceprintError
from faceprint.server.auth import AccessKey, authorize, precheck, verify
from faceprint.server.dispatch import AUDITED, SERVED, Call
from faceprint.server.faceprint_ops import FACEPRINT_SERVED, collection_scope
from faceprint.server.model import ServiceModel
from faceprint.server.protocol import (
    Reply,
    UnsupportedOperationException,
    check_content_type,
    declared,
    error_reply,
    internal_error_reply,
    operation_of,
    parse_body,
    target_of,
)
from faceprint.server.ratelimit import RateLimiter
from faceprint.server.shared_limits import Limiter
from faceprint.server.validation import Validator
from faceprint.types import ListCollectionsResult

if TYPE_CHECKING:
    from faceprint.server.auth import KeyStore
    from faceprint.server.s3 import Buckets
    from faceprint.service import Faceprint

log = logging.getLogger("faceprint.server")


@dataclass(frozen=True)
class HttpRequest:
    """What the handler needs of an HTTP request (header names in lower case)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Outcome:
    """The answer and what the access log and metrics record of it."""

    reply: Reply
    operation: str | None = None
    collection_id: str | None = None
    key_id: str | None = None


@dataclass(frozen=True)
class Signed:
    """A request whose signature is verified: by ``key``, or None when authentication is off."""

    key: AccessKey | None


@dataclass
class RekognitionHandler:
    """Answers Rekognition requests with ``fp``; ``keys`` None turns authentication off.
    ``limiter`` holds the per-key rate limit buckets (this process's, or shared:
    ``faceprint.server.shared_limits``)."""

    fp: Faceprint
    keys: KeyStore | None = None
    buckets: Buckets | None = None
    model: ServiceModel = field(default_factory=ServiceModel)
    limiter: Limiter = field(default_factory=RateLimiter)
    own_model: ServiceModel = field(default_factory=ServiceModel.faceprint)
    """faceprint's own operations (``FaceprintService``)."""

    def __post_init__(self) -> None:
        self.validator = Validator(self.model, self.fp.limits.max_bytes)
        self.own_validator = Validator(self.own_model)

    def operation(self, target: str | None) -> str | None:
        """The operation a target names, or None (for metrics before the request is handled)."""
        try:
            return operation_of(target, self.model, self.own_model)
        except FaceprintError:
            return None

    def refuse_early(self, headers: Mapping[str, str]) -> Outcome | None:
        """The answer to a request refused from its headers alone (no ``Authorization``, an
        unknown key, a bad date or scope), or None; run before the body is read."""
        if self.keys is None:
            return None
        try:
            precheck(headers, self.keys)
        except FaceprintError as exc:
            return Outcome(error_reply(exc, self.model))
        return None

    def authenticate(self, request: HttpRequest) -> Signed | Outcome:
        """The verified signature, or the outcome refusing the request (so that the app can verify
        on a light thread before it queues an image operation on the inference pool)."""
        if self.keys is None:
            return Signed(None)
        outcome = Outcome(Reply(200, {}))
        try:
            return Signed(self._verified(request, self.keys, outcome))
        except FaceprintError as exc:
            outcome.reply = error_reply(exc, self.model)
            return outcome

    def _verified(self, request: HttpRequest, keys: KeyStore, outcome: Outcome) -> AccessKey:
        """The key that signed ``request``, once it is within its rate limit (only a verified
        signature spends a key's budget: knowing a key id is not enough to exhaust it). The key
        is on ``outcome`` from the signature on, so that the log names a throttled key."""
        key = verify(request.method, request.path, request.query, request.headers, request.body, keys)
        outcome.key_id = key.access_key_id
        self.limiter.check(key.access_key_id, key.rate_limit)
        return key

    def handle(self, request: HttpRequest, signed: Signed | None = None) -> Outcome:
        """Answer ``request``, verifying its signature first unless ``signed`` says it was."""
        outcome = Outcome(Reply(200, {}))
        try:
            outcome.reply = self._handle(request, outcome, signed)
        except FaceprintError as exc:  # AuthError included
            outcome.reply = error_reply(exc, self.model)
        except Exception:  # a bug or a damaged home: never a traceback, nor what failed, on the wire
            log.exception("internal error in %s", outcome.operation)
            outcome.reply = internal_error_reply()
        return outcome

    def _handle(self, request: HttpRequest, outcome: Outcome, signed: Signed | None) -> Reply:
        if signed is None and self.keys is not None:
            signed = Signed(self._verified(request, self.keys, outcome))
        key = signed.key if signed is not None else None
        if key is not None:
            outcome.key_id = key.access_key_id
        model, operation = target_of(request.headers.get("x-amz-target"), self.model, self.own_model)
        outcome.operation = operation
        own = model is self.own_model
        served = FACEPRINT_SERVED if own else SERVED
        if operation not in served:
            raise UnsupportedOperationException(
                f"faceprint does not serve the Rekognition operation {operation}; it serves "
                f"{', '.join(sorted(SERVED))} (see docs/operations.md).")
        caller = caller_of(key, request.headers)  # a bad case or purpose header is refused before the body is parsed
        if operation in AUDITED and not own:
            caller.checked()  # a required case reference, before the body (an image) is read
        check_content_type(request.headers.get("content-type"))
        body = parse_body(request.body)
        collection = collection_scope(self.fp, operation, body, key) if own else self._collection(operation, body, key)
        if isinstance(collection, str):
            outcome.collection_id = collection[:255]
        if key is not None:
            authorize(key, operation, outcome.collection_id, "faceprint" if own else "rekognition")
        shape = model.input_shape(operation)
        params = (self.own_validator if own else self.validator).validate(shape, body) if shape else {}
        if operation == "ListCollections" and key is not None and key.policy.collections is not None:
            return Reply(200, visible_collections(self.fp, key, params.get("MaxResults", 1000),
                                                  params.get("NextToken")))
        if operation == "ListStreamProcessors" and key is not None and key.policy.collections is not None:
            return Reply(200, visible_processors(self.fp, key, params.get("MaxResults", 1000),
                                                 params.get("NextToken")))
        call = Call(self.fp, params, self.buckets, body, caller)
        answer = served[operation](call)
        return Reply(200, answer, call.headers)

    def _collection(self, operation: str, body: Any, key: AccessKey | None) -> Any:
        """The collection a request acts on, for the key's policy and the access log: its
        CollectionId; a face search job's; a stream processor's (``Settings.FaceSearch.CollectionId``
        when it is created, the processor's own afterwards)."""
        if not isinstance(body, dict):
            return None
        if operation == "CreateStreamProcessor":
            settings = body.get("Settings")
            search = settings.get("FaceSearch") if isinstance(settings, dict) else None
            return search.get("CollectionId") if isinstance(search, dict) else None
        if operation in PROCESSOR_OPERATIONS and isinstance(body.get("Name"), str):
            return self.fp.streams.collection_of(body["Name"][:256])
        restricted = key is not None and key.policy.collections is not None
        if operation == "GetFaceSearch" and restricted:
            return self.fp.video.collection_of(body.get("JobId"))
        return body.get("CollectionId")


def caller_of(key: AccessKey | None, headers: Mapping[str, str]) -> Caller:
    """Who makes this request, for the audit record: the key's name and id, its purpose unless
    ``X-Faceprint-Purpose`` gives another, ``X-Faceprint-Case``, and the key's requirements (a
    required case is checked by the audited operations themselves, not here: a key that must give
    a case may still list its collections without one). Without authentication: ``anonymous``."""
    purpose, case = declared(headers)
    if key is None:
        caller = Caller("anonymous", "key", purpose=purpose, case=case)
    else:
        caller = Caller(key.user_name, "key", key.access_key_id, purpose=purpose or key.purpose, case=case,
                        require_case=key.require_case, refuse_low_quality=key.refuse_low_quality)
    dataclasses.replace(caller, require_case=False).checked()  # sizes and characters only
    return caller


PROCESSOR_OPERATIONS = frozenset({"DescribeStreamProcessor", "StartStreamProcessor", "StopStreamProcessor",
                                  "UpdateStreamProcessor", "DeleteStreamProcessor"})
"""Operations on one stream processor (by ``Name``): a key's collection patterns apply to its collection."""
STORE_PAGE = 1000
"""Collections read from the store at once while ListCollections looks for a key's visible ones."""


def visible_collections(fp: Faceprint, key: AccessKey, max_results: int, next_token: str | None
                        ) -> dict[str, Any]:
    """ListCollections for a key that may see only some collections: up to ``max_results`` of the
    ids it may see, paging over the store until it has them. A page ends on a visible id, so the
    NextToken (which names the id a page ends on) never holds a collection the key may not see."""
    if max_results == 0:
        return fp.list_collections(0, next_token).to_dict()
    ids: list[str] = []
    versions: list[str] = []
    size = max(max_results, STORE_PAGE)
    while True:
        page = fp.list_collections(size, next_token)
        rows = list(zip(page.collection_ids, page.face_model_versions, strict=True))
        shown = [i for i, (cid, _) in enumerate(rows) if key.policy.allows_collection(cid)]
        wanted = max_results - len(ids)
        if len(shown) > wanted or (len(shown) == wanted and shown[-1] != len(rows) - 1):
            size = shown[wanted - 1] + 1  # the same page again, ending on the last id to show
            continue
        ids += [rows[i][0] for i in shown]
        versions += [rows[i][1] for i in shown]
        if page.next_token is None or len(ids) == max_results:
            token = page.next_token if _any_visible(fp, key, page.next_token) else None
            return ListCollectionsResult(ids, versions, token).to_dict()
        next_token, size = page.next_token, max(max_results - len(ids), STORE_PAGE)


def _any_visible(fp: Faceprint, key: AccessKey, next_token: str | None) -> bool:
    """Whether the key may see a collection after ``next_token`` (so that no last page is empty)."""
    while next_token is not None:
        page = fp.list_collections(STORE_PAGE, next_token)
        if any(key.policy.allows_collection(cid) for cid in page.collection_ids):
            return True
        next_token = page.next_token
    return False


def visible_processors(fp: Faceprint, key: AccessKey, max_results: int, next_token: str | None) -> dict[str, Any]:
    """ListStreamProcessors for a key that may see only some collections: the processors on the
    collections it may see (paged as :func:`visible_collections` pages collections)."""
    shown: list[dict[str, Any]] = []
    size = max(max_results, STORE_PAGE)
    while True:
        page = fp.list_stream_processors(size, next_token).to_dict()
        rows = page.get("StreamProcessors", [])
        visible = [i for i, row in enumerate(rows) if _sees(fp, key, row["Name"])]
        wanted = max_results - len(shown)
        if len(visible) > wanted or (len(visible) == wanted and visible[-1] != len(rows) - 1):
            size = visible[wanted - 1] + 1  # the same page again, ending on the last processor to show
            continue
        shown += [rows[i] for i in visible]
        token = page.get("NextToken")
        if token is None or len(shown) >= max_results:
            answer: dict[str, Any] = {"StreamProcessors": shown}
            if token is not None and _any_processor(fp, key, token):
                answer["NextToken"] = token
            return answer
        next_token, size = token, max(max_results - len(shown), STORE_PAGE)


def _sees(fp: Faceprint, key: AccessKey, name: str) -> bool:
    collection = fp.streams.collection_of(name)
    return collection is not None and key.policy.allows_collection(collection)


def _any_processor(fp: Faceprint, key: AccessKey, next_token: str | None) -> bool:
    while next_token is not None:
        page = fp.list_stream_processors(STORE_PAGE, next_token).to_dict()
        if any(_sees(fp, key, row["Name"]) for row in page.get("StreamProcessors", [])):
            return True
        next_token = page.get("NextToken")
    return False
