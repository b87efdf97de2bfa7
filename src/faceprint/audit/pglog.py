"""The audit log in PostgreSQL (part ``audit``), for a home whose store is PostgreSQL: every
node appends to one chain in one global order.

The same chain, bodies, hashes, signed heads and guarantees as the embedded log
(``faceprint.audit.log``; the same public methods, so recording, verifying, exporting, reports,
retention and the console work on either). What differs:

- one order across nodes: an append takes a transaction-scoped advisory lock (the chain's, the
  same number on every node) before it reads the chain's end and the latest signed head, and
  writes its entries and the new head in that transaction; so appends from every process on
  every machine serialise, each entry's seq is the last one's plus one and its ``prev_hash``
  the last one's hash (``seq`` is the primary key besides). The entry is committed before the
  append returns: no entry, no result (:class:`~faceprint.errors.AuditUnavailable`);
- the filter columns (time, actor, operation, collection, case) are written with each entry, in
  the same row, each with an index: the filter index always reaches the last entry;
- the online key is the database's (``faceprint.audit.pgsigning``), the same on every node;
- ``durable`` False commits with ``synchronous_commit = off`` (the entry is committed and
  visible to every node when the append returns, but the server may lose the last ones if it
  crashes); True (the default) waits for the server's WAL flush; :meth:`sync` flushes;
- pruned entries leave the table at once and their space at the ``VACUUM`` run after the delete.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from faceprint.audit.caller import Caller
from faceprint.audit.chain import GENESIS, canonical_json, link
from faceprint.audit.log import BROKEN, SignedHead, head_rows, signed_latest
from faceprint.audit.pgsigning import PgSigner
from faceprint.audit.records import AuditFilter, Entry, Record
from faceprint.errors import AuditUnavailable
from faceprint.store.migrations import Migration

PART = "audit"
PAGE = 2000
CHAIN_LOCK = zlib.crc32(b"faceprint audit chain")
"""The advisory lock every append holds while it extends the chain."""
LOCK_WAIT = "10s"
"""How long an append waits for the chain's lock (held by a node that hangs) before it fails."""
LOCK_CHAIN = f"SET LOCAL lock_timeout = '{LOCK_WAIT}'; SELECT pg_advisory_xact_lock({CHAIN_LOCK})"
"""Take the chain's lock (one round trip: no parameters)."""

UNAVAILABLE = "The audit record could not be written, so the operation was not carried out."
UNREADABLE = "The audit record could not be read."

SCHEMA = """
CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    started DOUBLE PRECISION,
    operation TEXT,
    actor TEXT,
    collection_id TEXT,
    case_ref TEXT
);
CREATE INDEX audit_entries_started ON audit_entries (started);
CREATE INDEX audit_entries_actor ON audit_entries (actor, seq);
CREATE INDEX audit_entries_operation ON audit_entries (operation, seq);
CREATE INDEX audit_entries_collection ON audit_entries (collection_id, seq);
CREATE INDEX audit_entries_case ON audit_entries (case_ref, seq);
CREATE TABLE audit_heads (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE audit_keys (
    name TEXT PRIMARY KEY,
    pem TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
"""

ENDS = ("SELECT (SELECT seq FROM audit_entries ORDER BY seq DESC LIMIT 1), "
        "(SELECT hash FROM audit_entries ORDER BY seq DESC LIMIT 1), "
        "(SELECT seq FROM audit_heads ORDER BY seq DESC LIMIT 1), "
        "(SELECT hash FROM audit_heads ORDER BY seq DESC LIMIT 1)")
"""The last entry's seq and hash and the latest signed head's (NULLs where there is none)."""
INSERT = "INSERT INTO audit_entries (seq, body, prev_hash, hash, started, operation, actor, collection_id, case_ref)"
PUT_HEADS = "INSERT INTO audit_heads (seq, hash, time, signature) VALUES"
ON_HEAD = "ON CONFLICT (seq) DO UPDATE SET hash = EXCLUDED.hash, time = EXCLUDED.time, signature = EXCLUDED.signature"
PUT_HEAD = f"{PUT_HEADS} (%s, %s, %s, %s) {ON_HEAD}"
ROWS = 1000
"""Entries written by one INSERT at most (9 parameters each: PostgreSQL takes at most 65,535)."""
SELECT = "SELECT seq, body, prev_hash, hash FROM audit_entries"
EVERYTHING = AuditFilter()


def migrations() -> list[Migration]:
    from faceprint.store.pgshared import statements

    return [Migration(1, "the audit chain, its signed heads and its online key", statements(SCHEMA))]


def _insert(count: int) -> str:
    """An INSERT of ``count`` entries."""
    return f"{INSERT} VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s, %s, %s)'] * count)}"


def _cells(columns: tuple) -> tuple:
    """An entry's filter columns as PostgreSQL holds them (a time that is no number: NULL)."""
    started, *texts = columns
    number = isinstance(started, (int, float)) and not isinstance(started, bool)
    return (float(started) if number else None,
            *[t if t is None or isinstance(t, str) else json.dumps(t) for t in texts])


def _searchable(value: Any) -> bool:
    """Whether a filter's text can be stored at all (PostgreSQL text holds no NUL, no lone surrogate):
    one that cannot matches nothing."""
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _store(db: Any, rows: list[tuple], retired: int | None, heads: list[tuple]) -> None:
    """Write the entries' ``rows`` and the ``heads`` (removing the head row at seq ``retired``): one
    statement, unless the batch is longer than :data:`ROWS` entries."""
    for start in range(0, len(rows) - ROWS, ROWS):  # a long batch: all but the last rows alone
        db.execute(_insert(len(rows[start:start + ROWS])), [v for row in rows[start:start + ROWS] for v in row])
    last = rows[(len(rows) - 1) // ROWS * ROWS:]
    sql = f"WITH e AS ({_insert(len(last))})"
    params: list[Any] = [v for row in last for v in row]
    if retired is not None:
        sql += ", r AS (DELETE FROM audit_heads WHERE seq = %s)"
        params.append(retired)
    values = ", ".join(["(%s, %s, %s, %s)"] * len(heads))
    db.execute(f"{sql} {PUT_HEADS} {values} {ON_HEAD}", [*params, *[v for head in heads for v in head]])


class PgAuditLog:
    """The audit log in the PostgreSQL database ``url`` names; ``folder`` (``HOME/audit``) keeps
    only what stays local (the default seals file). Safe across threads (a small pool) and across
    processes and machines (the chain's advisory lock orders the appends). Nothing is connected
    until first used."""

    def __init__(self, url: str, folder: Path, clock: Callable[[], float] = time.time, *,
                 durable: bool = True, pool_size: int = 4) -> None:
        self.url, self.folder, self.clock, self.durable = url, Path(folder), clock, durable
        self.pool_size = pool_size
        self.signer = PgSigner(self._part, clock)
        self._pg: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def _part(self) -> Any:
        if self._pg is None:
            with self._lock:
                if self._pg is None:
                    import psycopg

                    from faceprint.store.pgshared import PgPart
                    from faceprint.store.postgres import StoreUnavailable

                    try:
                        self._pg = PgPart(self.url, PART, migrations(), clock=self.clock, pool_size=self.pool_size)
                    except (StoreUnavailable, psycopg.Error) as exc:
                        raise AuditUnavailable(UNAVAILABLE) from exc
        return self._pg

    # -- writing -------------------------------------------------------------------------------

    def append(self, entry: Entry) -> Record:
        """Record ``entry``: the next seq of the one chain, its head signed, committed before it
        returns. Raises :class:`AuditUnavailable` (never anything else) when it cannot be written."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[Entry]) -> list[Record]:
        """Record ``entries`` in order in one transaction; the records as stored."""
        return [Record(seq, Entry.from_fields(json.loads(body)), prev, hash_)
                for seq, body, prev, hash_ in self._write(list(entries))]

    def append_seq(self, entry: Entry) -> int:
        """:meth:`append`, answering only the new entry's seq."""
        return self._write([entry])[0][0]

    def _write(self, entries: list[Entry]) -> list[tuple[int, str, str, str]]:
        import psycopg

        if not entries:
            return []
        try:
            part = self._part()
            self.signer.key  # noqa: B018 - read (or made) before the chain's lock is taken
            with part.tx() as db:
                return self._append(db, entries)[-len(entries):]
        except (psycopg.Error, AuditUnavailable, OSError, ValueError, OverflowError) as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc

    def _append(self, db: Any, entries: list[Entry]) -> list[tuple[int, str, str, str]]:
        """Chain ``entries`` after the last stored one (under the chain's lock); where the stored
        chain does not end at its latest signed head, a :data:`BROKEN` entry saying so goes first.
        Two round trips: the lock with the chain's ends; the rows with the commit."""
        ends = db.execute(("" if self.durable else "SET LOCAL synchronous_commit = off; ") + LOCK_CHAIN + "; " + ENDS)
        while ends.nextset():  # to the last statement's result: the ends, read once the lock is held
            pass
        last_seq, last_hash, head_seq, head_hash = ends.fetchone()
        before = None if last_seq is None else (int(last_seq), last_hash)
        latest = None if head_seq is None else (int(head_seq), head_hash)
        if latest != before:
            entries = [self._broken(latest, before), *entries]
            end, end_hash = before or (0, GENESIS)
            db.execute("DELETE FROM audit_heads WHERE seq > %s OR (seq = %s AND hash != %s)", (end, end, end_hash))
        seq, prev = before or (0, GENESIS)
        written, rows = [], []
        for entry in entries:
            seq += 1
            body = canonical_json(entry.fields(seq))
            hash_ = link(prev, body)
            written.append((seq, body, prev, hash_))
            rows.append((seq, body, prev, hash_, *_cells(entry.columns(body))))
            prev = hash_
        retired, heads = self._sign_heads(before if latest == before else None, [(w[0], w[3]) for w in written])
        with db.pipeline():  # the rows and the commit in one round trip
            _store(db, rows, retired, heads)
            db.commit()
        return written

    def _broken(self, latest: tuple[int, str] | None, before: tuple[int, str] | None) -> Entry:
        now = float(self.clock())
        position = [None if p is None else {"Seq": p[0], "Hash": p[1]} for p in (latest, before)]
        return Entry(BROKEN, Caller("faceprint", "system"), now, now,
                     details={"SignedHead": position[0], "LastEntry": position[1]})

    def _sign_heads(self, before: tuple[int, str] | None,
                    heads: list[tuple[int, str]]) -> tuple[int | None, list[tuple[int, str, float, str]]]:
        """As the embedded log does: the new latest head with its MAC, checkpoints (every
        :data:`HEAD_EVERY`-th seq) signed with Ed25519; the latest head before (``before``) retires:
        signed again as a checkpoint where it is one, else removed. The seq of the head row to remove
        (None: none) and the head rows to write."""
        signed, retired, latest = head_rows(self.signer, float(self.clock()), before, heads)
        return retired, [*signed, latest]

    def delete_through(self, seq: int) -> int:
        """Remove the records up to ``seq`` and the heads they hold (retention's job: see
        ``faceprint.audit.retention``), then ``VACUUM`` the tables."""
        import psycopg

        try:
            with self._part().tx() as db:
                db.execute(LOCK_CHAIN)
                gone = db.execute("DELETE FROM audit_entries WHERE seq <= %s", (int(seq),)).rowcount
                db.execute("DELETE FROM audit_heads WHERE seq <= %s", (int(seq),))
            with self._part().tx() as db:
                db.autocommit = True
                try:
                    db.execute("VACUUM audit_entries")
                    db.execute("VACUUM audit_heads")
                finally:
                    db.autocommit = False
            return gone
        except psycopg.Error as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc

    def index(self) -> None:
        """Nothing to do: every entry's filter columns are written with it."""

    def sync(self) -> None:
        """Everything appended so far on the server's disk: a transaction that commits with
        ``synchronous_commit`` on waits for the WAL up to it, the commits before it included."""
        import psycopg

        try:
            with self._part().tx() as db:
                db.execute("SET LOCAL synchronous_commit = on")
                db.execute("SELECT txid_current()")
        except psycopg.Error as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc

    # -- reading -------------------------------------------------------------------------------

    def get(self, seq: int) -> Record | None:
        row = self._one(SELECT + " WHERE seq = %s", (int(seq),))
        return Record.from_row(*row) if row else None

    def head(self) -> tuple[int, str]:
        """The last seq and its hash; ``(0, GENESIS)`` when the log is empty."""
        row = self._one("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1", ())
        return (int(row[0]), row[1]) if row else (0, GENESIS)

    def first_seq(self) -> int | None:
        row = self._one("SELECT min(seq) FROM audit_entries", ())
        return None if row is None or row[0] is None else int(row[0])

    def count(self) -> int:
        return int(self._one("SELECT count(*) FROM audit_entries", ())[0])

    def count_through(self, seq: int) -> int:
        return int(self._one("SELECT count(*) FROM audit_entries WHERE seq <= %s", (int(seq),))[0])

    def first_started_since(self, since: float) -> int | None:
        found = self.query(AuditFilter(since=float(since)), limit=1)
        return found[0].seq if found else None

    def last_before(self, seq: int) -> int | None:
        row = self._one("SELECT max(seq) FROM audit_entries WHERE seq < %s", (int(seq),))
        return None if row is None or row[0] is None else int(row[0])

    def query(self, filters: AuditFilter = EVERYTHING, after: int = 0, limit: int = 1000) -> list[Record]:
        """Up to ``limit`` records after seq ``after`` that match ``filters``, in seq order."""
        parts, params = filters.where()
        if not all(_searchable(p) for p in params):
            return []
        where = " AND ".join(["seq > %s", *[p.replace("?", "%s") for p in parts]])
        rows = self._all(f"{SELECT} WHERE {where} ORDER BY seq LIMIT %s", (int(after), *params, int(limit)))
        return [Record.from_row(*row) for row in rows]

    def records(self, start: int = 0) -> Iterator[Record]:
        for seq, body, prev_hash, hash_, *_ in self.rows(start):
            yield Record.from_row(seq, body, prev_hash, hash_)

    def rows(self, start: int = 0) -> Iterator[tuple]:
        """The stored rows from seq ``start`` on: (seq, body, prev_hash, hash, started, operation,
        actor, collection_id, case_ref), a page at a time."""
        after = int(start) - 1
        while True:
            page = self._all("SELECT seq, body, prev_hash, hash, started, operation, actor, collection_id, case_ref "
                             "FROM audit_entries WHERE seq > %s ORDER BY seq LIMIT %s", (after, PAGE))
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def index_top(self) -> int:
        """The last seq (every entry's filter columns are in its row)."""
        return self.head()[0]

    def signed_heads(self) -> list[SignedHead]:
        return [SignedHead(int(s), h, float(t), sig)
                for s, h, t, sig in self._all("SELECT seq, hash, time, signature FROM audit_heads ORDER BY seq", ())]

    def latest_head(self) -> SignedHead | None:
        row = self._one("SELECT seq, hash, time, signature FROM audit_heads ORDER BY seq DESC LIMIT 1", ())
        return self.ed25519(SignedHead(int(row[0]), row[1], float(row[2]), row[3])) if row else None

    def ed25519(self, head: SignedHead) -> SignedHead:
        """``head`` as the latest head, signed with Ed25519 (itself where it is)."""
        return signed_latest(self.signer, head)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside (on this thread) see the log as of one moment: one REPEATABLE READ
        transaction, so that entries appended meanwhile by any node do not show."""
        import psycopg

        if getattr(self._local, "db", None) is not None:
            yield
            return
        with ExitStack() as stack:
            try:
                db = stack.enter_context(self._part().tx())
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            except psycopg.Error as exc:
                raise AuditUnavailable(UNREADABLE) from exc
            self._local.db = db
            try:
                yield
            finally:
                self._local.db = None

    def close(self) -> None:
        """Close the pool (a later call opens it again)."""
        with self._lock:
            pg, self._pg = self._pg, None
        if pg is not None:
            pg.close()

    # -- the database ----------------------------------------------------------------------------

    def _one(self, sql: str, params: tuple) -> tuple | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _all(self, sql: str, params: tuple) -> list[tuple]:
        import psycopg

        try:
            db = getattr(self._local, "db", None)
            if db is not None:
                return db.execute(sql, params).fetchall()
            return self._part().rows(sql, params)
        except psycopg.Error as exc:
            raise AuditUnavailable(UNREADABLE) from exc
