"""The audit log's filter index: the columns that queries filter on (time, actor, operation,
collection, case), kept beside the chain in ``entry_columns`` and filled in batches.

An append writes its entry to the narrow ``entries`` table alone (seq, body, prev_hash, hash: one
b-tree), so that its write transaction touches one table page and the latest head's, not five
index leaves besides. Every :data:`INDEX_EVERY` entries an append also indexes the entries
written since the last batch (their columns as the appending process knew them, or read from
their bodies for entries another process wrote), in the same transaction. The index therefore
ends at ``max(seq)`` of ``entry_columns`` (its *top*); a query reads the indexed entries through
the index and filters the few after its top by reading their bodies, so it misses nothing.
``faceprint.audit.verify`` checks each indexed row against its entry and reports an entry at or
under the top that has no row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from faceprint.audit.records import AuditFilter

INDEX_EVERY = 128
"""An append indexes the entries written since the last batch once there are this many."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS entry_columns (
    seq INTEGER PRIMARY KEY,
    started REAL,
    operation TEXT,
    actor TEXT,
    collection_id TEXT,
    case_ref TEXT
);
CREATE INDEX IF NOT EXISTS columns_started ON entry_columns(started);
CREATE INDEX IF NOT EXISTS columns_actor ON entry_columns(actor, seq);
CREATE INDEX IF NOT EXISTS columns_operation ON entry_columns(operation, seq);
CREATE INDEX IF NOT EXISTS columns_collection ON entry_columns(collection_id, seq);
CREATE INDEX IF NOT EXISTS columns_case ON entry_columns(case_ref, seq);
"""

TOP = "SELECT max(seq) FROM entry_columns"
INSERT = ("INSERT OR REPLACE INTO entry_columns (seq, started, operation, actor, collection_id, case_ref) "
          "VALUES (?, ?, ?, ?, ?, ?)")
WIDE = ("started", "operation", "actor", "collection_id", "case_ref")
"""The columns the first layout kept in ``entries`` itself (with an index each)."""

Columns = tuple[Any, Any, Any, Any, Any]
"""(started, operation, actor, collection_id, case_ref) of one entry."""


def migrate(db: sqlite3.Connection) -> None:
    """Move a log of the first layout (the columns in ``entries``) to this one: the columns into
    ``entry_columns``, the chain into a narrow ``entries``; one transaction, nothing else changes."""
    if not _wide(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not _wide(db):  # another process moved it meanwhile
            db.execute("ROLLBACK")
            return
        db.execute("INSERT OR REPLACE INTO entry_columns SELECT seq, started, operation, actor, collection_id, "
                   "case_ref FROM entries")
        db.execute("CREATE TABLE entries_narrow (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, "
                   "prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")
        db.execute("INSERT INTO entries_narrow SELECT seq, body, prev_hash, hash FROM entries")
        db.execute("DROP TABLE entries")
        db.execute("ALTER TABLE entries_narrow RENAME TO entries")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _wide(db: sqlite3.Connection) -> bool:
    return set(WIDE) <= {row[1] for row in db.execute("PRAGMA table_info(entries)")}


def of_body(body: Any) -> Columns:
    """The columns of a stored body (all None where it is not an entry: verify names it)."""
    try:
        fields = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return (None, None, None, None, None)
    if not isinstance(fields, dict):
        return (None, None, None, None, None)
    return tuple(_plain(fields.get(k)) for k in ("Started", "Operation", "Actor", "CollectionId", "Case"))


def _plain(value: Any) -> Any:
    """A value SQLite can hold (an edited body may hold lists or objects where texts belong)."""
    return value if value is None or isinstance(value, (str, int, float)) else json.dumps(value)


def catch_up(db: sqlite3.Connection, top: int, known: Callable[[int, str], Columns | None]) -> int:
    """Index the entries after ``top`` (inside the caller's write transaction): their columns as
    ``known(seq, hash)`` gives them, else read from their bodies. The new top."""
    rows = db.execute("SELECT seq, hash FROM entries WHERE seq > ? ORDER BY seq", (top,)).fetchall()
    out = []
    for seq, hash_ in rows:
        columns = known(seq, hash_)
        if columns is None:
            body = db.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
            columns = of_body(body)
        out.append((seq, *columns))
    if out:
        db.executemany(INSERT, out)
    return out[-1][0] if out else top


def matches(filters: AuditFilter, columns: Columns) -> bool:
    """Whether an entry with ``columns`` is one ``filters`` asks for (as the SQL of
    :meth:`AuditFilter.where` decides it for an indexed one)."""
    started, operation, actor, collection_id, case = columns
    if filters.since is not None or filters.until is not None:
        if not isinstance(started, (int, float)) or isinstance(started, bool):
            return False
        if filters.since is not None and not started >= float(filters.since):
            return False
        if filters.until is not None and not started <= float(filters.until):
            return False
    return all(want is None or want == have for want, have in ((filters.actor, actor), (filters.operation, operation),
                                                               (filters.collection_id, collection_id),
                                                               (filters.case, case)))


def tail(rows: Iterable[tuple], filters: AuditFilter) -> list[tuple]:
    """The rows (seq, body, prev_hash, hash) past the index's top that ``filters`` match."""
    return [row for row in rows if matches(filters, of_body(row[1]))]
