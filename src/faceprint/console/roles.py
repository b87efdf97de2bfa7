"""What each console role may do. A page or form names the permission it needs."""

from __future__ import annotations

from faceprint.console.users import ROLES

PERMISSIONS: dict[str, frozenset[str]] = {
    "signed-in": frozenset(ROLES),
    "search": frozenset({"investigator", "admin"}),
    "review": frozenset({"reviewer", "auditor", "admin"}),
    "decide": frozenset({"reviewer", "admin"}),
    "collections": frozenset({"investigator", "auditor", "admin"}),
    "delete": frozenset({"admin"}),
    "video": frozenset(ROLES),
    "audit": frozenset({"auditor", "admin"}),
    "all-searches": frozenset({"reviewer", "auditor", "admin"}),
    "users": frozenset({"admin"}),
}
"""investigator: searches, sends candidates to review, sees their own searches; reviewer: the review
queue and its decisions; auditor: the audit record, verify and report, and everything else read-only;
admin: all of it, deleting faces included. Video jobs and stream processors are visible to all."""

HOME_PAGE = {"investigator": "search", "reviewer": "review", "auditor": "audit", "admin": "search"}


def allowed(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]
