"""The audit log: an append-only, hash-chained SQLite table of every operation that identifies
or enrols (``HOME/audit/audit.db``).

Each appended :class:`Entry` becomes a :class:`Record` with the next sequence number, the hash
of the record before it, and its own hash (``faceprint.audit.chain``), in one write
transaction that also stores the new head signed with the online key (``signing``): the
latest head and one every :data:`HEAD_EVERY` entries are kept, so entries cut off the end show.
Writing fails with :class:`~faceprint.errors.AuditUnavailable` and nothing else: no entry, no
result. The columns beside the stored body (time, actor, operation, collection, case) only
index it for queries; ``faceprint.audit.verify`` checks that they agree with it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceprint.audit.caller import Caller
from faceprint.audit.chain import GENESIS, canonical_json, link
from faceprint.audit.signing import OnlineSigner
from faceprint.errors import AuditUnavailable, InvalidParameterException
from faceprint.store.database import Database

HEAD_EVERY = 1000
"""Besides the latest, the signed head of every this many entries is kept."""

PAGE = 2000
"""Rows read at a time when streaming the log."""

MAX_FILTER = 1000
"""The longest text a query filters on."""

MAX_TIME = 1e11
"""Times beyond this many epoch seconds (the year 5138) are no times."""

BROKEN = "AuditChainBroken"
"""The operation of the entry an append writes first where the stored chain did not end at its
latest signed head (``Details``: ``SignedHead`` and ``LastEntry``, each ``{"Seq", "Hash"}`` or None)."""

NOT_AN_ENTRY = "(unreadable)"
"""The operation and actor of a record read from a body that is not an entry (see ``Record.from_row``)."""
MAX_SHOWN = 2000
"""The characters of such a body a record holds."""

UNAVAILABLE = "The audit record could not be written, so the operation was not carried out."
UNREADABLE = "The audit record could not be read."

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    operation TEXT NOT NULL,
    actor TEXT NOT NULL,
    collection_id TEXT,
    case_ref TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_started ON entries(started);
CREATE INDEX IF NOT EXISTS entries_actor ON entries(actor, seq);
CREATE INDEX IF NOT EXISTS entries_operation ON entries(operation, seq);
CREATE INDEX IF NOT EXISTS entries_collection ON entries(collection_id, seq);
CREATE INDEX IF NOT EXISTS entries_case ON entries(case_ref, seq);
CREATE TABLE IF NOT EXISTS heads (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    time REAL NOT NULL,
    signature TEXT NOT NULL
);
"""


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
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= MAX_FILTER):
                raise InvalidParameterException(f"{name} must be text of 1 to {MAX_FILTER} characters.")
        return self


def page_request(max_results: Any, next_token: Any, most: int = 1000) -> tuple[int, int]:
    """``(after, limit)`` of a paged listing: MaxResults 1 to ``most``, NextToken a seq given before."""
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= most:
        raise InvalidParameterException(f"MaxResults must be an integer from 1 to {most}.")
    if next_token is None:
        return 0, max_results
    if not isinstance(next_token, str) or not next_token.isascii() or not next_token.isdigit() or len(next_token) > 18:
        raise InvalidParameterException("The pagination token is not valid.")
    return int(next_token), max_results


def _position(found: tuple[int, str] | None) -> dict[str, Any] | None:
    return None if found is None else {"Seq": found[0], "Hash": found[1]}


@dataclass(frozen=True)
class SignedHead:
    """A chain head (the last seq and its hash) as signed with the online key at ``time``."""

    seq: int
    hash: str
    time: float
    signature: str


class AuditLog:
    """The audit log in ``folder`` (``HOME/audit``): ``audit.db`` and the online key. Safe across
    threads (a connection each) and processes (SQLite's write lock orders the appends).

    ``durable`` (default): each append is on disk before it returns (SQLite ``synchronous=FULL``:
    one fsync of the WAL an entry). False: ``synchronous=NORMAL``, an append is in the WAL (the
    OS's cache) when it returns, so it outlives the process but the last entries can be lost
    with the machine (power loss, kernel crash), and costs a fraction of a millisecond instead
    of the disk's fsync time; :meth:`sync` puts everything on disk (``seal`` does)."""

    def __init__(self, folder: Path, clock: Callable[[], float] = time.time, *, durable: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "audit.db"
        self.clock = clock
        self.durable = durable
        self.signer = OnlineSigner(self.folder / "online-ed25519.pem")
        self._database: Database | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._identity: tuple[int, int] | None = None

    # -- writing -------------------------------------------------------------------------------

    def append(self, entry: Entry) -> Record:
        """Record ``entry``: the next seq, chained and its head signed, in one write transaction.
        Raises :class:`AuditUnavailable` (never anything else) when it cannot be written."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[Entry]) -> list[Record]:
        """Record ``entries`` in order in one transaction (the chain as for one ``append`` each;
        the head signed after the last, and at every :data:`HEAD_EVERY`-th seq)."""
        entries = list(entries)
        try:
            database = self._db()
            self._same_file()
            self.signer.key  # noqa: B018 - made (or read) before the write lock is taken
            with database.tx() as db:
                return self._append(db, entries)[-len(entries):] if entries else []
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc

    def _same_file(self) -> None:
        """OSError when ``audit.db`` is gone or another file since it was opened (SQLite would go on
        writing to the file it has open, which no one would read again): the next call opens anew."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._forget()
            raise
        if self._identity is None:
            self._identity = (st.st_dev, st.st_ino)
        elif self._identity != (st.st_dev, st.st_ino):
            self._forget()
            raise FileNotFoundError(f"{self.path} was replaced")

    def _forget(self) -> None:
        """Open the database and the online key anew next time."""
        with self._lock:
            self._database, self._identity = None, None
            self.signer = OnlineSigner(self.signer.path)

    def _append(self, db: sqlite3.Connection, entries: list[Entry]) -> list[Record]:
        """Chain ``entries`` after the last stored one; where the stored chain does not end at its
        latest signed head, an :data:`BROKEN` entry saying so goes first (see :meth:`_broken`)."""
        row = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        before = (row[0], row[1]) if row else None
        head = db.execute("SELECT seq, hash FROM heads ORDER BY seq DESC LIMIT 1").fetchone()
        latest = (head[0], head[1]) if head else None
        if entries and latest != before:
            entries = [self._broken(latest, before), *entries]
            self._drop_stale_heads(db, before)
        seq, prev = before or (0, GENESIS)
        records: list[Record] = []
        rows = []
        for entry in entries:
            seq += 1
            body = canonical_json(entry.fields(seq))
            hash_ = link(prev, body)
            record = Record(seq, Entry.from_fields(json.loads(body)), prev, hash_)
            e = record.entry
            rows.append((seq, e.started, e.operation, e.caller.actor, e.collection_id, e.caller.case, body, prev,
                         hash_))
            records.append(record)
            prev = hash_
        db.executemany("INSERT INTO entries (seq, started, operation, actor, collection_id, case_ref, body, "
                       "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if records:
            self._sign_heads(db, before if latest == before else None, records)
        return records

    def _broken(self, latest: tuple[int, str] | None, before: tuple[int, str] | None) -> Entry:
        """The entry that keeps, in the chain, what an append found: a stored chain that does not end
        at the latest signed head (entries edited, cut off or added since it was signed, or heads
        removed). The next head is signed over that chain, but this entry stays in it."""
        now = float(self.clock())
        return Entry(BROKEN, Caller("faceprint", "system"), now, now,
                     details={"SignedHead": _position(latest), "LastEntry": _position(before)})

    @staticmethod
    def _drop_stale_heads(db: sqlite3.Connection, before: tuple[int, str] | None) -> None:
        """Remove the signed heads the stored chain no longer reaches or matches (past its end, or at
        it with another hash): the :data:`BROKEN` entry written now says what the latest of them was,
        so that one cut is reported once, not by every append until the log grows past it."""
        end, hash_ = before or (0, GENESIS)
        db.execute("DELETE FROM heads WHERE seq > ? OR (seq = ? AND hash != ?)", (end, end, hash_))

    def _sign_heads(self, db: sqlite3.Connection, before: tuple[int, str] | None, records: list[Record]) -> None:
        """Sign the new latest head, and as checkpoints those of ``records`` at every
        :data:`HEAD_EVERY`-th seq. The latest head before them (``before``: its seq and hash, None
        where the chain did not end at it) retires: a checkpoint's is signed again as one, any
        other's goes; one the stored entries no longer matched stays, for verify to show."""
        now = float(self.clock())
        sign = self.signer.sign_head
        signed = [(r.seq, r.hash, now, sign(r.seq, r.hash, now, latest=False))
                  for r in records[:-1] if r.seq % HEAD_EVERY == 0]
        if before is not None:
            if before[0] % HEAD_EVERY == 0:
                signed.append((*before, now, sign(*before, now, latest=False)))
            else:
                db.execute("DELETE FROM heads WHERE seq = ?", (before[0],))
        last = records[-1]
        signed.append((last.seq, last.hash, now, sign(last.seq, last.hash, now)))
        db.executemany("INSERT OR REPLACE INTO heads (seq, hash, time, signature) VALUES (?, ?, ?, ?)", signed)

    def delete_through(self, seq: int) -> int:
        """Remove the records up to ``seq`` and the heads they hold (retention's job: see
        ``faceprint.audit.retention``, which records the cut first); the WAL is emptied of them."""
        try:
            database = self._db()
            with database.tx() as db:
                gone = db.execute("DELETE FROM entries WHERE seq <= ?", (seq,)).rowcount
                db.execute("DELETE FROM heads WHERE seq <= ?", (seq,))
            database.erase_wal()
            return gone
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc

    # -- reading -------------------------------------------------------------------------------

    def get(self, seq: int) -> Record | None:
        row = self._one("SELECT seq, body, prev_hash, hash FROM entries WHERE seq = ?", (int(seq),))
        return Record.from_row(*row) if row else None

    def head(self) -> tuple[int, str]:
        """The last seq and its hash; ``(0, GENESIS)`` when the log is empty."""
        row = self._one("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1", ())
        return (row[0], row[1]) if row else (0, GENESIS)

    def first_seq(self) -> int | None:
        row = self._one("SELECT min(seq) FROM entries", ())
        return row[0] if row else None

    def count(self) -> int:
        return self._one("SELECT count(*) FROM entries", ())[0]

    def count_through(self, seq: int) -> int:
        """How many records there are up to ``seq``."""
        return self._one("SELECT count(*) FROM entries WHERE seq <= ?", (int(seq),))[0]

    def first_started_since(self, since: float) -> int | None:
        """The first seq of a record started at or after ``since`` (None: there is none)."""
        return self._one("SELECT min(seq) FROM entries WHERE started >= ?", (float(since),))[0]

    def last_before(self, seq: int) -> int | None:
        """The last seq of a record before ``seq`` (None: there is none)."""
        return self._one("SELECT max(seq) FROM entries WHERE seq < ?", (int(seq),))[0]

    def query(self, filters: AuditFilter = AuditFilter(), after: int = 0, limit: int = 1000) -> list[Record]:
        """Up to ``limit`` records after seq ``after`` that match ``filters``, in seq order."""
        parts, params = filters.where()
        sql = ("SELECT seq, body, prev_hash, hash FROM entries WHERE " + " AND ".join(["seq > ?", *parts])
               + " ORDER BY seq LIMIT ?")
        return [Record.from_row(*row) for row in self._all(sql, (int(after), *params, int(limit)))]

    def records(self, start: int = 0) -> Iterator[Record]:
        """Every record from seq ``start`` on, in seq order, read a page at a time."""
        for seq, body, prev_hash, hash_, *_ in self.rows(start):
            yield Record.from_row(seq, body, prev_hash, hash_)

    def rows(self, start: int = 0) -> Iterator[tuple]:
        """The stored rows from seq ``start`` on: (seq, body, prev_hash, hash, started, operation,
        actor, collection_id, case_ref), a page at a time (for verification)."""
        after = int(start) - 1
        while True:
            page = self._all("SELECT seq, body, prev_hash, hash, started, operation, actor, collection_id, case_ref "
                             "FROM entries WHERE seq > ? ORDER BY seq LIMIT ?", (after, PAGE))
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def signed_heads(self) -> list[SignedHead]:
        """The kept signed heads, in seq order."""
        return [SignedHead(*row) for row in self._all("SELECT seq, hash, time, signature FROM heads ORDER BY seq", ())]

    def latest_head(self) -> SignedHead | None:
        row = self._one("SELECT seq, hash, time, signature FROM heads ORDER BY seq DESC LIMIT 1", ())
        return SignedHead(*row) if row else None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside (on this thread) see the log as it was at the first: one read transaction,
        so that entries appended meanwhile do not show without their signed head."""
        try:
            reading = self._db().reading()
            reading.__enter__()
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(UNREADABLE) from exc
        try:
            yield
        finally:
            with suppress(sqlite3.Error):
                reading.__exit__(None, None, None)

    def close(self) -> None:
        """Close this thread's connection."""
        if self._database is not None:
            self._database.close()

    # -- the database ----------------------------------------------------------------------------

    def sync(self) -> None:
        """Everything appended so far on disk (an fsync of the WAL)."""
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            fd = os.open(wal, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc
        finally:
            os.close(fd)

    def _db(self) -> Database:
        if self._database is None:
            with self._lock:
                if self._database is None:
                    self._database = Database(self.path, SCHEMA)
        if not self.durable:
            connection = self._database.db()
            if getattr(self._local, "relaxed", None) is not connection:
                connection.execute("PRAGMA synchronous=NORMAL")
                self._local.relaxed = connection
        return self._database

    def _one(self, sql: str, params: tuple) -> tuple | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _all(self, sql: str, params: tuple) -> list[tuple]:
        try:
            connection = self._db().db()
            try:
                return connection.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
            connection.text_factory = lenient_text  # text that is not UTF-8 was written in: read it anyway
            try:
                return connection.execute(sql, params).fetchall()
            finally:
                connection.text_factory = str
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(UNREADABLE) from exc
