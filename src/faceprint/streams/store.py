"""The stream processor store: one SQLite database (WAL) at ``HOME/streams/processors.db``, shared by
every process using the home (the API that creates and starts processors, the host that runs them,
the server's Server-Sent Events).

The API writes what is *wanted* (``desired``, with ``generation`` bumped at each start, stop and
update) through :meth:`ProcessorStore.transition`, one transaction that checks the status first;
the host writes what *is* (:meth:`set_status`, conditional on the generation it applied, and
:meth:`set_health`). Each processor keeps its last ``EVENT_RING`` records and alerts for SSE
clients (:meth:`add_events`, :meth:`events_after`). Rows hold ARNs and settings, never a camera URL
or a sink spec. Deleted rows and events are erased as the main store's faces are (``secure_delete``,
and the WAL emptied after a delete).

With the PostgreSQL store the same lives in the database, shared by every node
(:class:`faceprint.streams.store_pg.PgProcessorStore`, same methods): :func:`open_processor_store`
picks one.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from faceprint.errors import LimitExceededException, ResourceInUseException, ResourceNotFoundException
from faceprint.store.database import Database
from faceprint.streams.types import FAILED, RUNNING, STOPPED, ProcessorRow

EVENT_RING = 1000
"""Events (records and alerts) kept per processor for SSE clients."""
ERASE_EVERY = 5.0
"""Seconds between WAL erasures after the ring dropped events: copies of dropped events left in the
WAL (page images from before the trim) are gone within about this long."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS processors (
    name TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    request TEXT NOT NULL,             -- Rekognition's members as created/updated (JSON): ARNs, settings
    desired TEXT NOT NULL,             -- RUNNING or STOPPED
    generation INTEGER NOT NULL,
    session_id TEXT,
    start_selector TEXT,               -- JSON or NULL
    stop_selector TEXT,                -- JSON or NULL
    started_at REAL,
    health TEXT NOT NULL               -- JSON, written by the host
);
CREATE INDEX IF NOT EXISTS processors_wanted ON processors(desired);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: an SSE client's Last-Event-ID stays good
    name TEXT NOT NULL,
    kind TEXT NOT NULL,                      -- record | alert
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_name ON events(name, seq);
"""

_NAMES = tuple(f.name for f in dataclasses.fields(ProcessorRow))
_COLUMNS = ", ".join(_NAMES)
_JSON = frozenset({"request", "start_selector", "stop_selector", "health"})


def _from_db(row: tuple) -> ProcessorRow:
    values = {name: json.loads(v) if name in _JSON and v is not None else v
              for name, v in zip(_NAMES, row, strict=True)}
    return ProcessorRow(**values)


def _to_db(row: ProcessorRow) -> tuple:
    return tuple(json.dumps(getattr(row, n)) if n in _JSON and getattr(row, n) is not None else getattr(row, n)
                 for n in _NAMES)


def is_shared(store_url: str | None) -> bool:
    """Whether ``store_url`` names PostgreSQL (``faceprint.backends.is_postgres``): then the
    processors live there, shared by every node."""
    from faceprint.backends import is_postgres

    return is_postgres(store_url)


def open_processor_store(home: Path, store_url: str | None, *, node: str | None = None,
                         existing: bool = False) -> Any:
    """The processor store of ``home``: in PostgreSQL when ``store_url`` names it
    (:class:`faceprint.streams.store_pg.PgProcessorStore`, ``node`` the stream host's node id
    whose writes its leases fence), else :class:`ProcessorStore` at ``HOME/streams/processors.db``
    (with ``existing``: None when that file does not exist)."""
    from faceprint.home import private_folder
    from faceprint.streams.config import STREAMS_DIR, streams_folder

    if is_shared(store_url):
        from faceprint.streams.store_pg import PgProcessorStore

        return PgProcessorStore(store_url, node=node)
    if existing:
        path = Path(home) / STREAMS_DIR / "processors.db"
        return ProcessorStore(path) if path.is_file() else None
    return ProcessorStore(streams_folder(private_folder(Path(home))) / "processors.db")


class ProcessorStore:
    """Stream processors and their recent events in SQLite at ``path``. Thread-safe (a connection per
    thread) and shared by processes (SQLite's locks; writes are ``BEGIN IMMEDIATE`` transactions)."""

    shared = False
    """One home's: its one stream host (the home's host lock) runs every processor."""

    def __init__(self, path: Path | str, *, erase_every: float = ERASE_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._database = Database(self.path, SCHEMA)  # private files, secure_delete, WAL
        self._tuned = threading.local()
        self.erase_every, self._clock = erase_every, clock
        self._erased = clock()

    def _db(self) -> sqlite3.Connection:
        db = self._database.db()
        if getattr(self._tuned, "db", None) is not db:
            # events come several times a second: a commit need not wait for the disk (WAL keeps the
            # database whole if the process dies; a power cut may lose the last events, never more)
            db.execute("PRAGMA synchronous=NORMAL")
            self._tuned.db = db
        return db

    def _tx(self):  # noqa: ANN202 (a context manager)
        self._db()
        return self._database.tx()

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's storage goes)."""
        self._database.close()

    # -- processors ----------------------------------------------------------------------------------

    def insert(self, row: ProcessorRow, max_processors: int) -> None:
        """Add ``row``: ``ResourceInUseException`` if its name is taken, ``LimitExceededException`` if
        ``max_processors`` exist already (one transaction: concurrent creates cannot pass the cap)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM processors WHERE name = ?", (row.name,)).fetchone():
                raise ResourceInUseException(f"A stream processor named {row.name} already exists.")
            (count,) = db.execute("SELECT COUNT(*) FROM processors").fetchone()
            if count >= max_processors:
                raise LimitExceededException(
                    f"{count} stream processors exist; at most {max_processors} may. Delete one first.")
            db.execute(f"INSERT INTO processors ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))})", _to_db(row))

    def get(self, name: str) -> ProcessorRow | None:
        found = self._db().execute(f"SELECT {_COLUMNS} FROM processors WHERE name = ?", (name,)).fetchone()
        return _from_db(found) if found else None

    def page(self, after: str | None, limit: int) -> list[ProcessorRow]:
        """Up to ``limit`` processors by name, from the first after ``after`` (None: the first)."""
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM processors WHERE name > ? ORDER BY name LIMIT ?",
                                  (after or "", limit)).fetchall()
        return [_from_db(r) for r in rows]

    def all(self) -> list[ProcessorRow]:
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM processors ORDER BY name").fetchall()
        return [_from_db(r) for r in rows]

    def wanted(self) -> list[ProcessorRow]:
        """The processors the API wants running (``desired`` RUNNING), by name."""
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM processors WHERE desired = ? ORDER BY name",
                                  (RUNNING,)).fetchall()
        return [_from_db(r) for r in rows]

    def delete(self, name: str, allowed: Collection[str] | None = None) -> bool:
        """Delete the processor and its events; False if there was none. With ``allowed``, only a
        processor in one of those statuses: ``ResourceInUseException`` otherwise (checked in the
        deleting transaction)."""
        with self._tx() as db:
            found = db.execute("SELECT status FROM processors WHERE name = ?", (name,)).fetchone()
            if found is None:
                return False
            if allowed is not None and found[0] not in allowed:
                raise ResourceInUseException(_in_use(name, found[0], allowed))
            db.execute("DELETE FROM events WHERE name = ?", (name,))
            db.execute("DELETE FROM processors WHERE name = ?", (name,))
        self._database.erase_wal()
        return True

    def transition(self, name: str, allowed: Collection[str], **changes: Any) -> ProcessorRow:
        """In one transaction: ``ResourceNotFoundException`` if there is no processor ``name``,
        ``ResourceInUseException`` (naming its status) unless its status is in ``allowed``; else
        ``changes`` (ProcessorRow fields; a callable value is called with the row as it was) are
        written, with ``updated`` set to ``changes["updated"]`` or now. Answers the new row."""
        unknown = set(changes) - set(_NAMES) or set(changes) & {"name", "arn", "created"}
        if unknown:
            raise TypeError(f"transition cannot change {sorted(unknown)}")
        with self._tx() as db:
            found = db.execute(f"SELECT {_COLUMNS} FROM processors WHERE name = ?", (name,)).fetchone()
            if found is None:
                raise ResourceNotFoundException(f"The stream processor {name} does not exist.")
            old = _from_db(found)
            if old.status not in allowed:
                raise ResourceInUseException(_in_use(name, old.status, allowed))
            values = {k: v(old) if callable(v) else v for k, v in changes.items()}
            values.setdefault("updated", time.time())
            new = dataclasses.replace(old, **values)
            self._write(db, new)
        return new

    @staticmethod
    def _write(db: sqlite3.Connection, row: ProcessorRow) -> None:
        names = [n for n in _NAMES if n != "name"]
        values = dict(zip(_NAMES, _to_db(row), strict=True))
        db.execute(f"UPDATE processors SET {', '.join(f'{n} = ?' for n in names)} WHERE name = ?",
                   (*(values[n] for n in names), row.name))

    def set_status(self, name: str, status: str, message: str | None, *, generation: int | None = None) -> bool:
        """The host's write of what a processor does now. With ``generation``, only if the row's
        generation is still that one (else the API asked for something new meanwhile: False,
        nothing written). STOPPED and FAILED also set ``desired`` to STOPPED: a processor that
        stopped or failed is not restarted until it is started again. False if there is no row."""
        updates = "status = ?, status_message = ?, updated = CASE WHEN status = ? THEN updated ELSE ? END"
        params: list[Any] = [status, message, status, time.time()]
        if status in (STOPPED, FAILED):
            updates += ", desired = ?"
            params.append(STOPPED)
        where = "name = ?" + ("" if generation is None else " AND generation = ?")
        params += [name] if generation is None else [name, generation]
        with self._tx() as db:
            changed = db.execute(f"UPDATE processors SET {updates} WHERE {where}", params).rowcount
        return changed > 0

    def mapped_elsewhere(self, kind: str, name: str) -> bool:
        """Whether another node's stream host resolves the stream ``name`` (one home: none does)."""
        return False

    def set_health(self, name: str, health: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE processors SET health = ? WHERE name = ?", (json.dumps(health), name))

    # -- events (for Server-Sent Events) --------------------------------------------------------------

    def add_events(self, name: str, events: list[tuple[str, str]]) -> None:
        """Append ``(kind, json text)`` events of processor ``name``, keeping its last ``EVENT_RING``;
        none for a processor that does not exist (deleted while its sinks still delivered: a delete
        erases). Events dropped from the ring leave no copy in the WAL for long (``erase_every``)."""
        if not events:
            return
        with self._tx() as db:
            db.executemany("INSERT INTO events (name, kind, body) SELECT ?, ?, ? "
                           "WHERE EXISTS (SELECT 1 FROM processors WHERE name = ?)",
                           ((name, kind, body, name) for kind, body in events))
            trimmed = db.execute("DELETE FROM events WHERE name = ? AND seq <= (SELECT seq FROM events WHERE "
                                 "name = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)", (name, name, EVENT_RING)).rowcount
        if trimmed and self._clock() - self._erased >= self.erase_every:
            self._erased = self._clock()
            self._database.erase_wal(0.0)  # not waiting: if readers hold the WAL, the next write tries again

    def events_after(self, name: str, seq: int, limit: int = 200) -> list[tuple[int, str, str]]:
        """Processor ``name``'s events after ``seq`` (oldest first, at most ``limit``): ``(seq, kind, json)``."""
        rows = self._db().execute("SELECT seq, kind, body FROM events WHERE name = ? AND seq > ? ORDER BY seq "
                                  "LIMIT ?", (name, seq, limit)).fetchall()
        return [(int(s), str(k), str(b)) for s, k, b in rows]

    def erase_events(self, needles: list[str], names: Callable[[Any], bool]) -> int:
        """Delete every processor's events that hold one of ``needles`` (text) and that ``names``
        confirms (given the parsed body): an erased person's matches (``faceprint.erasure``); the
        WAL is emptied after. Answers how many events were deleted."""
        if not needles:
            return 0
        with self._tx() as db:
            seqs: set[int] = set()
            for needle in needles:
                seqs.update(r[0] for r in db.execute("SELECT seq FROM events WHERE instr(body, ?) > 0", (needle,)))
            doomed = [seq for seq in sorted(seqs) if names(json.loads(db.execute(
                "SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()[0]))]
            db.executemany("DELETE FROM events WHERE seq = ?", ((seq,) for seq in doomed))
        if doomed:
            self._database.erase_wal()
        return len(doomed)

    def all_events(self) -> list[tuple[int, str, str, str]]:
        """Every processor's kept events, oldest first: ``(seq, name, kind, json)`` (for ``faceprint migrate``)."""
        rows = self._db().execute("SELECT seq, name, kind, body FROM events ORDER BY seq").fetchall()
        return [(int(s), str(n), str(k), str(b)) for s, n, k, b in rows]

    def last_seq(self, name: str) -> int:
        """The seq of processor ``name``'s last event (0 if none): an SSE client starting now waits for more."""
        (found,) = self._db().execute("SELECT MAX(seq) FROM events WHERE name = ?", (name,)).fetchone()
        return int(found or 0)


def _in_use(name: str, status: str, allowed: Collection[str]) -> str:
    return (f"The stream processor {name} is {status}; this needs it to be "
            f"{' or '.join(sorted(allowed))}.")


ChangeFn = Callable[[ProcessorRow], Any]
"""A ``transition`` change computed from the row as it was (``generation=lambda r: r.generation + 1``)."""
