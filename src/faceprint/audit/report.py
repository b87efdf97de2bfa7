"""The accountability report (RCW 43.386.020's "accountability report", the EU AI Act's record of
use): over a period, how the system was used, per purpose, per actor and per collection; the
searches made with a low-quality probe; and what reviewers decided.

Identifications are the search operations (SearchFaces, SearchFacesByImage, SearchUsers,
SearchUsersByImage, CompareFaces, StartFaceSearch) and stream-processor matches; enrolments
IndexFaces; deletions DeleteFaces, DeleteCollection, Erase and RetentionDeleted. Review
outcomes count the ``ReviewDecision`` entries by decision, and each reviewed candidate (a
search and a face) by the status its latest decision in the period led to (under the
two-person rule, "confirmed" only after two reviewers).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from faceprint.audit.export import matching
from faceprint.audit.log import AuditFilter, AuditLog, Record, iso

SEARCHES = frozenset({"SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage", "CompareFaces",
                      "StartFaceSearch"})
MATCHES = frozenset({"StreamProcessorMatch", "FaceSearchJobCompleted"})
ENROLMENTS = frozenset({"IndexFaces"})
DELETIONS = frozenset({"DeleteFaces", "DeleteCollection", "Erase", "RetentionDeleted"})
DECISION = "ReviewDecision"
MAX_LISTED = 1000
"""Low-quality searches listed at most (all are counted)."""
MAX_GROUPS = 1000
"""Purposes, actors and collections listed at most, each: those first seen after are counted together
under :data:`OTHERS` (purposes are what callers typed, so there may be as many as entries)."""
OTHERS = "(others)"


class _Tally:
    """Counts for one purpose, actor or collection."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.cases: set[str] = set()
        self.actors: set[str] = set()

    def add(self, record: Record) -> None:
        e = record.entry
        kind = _kind(e.operation)
        self.counts[kind] += 1
        if kind == "Searches":
            self.counts["SearchesWithCandidates"] += bool(e.candidates)
            self.counts["CandidatesReturned"] += len(e.candidates)
            self.counts["LowQualitySearches"] += bool(e.low_quality)
            self.counts["Refused"] += bool(e.details.get("Refused"))
        if e.caller.case:
            self.cases.add(e.caller.case)
        self.actors.add(e.caller.actor)

    def to_json(self) -> dict[str, Any]:
        return {**{k: self.counts[k] for k in ("Searches", "SearchesWithCandidates", "CandidatesReturned",
                                                "LowQualitySearches", "Refused", "Matches", "Enrolments",
                                                "Deletions", "ReviewDecisions", "Other")},
                "Cases": len(self.cases), "Actors": len(self.actors)}


def _kind(operation: str) -> str:
    for kind, names in (("Searches", SEARCHES), ("Matches", MATCHES), ("Enrolments", ENROLMENTS),
                        ("Deletions", DELETIONS), ("ReviewDecisions", frozenset({DECISION}))):
        if operation in names:
            return kind
    return "Other"


def _group(groups: dict[Any, _Tally], key: Any, others: Any) -> _Tally:
    """The tally of ``key`` in ``groups``, or of ``others`` once :data:`MAX_GROUPS` keys have their own."""
    return groups[key if key in groups or len(groups) < MAX_GROUPS else others]


def audit_report(log: AuditLog, since: float | None = None, until: float | None = None) -> dict[str, Any]:
    """The report of the entries started within [since, until] (epoch seconds; None: open)."""
    purposes: dict[str, _Tally] = defaultdict(_Tally)
    actors: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    collections: dict[str, _Tally] = defaultdict(_Tally)
    total, operations = _Tally(), Counter()
    low: list[dict[str, Any]] = []
    decisions: Counter[str] = Counter()
    status: dict[tuple[Any, Any], str] = {}
    for record in matching(log, AuditFilter(since=since, until=until)):
        e = record.entry
        operations[e.operation] += 1
        total.add(record)
        _group(purposes, e.caller.purpose or "(none given)", OTHERS).add(record)
        _group(actors, (e.caller.actor, e.caller.kind), (OTHERS, "")).add(record)
        if e.collection_id is not None:
            _group(collections, e.collection_id, OTHERS).add(record)
        if e.low_quality and e.operation in SEARCHES and len(low) < MAX_LISTED:
            low.append({"Seq": record.seq, "Started": iso(e.started), "Operation": e.operation,
                        "Actor": e.caller.actor, "Case": e.caller.case, "CollectionId": e.collection_id,
                        "ProbeQuality": e.probe_quality, "Refused": bool(e.details.get("Refused"))})
        if e.operation == DECISION:
            decisions[str(e.details.get("Decision"))] += 1
            status[(e.details.get("SearchId"), e.details.get("FaceId"))] = str(e.details.get("Status"))
    return {"Period": {"Since": iso(since), "Until": iso(until)},
            "Totals": total.to_json(), "Operations": dict(sorted(operations.items())),
            "ByPurpose": [{"Purpose": k, **v.to_json()} for k, v in sorted(purposes.items())],
            "ByActor": [{"Actor": a, "Kind": kind, **v.to_json()} for (a, kind), v in sorted(actors.items())],
            "ByCollection": [{"CollectionId": k, **v.to_json()} for k, v in sorted(collections.items())],
            "LowQualitySearches": low,
            "Reviews": {"Decisions": dict(sorted(decisions.items())),
                        "Candidates": dict(sorted(Counter(status.values()).items())),
                        "CandidatesReviewed": len(status)}}
