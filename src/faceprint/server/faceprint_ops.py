"""faceprint's own operations (``X-Amz-Target: FaceprintService.<Operation>``): two-person review of
search candidates, collection accountability settings, the audit record and erasure of a person.

They travel as Rekognition's do (AWS JSON 1.1, SigV4 with signing name ``rekognition``) and are
described by the botocore-style model shipped in the package (``faceprint/data/faceprint/
2026-12-01/service-2.json``), against which requests are validated. ``FACEPRINT_SERVED`` maps
each to a function calling the :class:`~faceprint.service.Faceprint` facade.

A key limited to some collections may act only where a collection is known and allowed: a
review's collection is its search's (from the audit entry), and the operations that span every
collection (the whole audit log, the report, erasure; the review queue or the log without a
``CollectionId``) are refused to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faceprint.errors import InvalidParameterException
from faceprint.server.auth import AuthError
from faceprint.server.dispatch import AUDIT_ID_HEADER, Call, Handler

if TYPE_CHECKING:
    from faceprint.server.keys import AccessKey
    from faceprint.service import Faceprint

SEARCH_OPERATIONS = frozenset({"RequestReview", "ReviewCandidate", "GetReview"})
"""Operations on one search's candidates (by ``SearchId``, the search's audit entry)."""
SPANNING = frozenset({"ListReviews", "ListAuditEntries", "VerifyAudit", "GetAuditReport", "Erase"})
"""Operations that see every collection unless the request names one (only ListReviews and
ListAuditEntries can)."""


def collection_scope(fp: Faceprint, operation: str, body: Any, key: AccessKey | None) -> str | None:
    """The collection a request acts on, for the key's policy and the access log. For a key
    limited to some collections, an operation spanning them all is ``AccessDeniedException``."""
    if not isinstance(body, dict):
        return None
    collection = body.get("CollectionId")
    restricted = key is not None and key.policy.collections is not None
    if operation in SEARCH_OPERATIONS and restricted:
        collection = _search_collection(fp, body.get("SearchId"))
    if restricted and operation in SPANNING and not isinstance(collection, str):
        assert key is not None
        raise AuthError("AccessDeniedException",
                        f"User: {key.user_name} (access key {key.access_key_id}) may use only some collections, "
                        f"so it may not perform faceprint:{operation} across all of them"
                        + (" (name a CollectionId)." if operation in ("ListReviews", "ListAuditEntries") else "."))
    return collection


def _search_collection(fp: Faceprint, search_id: Any) -> str | None:
    """The collection a search (its audit entry) searched, or None when there is no such entry."""
    if isinstance(search_id, bool) or not isinstance(search_id, int) or not 1 <= search_id < 2**63:
        return None  # the model's validation refuses it next
    record = fp.audit_log.get(search_id)
    return record.entry.collection_id if record is not None else None


def _review_candidate(c: Call) -> dict[str, Any]:
    p = c.params
    return c.fp.review_candidate(p["SearchId"], p["FaceId"], p["Decision"], note=p.get("Note"), caller=c.caller)


def _list_reviews(c: Call) -> dict[str, Any]:
    return c.fp.list_reviews(c.params.get("Status"), c.params.get("CollectionId"), c.get("MaxResults", 100),
                             c.params.get("NextToken"))


def _update_collection_settings(c: Call) -> dict[str, Any]:
    p = c.params
    changes: dict[str, Any] = {"two_person_rule": p.get("TwoPersonRule"), "keep_face_crops": p.get("KeepFaceCrops")}
    if "FaceRetentionDays" in p:  # 0: no retention period
        changes["face_retention_days"] = p["FaceRetentionDays"] or None
    return c.fp.update_collection_settings(p["CollectionId"], caller=c.caller, **changes)


def _list_audit_entries(c: Call) -> dict[str, Any]:
    from faceprint.audit.log import AuditFilter

    p = c.params
    filters = AuditFilter(since=p.get("StartTime"), until=p.get("EndTime"), actor=p.get("Actor"),
                          operation=p.get("Operation"), collection_id=p.get("CollectionId"),
                          case=p.get("CaseReference"))
    return c.fp.audit_entries(filters, c.get("MaxResults", 100), p.get("NextToken"))


def _erase(c: Call) -> dict[str, Any]:
    p = c.params
    if ("ExternalImageId" in p) == ("UserId" in p):
        raise InvalidParameterException("Erase needs exactly one of ExternalImageId and UserId.")
    erased = c.fp.erase(p.get("ExternalImageId"), p.get("UserId"), p.get("CollectionId"), caller=c.caller)
    if erased.get("AuditId") is not None:
        c.headers[AUDIT_ID_HEADER] = str(erased["AuditId"])
    return erased


FACEPRINT_SERVED: dict[str, Handler] = {
    "RequestReview": lambda c: c.fp.request_review(c.params["SearchId"], c.params.get("FaceIds"), caller=c.caller),
    "ReviewCandidate": _review_candidate,
    "GetReview": lambda c: c.fp.get_review(c.params["SearchId"]),
    "ListReviews": _list_reviews,
    "DescribeCollectionSettings": lambda c: c.fp.describe_collection_settings(c.params["CollectionId"]),
    "UpdateCollectionSettings": _update_collection_settings,
    "ListAuditEntries": _list_audit_entries,
    "VerifyAudit": lambda c: c.fp.verify_audit().to_json(),
    "GetAuditReport": lambda c: c.fp.audit_report(c.params.get("StartTime"), c.params.get("EndTime")),
    "Erase": _erase,
}
"""Every ``FaceprintService`` operation, by name."""
