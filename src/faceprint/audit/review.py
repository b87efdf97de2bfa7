"""Review: a search's candidate is a candidate until people confirm it.

A reviewer marks a candidate of a recorded search (an entry of the audit log whose operation is
one of :data:`SEARCH_OPERATIONS`) CONFIRMED, REJECTED or INCONCLUSIVE. Every decision is an audit
entry ("ReviewDecision"), written first: no entry, no decision. ``HOME/audit/reviews.db`` (or the
store's database when it is PostgreSQL: :func:`faceprint.audit.pgparts.open_reviews`) is an index
of those entries (the review queue); it is rebuilt from the log where it lacks any (deleted,
or a process stopped between the two writes).

How a candidate's status follows from its decisions (:func:`status_of`): only each reviewer's
latest decision counts (all stay in the log); any REJECTED makes it "rejected"; as many different
reviewers' CONFIRMED as required make it "confirmed" (two under the collection's two-person rule,
else one); else any INCONCLUSIVE makes it "inconclusive", one CONFIRMED short of two
"awaiting-second", and none "pending". Reviewers are told apart by name (in its NFKC form, case
folded: :func:`person`), whatever the channel (an access key's user, a console user or an OS user
of the same name are one person), so that one person can never count twice. The person who ran
the search may be one of the two.
Once a candidate's review has needed two confirmations (the rule was on when it was requested or
decided on), it always does; where it was off, turning the rule on asks for a second confirmation
of the candidates already confirmed by one. Components (callers of kind "system") do not review.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.audit.caller import Caller
from faceprint.audit.log import AuditFilter, AuditLog, Entry, Record, iso
from faceprint.audit.settings import SettingsStore
from faceprint.collections import COLLECTION_ID, check_pattern, decode_token, encode_token
from faceprint.errors import (
    AccessDeniedException,
    FaceprintError,
    InvalidParameterException,
    ResourceNotFoundException,
    shown,
)
from faceprint.store.database import Database

SEARCH_OPERATIONS = frozenset({"SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage",
                               "FaceSearchJobCompleted", "StreamProcessorMatch"})
"""Audit operations whose candidates can be reviewed: the searches of a collection (CompareFaces
compares two images the caller holds: it names no one in a collection to confirm)."""
DECISIONS = ("CONFIRMED", "REJECTED", "INCONCLUSIVE")
STATUSES = ("pending", "awaiting-second", "confirmed", "rejected", "inconclusive")
REQUESTED = "ReviewRequested"
DECIDED = "ReviewDecision"
MAX_NOTE = 1000
DIRECTION_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_FACE_IDS = 4096
MAX_PAGE = 1000
MAX_SEQ = 2**63 - 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    search_id INTEGER NOT NULL,
    face_id TEXT NOT NULL,
    collection_id TEXT,
    similarity REAL,
    external_image_id TEXT,
    user_id TEXT,
    probe_sha256 TEXT,
    required INTEGER NOT NULL,
    status TEXT NOT NULL,
    UNIQUE (search_id, face_id)
);
CREATE INDEX IF NOT EXISTS candidates_by_status ON candidates (status, id);
CREATE INDEX IF NOT EXISTS candidates_by_collection ON candidates (collection_id, id);
CREATE TABLE IF NOT EXISTS decisions (
    audit_id INTEGER PRIMARY KEY,
    candidate INTEGER NOT NULL REFERENCES candidates (id),
    reviewer TEXT NOT NULL,
    decision TEXT NOT NULL,
    time REAL NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS decisions_by_candidate ON decisions (candidate, audit_id);
CREATE TABLE IF NOT EXISTS log_position (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL);
"""
COLUMNS = ("id, search_id, face_id, collection_id, similarity, external_image_id, user_id, probe_sha256, "
           "required, status")


@dataclass(frozen=True)
class CandidateReview:
    """One candidate of one search and where its review stands. ``face_id`` names the candidate
    (a user id for SearchUsers); ``decisions`` are every decision on it, oldest first
    (``{"Reviewer", "Decision", "Time", "Note", "AuditId"}``); ``required`` the confirmations
    from different reviewers that make it "confirmed"; ``queue_id`` its place in the queue."""

    search_id: int
    face_id: str
    collection_id: str | None
    similarity: float | None
    status: str
    decisions: tuple[dict, ...] = ()
    external_image_id: str | None = None
    user_id: str | None = None
    probe_sha256: str | None = None
    required: int = 1
    queue_id: int = 0

    @property
    def confirmations(self) -> int:
        """How many different reviewers confirm it now (their latest decision is CONFIRMED)."""
        return list(latest_decisions((d["Reviewer"], d["Decision"]) for d in self.decisions).values()
                    ).count("CONFIRMED")

    def to_json(self) -> dict[str, Any]:
        return {"SearchId": self.search_id, "FaceId": self.face_id, "CollectionId": self.collection_id,
                "Similarity": self.similarity, "ExternalImageId": self.external_image_id, "UserId": self.user_id,
                "ProbeSha256": self.probe_sha256, "Status": self.status, "RequiredConfirmations": self.required,
                "Confirmations": self.confirmations, "Decisions": [dict(d) for d in self.decisions]}


def person(reviewer: str) -> str:
    """Who a reviewer's name stands for: its compatibility form (NFKC: full-width and other
    look-alike forms of letters as the letters), case folded, without invisible format characters
    (zero-width spaces and joiners) or surrounding spaces."""
    folded = unicodedata.normalize("NFKC", reviewer).casefold()
    return "".join(c for c in folded if unicodedata.category(c) != "Cf").strip()


def latest_decisions(decisions: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each reviewer's latest decision (``decisions``: (reviewer, decision), oldest first), by
    :func:`person`."""
    latest: dict[str, str] = {}
    for reviewer, decision in decisions:
        latest[person(reviewer)] = decision
    return latest


def status_of(decisions: Iterable[tuple[str, str]], required: int) -> str:
    """A candidate's status after ``decisions`` ((reviewer, decision), oldest first) when
    ``required`` different reviewers must confirm it."""
    latest = list(latest_decisions(decisions).values())
    confirmed = latest.count("CONFIRMED")
    if "REJECTED" in latest:
        return "rejected"
    if confirmed >= required:
        return "confirmed"
    if "INCONCLUSIVE" in latest:
        return "inconclusive"
    return "awaiting-second" if confirmed else "pending"


def candidate_id(candidate: dict) -> str | None:
    """The name of one of a search entry's candidates: its FaceId, or its UserId (SearchUsers)."""
    value = candidate.get("FaceId") or candidate.get("UserId")
    return value if isinstance(value, str) else None


def candidates_of(search: Record) -> dict[str, dict]:
    """A search entry's candidates by name (:func:`candidate_id`; the first of a name), in order."""
    found: dict[str, dict] = {}
    for candidate in search.entry.candidates:
        name = candidate_id(candidate)
        if name is not None:
            found.setdefault(name, candidate)
    return found


class Reviews:
    """The review of search candidates over one home's audit log (``folder``: ``HOME/audit``)."""

    def __init__(self, folder: Path | None, log: AuditLog, settings: SettingsStore,
                 clock: Callable[[], float] = time.time, *, database: Any = None) -> None:
        """The queue in ``folder/reviews.db``, or in ``database`` (one with :class:`Database`'s interface:
        the shared PostgreSQL one, :func:`faceprint.audit.pgparts.open_reviews`)."""
        self.log = log
        self.settings = settings
        self.clock = clock
        if database is None:
            if folder is None:
                raise TypeError("Reviews needs a folder or a database")
            database = Database(Path(folder) / "reviews.db", SCHEMA)
        self.database = database
        self.refresh()

    # -- writing ---------------------------------------------------------------------------------
    def request(self, search_id: int, face_ids: Iterable[str] | None, caller: Caller) -> list[CandidateReview]:
        """Put candidates of a search (``face_ids``; None: all of them) in the review queue; an
        audit entry ("ReviewRequested") says who asked. Candidates already there stay as they are."""
        started = self.clock()
        search = self.search(search_id)
        wanted = self._requested(search, face_ids)
        caller = self._person(caller, search)
        with self._writing() as db:
            required = self._required(search.entry.collection_id)
            record = self.log.append(Entry(REQUESTED, caller, started, self.clock(),
                                           collection_id=search.entry.collection_id,
                                           probe_sha256=search.entry.probe_sha256,
                                           details={"SearchId": search.seq, "FaceIds": wanted,
                                                    "RequiredConfirmations": required}))
            self._apply(db, record)
            self._advance(db, record.seq, record.hash)
        return self._reads(search, wanted)

    def decide(self, search_id: int, face_id: str, decision: str, caller: Caller,
               note: str | None = None) -> CandidateReview:
        """Record ``caller``'s decision on one candidate of a search: first its audit entry
        ("ReviewDecision", saying the status it leads to), then the queue."""
        started = self.clock()
        check_decision(decision)
        check_note(note)
        search = self.search(search_id)
        candidate = self._candidate(search, face_id)
        caller = self._person(caller, search)
        with self._writing() as db:
            row = self._row(db, search.seq, face_id)
            required = max(row[8] if row else 1, self._required(search.entry.collection_id))
            before = self._decisions(db, row[0]) if row else []
            after = [(d["Reviewer"], d["Decision"]) for d in before] + [(caller.actor, decision)]
            status = status_of(after, required)
            record = self.log.append(Entry(DECIDED, caller, started, self.clock(),
                                           collection_id=search.entry.collection_id,
                                           probe_sha256=search.entry.probe_sha256,
                                           details={"SearchId": search.seq, "FaceId": face_id, "Decision": decision,
                                                    "Note": note, "Similarity": candidate.get("Similarity"),
                                                    "Status": status, "RequiredConfirmations": required,
                                                    "Confirmations": list(latest_decisions(after).values()
                                                                          ).count("CONFIRMED")}))
            self._apply(db, record)
            self._advance(db, record.seq, record.hash)
        return self._read(search, face_id)

    def rule_changed(self, collection_id: str) -> None:
        """The collection's two-person rule changed: its candidates' statuses follow the stricter rule."""
        with self.database.tx() as db:
            rows = db.execute("SELECT id, required FROM candidates WHERE collection_id = ?", (collection_id,))
            for row_id, required in rows.fetchall():
                self._restate(db, row_id, required, collection_id)

    # -- reading ---------------------------------------------------------------------------------
    def get(self, search_id: int) -> list[CandidateReview]:
        """Every candidate of a search and its review (candidates nobody asked about: "pending")."""
        search = self.search(search_id)
        return self._reads(search, candidates_of(search))

    def queue(self, status: str | None = None, collection_id: str | None = None, after: int = 0,
              limit: int = 100) -> list[CandidateReview]:
        """Candidates in the review queue (with ``status``, of ``collection_id``), in the order they
        entered it, from after ``queue_id`` ``after``, at most ``limit``."""
        if status is not None and status not in STATUSES:
            raise InvalidParameterException(f"Status {shown(status)} is not one of {', '.join(STATUSES)}.")
        if collection_id is not None:
            check_pattern("CollectionId", collection_id, COLLECTION_ID)
        sql, args = f"SELECT {COLUMNS} FROM candidates WHERE id > ?", [after]
        for column, value in (("status", status), ("collection_id", collection_id)):
            if value is not None:
                sql, args = sql + f" AND {column} = ?", [*args, value]
        with self.database.reading() as db:
            rows = db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
            return [self._review(db, row) for row in rows]

    def search(self, search_id: Any) -> Record:
        """The audit record of a search (else ResourceNotFoundException)."""
        if type(search_id) is not int or not 1 <= search_id <= MAX_SEQ:
            raise InvalidParameterException(f"SearchId {shown(search_id)} must be a positive integer.")
        record = self.log.get(search_id)
        if record is None or record.entry.operation not in SEARCH_OPERATIONS:
            raise ResourceNotFoundException(f"The audit log has no search {search_id}.")
        return record

    def close(self) -> None:
        self.database.close()

    # -- the index -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring the queue up to date with the log: review entries it lacks (written by a process that
        stopped before indexing them) and searches that retention pruned (their reviews go too: the
        queue keeps no more than the log). Done before every write as well."""
        with self._writing():
            pass

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        """A write transaction on the queue, caught up with the log first; where reviews were dropped,
        the WAL is emptied of them afterwards."""
        with self.database.tx() as db:
            dropped = self._catch_up(db)
            yield db
        if dropped:
            self.database.erase_wal()

    def _catch_up(self, db: Any) -> int:
        """Index the review entries of the log that the queue lacks; drop the reviews of searches no
        longer in it, all of them where the log is not the one indexed (its entry at the position
        reached is gone or differs). Answers how many candidates were dropped."""
        found = db.execute("SELECT seq, hash FROM log_position WHERE name = 'log'").fetchone()
        done, done_hash = found if found else (0, None)
        if done and self._hash_at(done) != done_hash:
            db.execute("DELETE FROM decisions")
            dropped = db.execute("DELETE FROM candidates").rowcount
            done = 0
        else:
            dropped = self._forget_pruned(db)
        head, head_hash = self.log.head()
        if head > done:
            for record in self._review_records(done):
                if not db.execute("SELECT 1 FROM decisions WHERE audit_id = ?", (record.seq,)).fetchone():
                    self._replay(db, record)
        self._advance(db, head, head_hash)
        return dropped

    def _forget_pruned(self, db: Any) -> int:
        first = self.log.first_seq()
        if first is None:
            return 0
        old = "SELECT id FROM candidates WHERE search_id < ?"
        db.execute(f"DELETE FROM decisions WHERE candidate IN ({old})", (first,))
        return db.execute("DELETE FROM candidates WHERE search_id < ?", (first,)).rowcount

    def _hash_at(self, seq: int) -> str | None:
        record = self.log.get(seq)
        return record.hash if record else None

    def _review_records(self, after: int) -> Iterator[Record]:
        """The log's review entries after ``after``, in sequence order."""
        found: list[Record] = []
        for operation in (REQUESTED, DECIDED):
            position = after
            while page := self.log.query(AuditFilter(operation=operation), after=position, limit=1000):
                found.extend(page)
                position = page[-1].seq
        return iter(sorted(found, key=lambda r: r.seq))

    def _advance(self, db: Any, seq: int, hash_: str) -> None:
        """The queue holds every review entry up to ``seq`` (whose hash is ``hash_``)."""
        db.execute("INSERT INTO log_position VALUES ('log', ?, ?) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq,"
                   " hash = excluded.hash", (seq, hash_))

    def _replay(self, db: Any, record: Record) -> None:
        """Index a review entry found in the log; one this code did not write (it names no candidate of
        a search, or lacks a field) is left out rather than stop the queue."""
        try:
            self._apply(db, record)
        except (FaceprintError, KeyError, TypeError, ValueError, OverflowError):
            return

    def _apply(self, db: Any, record: Record) -> None:
        """Index one review entry of the log."""
        details = record.entry.details
        search = self.log.get(details.get("SearchId", 0))
        if search is None:  # pruned: its review was indexed before, or is gone with it
            return
        required = int(details.get("RequiredConfirmations", 1))
        if record.entry.operation == REQUESTED:
            known = candidates_of(search)
            for face_id in details.get("FaceIds", ()):
                self._open(db, search, face_id, required, known)
            return
        row_id = self._open(db, search, details["FaceId"], required)
        db.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (record.seq, row_id, record.entry.caller.actor, details["Decision"], record.entry.started,
                    details.get("Note")))
        self._restate(db, row_id, required, search.entry.collection_id)

    def _open(self, db: Any, search: Record, face_id: str, required: int,
              known: dict[str, dict] | None = None) -> int:
        """The queue row of a candidate, made where there is none (pending: no decision yet)."""
        row = self._row(db, search.seq, face_id)
        if row is not None:
            if required > row[8]:
                db.execute("UPDATE candidates SET required = ? WHERE id = ?", (required, row[0]))
            return row[0]
        candidate = self._candidate(search, face_id, known)
        cursor = db.execute(
            "INSERT INTO candidates (search_id, face_id, collection_id, similarity, external_image_id, user_id,"
            " probe_sha256, required, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (search.seq, face_id, search.entry.collection_id, candidate.get("Similarity"),
             candidate.get("ExternalImageId"), candidate.get("UserId"), search.entry.probe_sha256, required, "pending"))
        return int(cursor.fetchone()[0])

    def _restate(self, db: Any, row_id: int, required: int, collection_id: str | None) -> None:
        decisions = [(d["Reviewer"], d["Decision"]) for d in self._decisions(db, row_id)]
        status = status_of(decisions, max(required, self._required(collection_id)))
        db.execute("UPDATE candidates SET status = ? WHERE id = ?", (status, row_id))

    def _row(self, db: Any, search_id: int, face_id: str) -> tuple | None:
        return db.execute(f"SELECT {COLUMNS} FROM candidates WHERE search_id = ? AND face_id = ?",
                          (search_id, face_id)).fetchone()

    def _decisions(self, db: Any, row_id: int) -> list[dict]:
        rows = db.execute("SELECT reviewer, decision, time, note, audit_id FROM decisions WHERE candidate = ?"
                          " ORDER BY audit_id", (row_id,)).fetchall()
        return [{"Reviewer": r[0], "Decision": r[1], "Time": iso(r[2]), "Note": r[3], "AuditId": r[4]}
                for r in rows]

    def _review(self, db: Any, row: tuple) -> CandidateReview:
        """A queue row as a review, its status following from its decisions under the rule in force now
        (the stored status may lag where the collection's settings changed without :meth:`rule_changed`)."""
        required = max(row[8], self._required(row[3]))
        decisions = tuple(self._decisions(db, row[0]))
        status = status_of(((d["Reviewer"], d["Decision"]) for d in decisions), required)
        return CandidateReview(search_id=row[1], face_id=row[2], collection_id=row[3], similarity=row[4],
                               status=status, decisions=decisions,
                               external_image_id=row[5], user_id=row[6], probe_sha256=row[7], required=required,
                               queue_id=row[0])

    def _read(self, search: Record, face_id: str) -> CandidateReview:
        """The review of one candidate of a search (a "pending" one outside the queue if not in it)."""
        return self._reads(search, [face_id])[0]

    def _reads(self, search: Record, face_ids: Iterable[str]) -> list[CandidateReview]:
        """The reviews of candidates of a search, as :meth:`_read` each, in one read transaction."""
        known = candidates_of(search)
        with self.database.reading() as db:
            rows = [(face_id, self._row(db, search.seq, face_id)) for face_id in face_ids]
            return [self._review(db, row) if row is not None else self._pending(search, face_id, known)
                    for face_id, row in rows]

    def _pending(self, search: Record, face_id: str, known: dict[str, dict]) -> CandidateReview:
        """The review of a candidate nobody asked about yet."""
        candidate = self._candidate(search, face_id, known)
        return CandidateReview(search_id=search.seq, face_id=face_id, collection_id=search.entry.collection_id,
                               similarity=candidate.get("Similarity"), status="pending",
                               external_image_id=candidate.get("ExternalImageId"), user_id=candidate.get("UserId"),
                               probe_sha256=search.entry.probe_sha256,
                               required=self._required(search.entry.collection_id))

    # -- rules -----------------------------------------------------------------------------------
    def _required(self, collection_id: str | None) -> int:
        """Confirmations the collection's current rule asks for."""
        return 2 if collection_id is not None and self.settings.get(collection_id).two_person_rule else 1

    def _candidate(self, search: Record, face_id: Any, known: dict[str, dict] | None = None) -> dict:
        """The candidate ``face_id`` of a search (``known``: its :func:`candidates_of`, where at hand)."""
        if not isinstance(face_id, str):
            raise InvalidParameterException(f"FaceId {shown(face_id)} must be a string.")
        candidate = (candidates_of(search) if known is None else known).get(face_id)
        if candidate is None:
            raise ResourceNotFoundException(f"Face {shown(face_id)} is not a candidate of search {search.seq}.")
        return candidate

    def _requested(self, search: Record, face_ids: Iterable[str] | None) -> list[str]:
        known = candidates_of(search)
        if face_ids is None:
            wanted = list(known)
        elif isinstance(face_ids, list | tuple) and len(face_ids) <= MAX_FACE_IDS:
            wanted = list(face_ids)
            for face_id in wanted:
                self._candidate(search, face_id, known)
        else:
            raise InvalidParameterException(f"FaceIds must be a list of at most {MAX_FACE_IDS} face ids.")
        if not wanted:
            raise InvalidParameterException(f"Search {search.seq} has no candidates to review.")
        return list(dict.fromkeys(wanted))

    def _person(self, caller: Caller, search: Record) -> Caller:
        """The reviewer: a person, with the search's case and purpose where it gives none."""
        if caller.kind == "system":
            raise AccessDeniedException(f"{caller.actor} is a component: only people review candidates.")
        return caller.with_declared(caller.purpose or search.entry.caller.purpose,
                                    caller.case or search.entry.caller.case).checked()


def list_page(reviews: Reviews, status: str | None, collection_id: str | None, max_results: Any,
              next_token: str | None) -> dict[str, Any]:
    """A page of the review queue as ListReviews answers it: ``{"Candidates": [...], "NextToken"?}``."""
    if type(max_results) is not int or not 1 <= max_results <= MAX_PAGE:
        raise InvalidParameterException(f"MaxResults {shown(max_results)} must be an integer from 1 to {MAX_PAGE}.")
    after = decode_token(next_token, is_queue_position) or 0
    found = reviews.queue(status, collection_id, after, max_results + 1)
    page = found[:max_results]
    out: dict[str, Any] = {"Candidates": [r.to_json() for r in page]}
    if len(found) > max_results:
        out["NextToken"] = encode_token(page[-1].queue_id)
    return out


def is_queue_position(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_SEQ


def check_decision(decision: Any) -> str:
    if decision not in DECISIONS:
        raise InvalidParameterException(f"Decision {shown(decision)} is not one of {', '.join(DECISIONS)}.")
    return decision


def check_note(note: Any) -> None:
    """A note is 1 to :data:`MAX_NOTE` characters without control characters (line feeds and tabs
    aside) or text direction controls (which would show the next reviewer other words)."""
    if note is None:
        return
    if not isinstance(note, str) or not 1 <= len(note) <= MAX_NOTE or any(
            (c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cs")) or c in DIRECTION_CONTROLS for c in note):
        raise InvalidParameterException(f"Note must be 1 to {MAX_NOTE} characters, without control characters.")
