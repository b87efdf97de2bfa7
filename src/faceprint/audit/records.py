"""What the audit log holds: the :class:`Entry` a caller asks to record, the :class:`Record` it
becomes (with its sequence number and hashes), and the :class:`AuditFilter` of queries. Reading is
lenient: a stored body edited into something that is not an entry reads as a
:data:`NOT_AN_ENTRY` record (``faceprint.audit.verify`` names it), not an error.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from faceprint.audit.caller import Caller
from faceprint.errors import InvalidParameterException

MAX_FILTER = 1000
"""The longest text a query filters on."""

MAX_TIME = 1e11
"""Times beyond this many epoch seconds (the year 5138) are no times."""

NOT_AN_ENTRY = "(unreadable)"
"""The operation and actor of a record read from a body that is not an entry (see ``Record.from_row``)."""
MAX_SHOWN = 2000
"""The characters of such a body a record holds."""

@dataclass(frozen=True)
class Entry:
    """What a caller asks to record: the operation (Rekognition's name, or faceprint's such as
    ``ReviewDecision``, ``KeyCreated``, ``Erase``, ``Prune``), who and why (``caller``), when
    (epoch seconds), the collection searched and its size, the threshold and the false-match
    rate it stands for, the probe's SHA-256 and quality, the candidates returned
    (``{"FaceId", "Similarity", "ExternalImageId"?, "UserId"?}``) and operation-specific details."""

    operation: str
    caller: Caller
    started: float
    ended: float
    collection_id: str | None = None
    collection_size: int | None = None
    threshold: float | None = None
    false_match_rate: float | None = None
    probe_sha256: str | None = None
    probe_quality: dict | None = None
    low_quality: bool = False
    candidates: tuple[dict, ...] = ()
    details: dict = field(default_factory=dict)

    def fields(self, seq: int) -> dict[str, Any]:
        """The hashed fields with ``seq`` (PascalCase keys; times as epoch seconds)."""
        return {"Seq": seq, "Operation": self.operation, "Actor": self.caller.actor, "ActorKind": self.caller.kind,
                "KeyId": self.caller.key_id, "Purpose": self.caller.purpose, "Case": self.caller.case,
                "Started": self.started, "Ended": self.ended, "CollectionId": self.collection_id,
                "CollectionSize": self.collection_size, "Threshold": self.threshold,
                "FalseMatchRate": self.false_match_rate, "ProbeSha256": self.probe_sha256,
                "ProbeQuality": self.probe_quality, "LowQuality": bool(self.low_quality),
                "Candidates": list(self.candidates), "Details": dict(self.details or {})}

    def columns(self, body: str) -> tuple[Any, ...]:
        """The indexed columns (started, operation, actor, collection, case) of this entry stored as
        ``body`` (its canonical JSON): its own values where they are plain (a finite float, texts),
        else those the body holds (what JSON made of them), so that the columns always agree with it."""
        values = (self.started, self.operation, self.caller.actor, self.collection_id, self.caller.case)
        if type(values[0]) is float and math.isfinite(values[0]) \
                and all(type(v) is str or v is None for v in values[1:]) and values[1] is not None \
                and values[2] is not None:
            return values
        f = json.loads(body)
        return f["Started"], f["Operation"], f["Actor"], f.get("CollectionId"), f.get("Case")

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> Entry:
        caller = Caller(f["Actor"], f.get("ActorKind") or "os", f.get("KeyId"), f.get("Purpose"), f.get("Case"))
        return cls(f["Operation"], caller, f["Started"], f["Ended"], f.get("CollectionId"), f.get("CollectionSize"),
                   f.get("Threshold"), f.get("FalseMatchRate"), f.get("ProbeSha256"), f.get("ProbeQuality"),
                   bool(f.get("LowQuality")), tuple(f.get("Candidates") or ()), dict(f.get("Details") or {}))


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2026-12-02T06:44:05.123Z``)."""
    if epoch is None:
        return None
    try:
        when = dt.datetime.fromtimestamp(epoch, dt.UTC)
    except (OverflowError, ValueError, OSError, TypeError):
        return str(epoch)  # no date: as it was given
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Record:
    """One stored entry: its sequence number (1, 2, ...), the entry, the hash before it and its own."""

    seq: int
    entry: Entry
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """Flat JSON with PascalCase keys; ``Started`` and ``Ended`` in ISO 8601 UTC."""
        out = self.entry.fields(self.seq)
        out["Started"], out["Ended"] = iso(self.entry.started), iso(self.entry.ended)
        out["PrevHash"], out["Hash"] = self.prev_hash, self.hash
        return out

    @classmethod
    def from_row(cls, seq: int, body: str, prev_hash: str, hash_: str) -> Record:
        """A stored row as a record; a body that is not an entry (it was edited: verify says so) is
        read as a :data:`NOT_AN_ENTRY` one holding the start of the text, so that listings, exports
        and reports still show every other entry, and this one for what it is."""
        body, prev_hash, hash_ = as_text(body), as_text(prev_hash), as_text(hash_)
        try:
            fields = json.loads(body)
        except (ValueError, RecursionError):
            fields = None
        if not readable(fields):
            return cls(seq, Entry(NOT_AN_ENTRY, Caller(NOT_AN_ENTRY, "system"), math.nan, math.nan,
                                  details={"Body": str(body)[:MAX_SHOWN]}), prev_hash, hash_)
        return cls(seq, Entry.from_fields(fields), prev_hash, hash_)


def as_text(value: Any) -> str:
    """A stored value as text: SQLite keeps whatever type was written into a column, so an edited
    row may hold bytes or a number where faceprint wrote text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def lenient_text(data: bytes) -> str:
    """SQLite text as Python text, bytes that are not UTF-8 (written by hand) replaced."""
    return data.decode("utf-8", "replace")


def readable(fields: Any) -> bool:
    """Whether ``fields`` (a parsed body) has the shape readers rely on: texts where they read
    texts, candidates as objects, details as one."""
    if not isinstance(fields, dict) or not isinstance(fields.get("Operation"), str) \
            or not isinstance(fields.get("Actor"), str) or "Started" not in fields or "Ended" not in fields:
        return False
    texts = ("ActorKind", "KeyId", "Purpose", "Case", "CollectionId", "ProbeSha256")
    candidates, details = fields.get("Candidates") or [], fields.get("Details") or {}
    return (all(isinstance(fields.get(name), str | None) for name in texts) and isinstance(details, dict)
            and isinstance(candidates, list) and all(isinstance(c, dict) for c in candidates))


@dataclass(frozen=True)
class AuditFilter:
    """Which records a query returns: started within [since, until] (epoch seconds), and the
    exact actor, operation, collection and case reference where given."""

    since: float | None = None
    until: float | None = None
    actor: str | None = None
    operation: str | None = None
    collection_id: str | None = None
    case: str | None = None

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions and their parameters (InvalidParameterException for values of the wrong kind)."""
        self.check()
        parts: list[str] = []
        params: list[Any] = []
        for column, op, value in (("started", ">=", self.since), ("started", "<=", self.until),
                                  ("actor", "=", self.actor), ("operation", "=", self.operation),
                                  ("collection_id", "=", self.collection_id), ("case_ref", "=", self.case)):
            if value is not None:
                parts.append(f"{column} {op} ?")
                params.append(float(value) if column == "started" else value)
        return parts, params

    def check(self) -> AuditFilter:
        """This filter, once its values are of the right kinds (else InvalidParameterException)."""
        for name, value in (("StartTime", self.since), ("EndTime", self.until)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not abs(value) <= MAX_TIME):  # NaN, inf and huge ints too
                raise InvalidParameterException(f"{name} must be a time (epoch seconds).")
        for name, value in (("Actor", self.actor), ("Operation", self.operation),
                            ("CollectionId", self.collection_id), ("CaseReference", self.case)):
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= MAX_FILTER
                                      or not encodable(value)):  # a lone surrogate is no text SQLite can hold
                raise InvalidParameterException(f"{name} must be text of 1 to {MAX_FILTER} characters.")
        return self


def encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def page_request(max_results: Any, next_token: Any, most: int = 1000) -> tuple[int, int]:
    """``(after, limit)`` of a paged listing: MaxResults 1 to ``most``, NextToken a seq given before."""
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= most:
        raise InvalidParameterException(f"MaxResults must be an integer from 1 to {most}.")
    if next_token is None:
        return 0, max_results
    if not isinstance(next_token, str) or not next_token.isascii() or not next_token.isdigit() or len(next_token) > 18:
        raise InvalidParameterException("The pagination token is not valid.")
    return int(next_token), max_results
