"""Helpers the console's pages share (run on the console's thread pools)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faceprint.console.web import Refused
from faceprint.errors import FaceprintError

if TYPE_CHECKING:
    from faceprint.audit.log import Record
    from faceprint.console.web import Ctx

SEARCHES = frozenset({"SearchFacesByImage", "SearchFaces", "SearchUsers", "SearchUsersByImage", "CompareFaces"})
SCAN_LIMIT = 1_000_000
"""Entries looked through, newest first, for one page's "latest" list (a bound, not a goal)."""


def collection_ids(fp: Any) -> list[str]:
    ids: list[str] = []
    token = None
    while len(ids) < 10_000:
        page = fp.list_collections(max_results=1000, next_token=token)
        ids.extend(page.collection_ids)
        token = page.next_token
        if not token:
            break
    return ids


def crop_available(fp: Any, collection_id: str, face_id: str) -> bool:
    return fp.crops.has(collection_id, face_id)


def int_param(value: Any, what: str) -> int:
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    raise Refused(400, "Bad request", f"The {what} number is missing or not a number.")


def search_record(fp: Any, seq: int) -> Record:
    """The audit entry of search ``seq`` (404 if there is none)."""
    record = fp.audit_log.get(seq)
    if record is None or record.entry.operation not in SEARCHES:
        raise Refused(404, "Not found", f"There is no search {seq}.")
    return record


def check_search_owner(ctx: Ctx, record: Record) -> None:
    """An investigator sees and sends to review only their own console searches."""
    caller = record.entry.caller
    if ctx.can("all-searches"):
        return
    if caller.kind != "console" or caller.actor != ctx.user.name:
        raise Refused(403, "Not allowed", "This search is someone else's.")


def recent_entries(fp: Any, actor: str | None = None, kind: str | None = None,
                   operations: tuple[str, ...] | frozenset[str] = (), limit: int = 20) -> list[Record]:
    """The latest audit records (newest first) by ``actor`` (of ``kind``) whose operation is one of
    ``operations``: windows of the log read backwards from its head, each twice the last."""
    from faceprint.audit.log import AuditFilter

    try:
        head, _ = fp.audit_log.head()
    except FaceprintError:
        return []
    found: list[Record] = []
    upper, window = head, 1000
    while upper > 0 and len(found) < limit and head - upper < SCAN_LIMIT:
        lower = max(0, upper - window)
        chunk: list[Record] = []
        after = lower
        while True:
            page = fp.audit_log.query(AuditFilter(actor=actor), after=after, limit=1000)
            chunk.extend(r for r in page if r.seq <= upper and _wanted(r, kind, operations))
            if len(page) < 1000 or page[-1].seq >= upper:
                break
            after = page[-1].seq
        found.extend(reversed(chunk))
        upper, window = lower, window * 2
    return found[:limit]


def _wanted(record: Record, kind: str | None, operations: tuple[str, ...] | frozenset[str]) -> bool:
    return (kind is None or record.entry.caller.kind == kind) and (not operations or
                                                                    record.entry.operation in operations)


def probe_kept(fp: Any, sha256: str) -> bool:
    return fp.probe_store.has(sha256)


def two_person(fp: Any, collection_id: str | None) -> bool:
    """Whether the collection's candidates need two reviewers (True where it cannot be told)."""
    if not collection_id:
        return True
    try:
        return bool(fp.settings_store.get(collection_id).two_person_rule)
    except Exception:  # a damaged settings file: say the stricter
        return True
