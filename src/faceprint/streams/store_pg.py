"""The stream processor store in PostgreSQL (part ``streams`` of ``faceprint.store.pgshared``): what
``HOME/streams/processors.db`` holds on one machine, shared by every node when the store is
PostgreSQL. :class:`PgProcessorStore` has :class:`faceprint.streams.store.ProcessorStore`'s public
methods and behaviour (``tests/test_streams_store.py`` runs the same tests against both).

Tables: ``streams_processors`` (the rows, plus the lease columns ``lease_node`` and
``lease_expires`` that :mod:`faceprint.streams.leases` writes), ``streams_events`` (each
processor's last ``EVENT_RING`` records and alerts) and ``streams_hosts`` (each live stream host's
heartbeat and the *names* of the streams it can resolve; never a URL). Times of leases and
heartbeats are the database's clock, so nodes' clocks need not agree.

A store opened with ``node`` (a stream host's) is *fenced*: its status and health writes land only
while no other node holds the processor's lease, so a host cut off from the database that comes
back after its lease lapsed never overwrites what the new holder wrote.

Erasure: deleted rows and events are pruned by autovacuum (the events table is set to be visited
after any delete) and :meth:`PgProcessorStore.erase_events` runs VACUUM at once; WAL segments and
backups keep what they kept, as for the face store (docs/scale.md).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Collection
from typing import Any

import psycopg

from faceprint.errors import LimitExceededException, ResourceInUseException, ResourceNotFoundException
from faceprint.store.migrations import Migration
from faceprint.store.pgshared import PgPart, statements
from faceprint.streams.leases import NOW
from faceprint.streams.store import _COLUMNS, _NAMES, EVENT_RING, _from_db, _in_use, _to_db
from faceprint.streams.types import FAILED, RUNNING, STOPPED, ProcessorRow

PART = "streams"
INSERT_LOCK = 0x5f5e_0001
"""Advisory lock serialising creates (the ``max_processors`` cap holds across nodes)."""

SCHEMA_V1 = """
CREATE TABLE streams_processors (
    name TEXT COLLATE "C" PRIMARY KEY,
    arn TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    request TEXT NOT NULL,
    desired TEXT NOT NULL,
    generation INTEGER NOT NULL,
    session_id TEXT,
    start_selector TEXT,
    stop_selector TEXT,
    started_at DOUBLE PRECISION,
    health TEXT NOT NULL,
    lease_node TEXT,
    lease_expires DOUBLE PRECISION
);
CREATE INDEX streams_processors_wanted ON streams_processors(desired);
CREATE TABLE streams_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1);
CREATE INDEX streams_events_by_name ON streams_events(name, seq);
CREATE TABLE streams_hosts (
    node TEXT PRIMARY KEY,
    seen DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    sources TEXT NOT NULL,
    data_streams TEXT NOT NULL
);
ALTER TABLE streams_processors SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1);
"""
MIGRATIONS = [Migration(1, "stream processors, their events, leases and hosts", statements(SCHEMA_V1))]


class PgProcessorStore:
    """Stream processors and their recent events in the PostgreSQL database ``url`` names (see the
    module's docstring); ``node``: the stream host's node id whose writes are fenced by its leases."""

    shared = True
    """Several nodes share it: leases decide which host runs a processor."""

    def __init__(self, url: str, *, node: str | None = None, clock: Callable[[], float] = time.time,
                 pool_size: int = 4) -> None:
        self.url, self.node = url, node
        self.part = PgPart(url, PART, MIGRATIONS, clock=clock, pool_size=pool_size)

    def close(self) -> None:
        self.part.close()

    # -- processors ----------------------------------------------------------------------------------

    def insert(self, row: ProcessorRow, max_processors: int) -> None:
        with self.part.tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (INSERT_LOCK,))
            if db.execute("SELECT 1 FROM streams_processors WHERE name = %s", (row.name,)).fetchone():
                raise ResourceInUseException(f"A stream processor named {row.name} already exists.")
            (count,) = db.execute("SELECT COUNT(*) FROM streams_processors").fetchone()
            if count >= max_processors:
                raise LimitExceededException(
                    f"{count} stream processors exist; at most {max_processors} may. Delete one first.")
            db.execute(f"INSERT INTO streams_processors ({_COLUMNS}) VALUES ({', '.join(['%s'] * len(_NAMES))})",
                       _to_db(row))

    def get(self, name: str) -> ProcessorRow | None:
        found = self.part.one(f"SELECT {_COLUMNS} FROM streams_processors WHERE name = %s", (name,))
        return _from_db(found) if found else None

    def page(self, after: str | None, limit: int) -> list[ProcessorRow]:
        rows = self.part.rows(f"SELECT {_COLUMNS} FROM streams_processors WHERE name > %s ORDER BY name LIMIT %s",
                              (after or "", limit))
        return [_from_db(r) for r in rows]

    def all(self) -> list[ProcessorRow]:
        return [_from_db(r) for r in self.part.rows(f"SELECT {_COLUMNS} FROM streams_processors ORDER BY name")]

    def wanted(self) -> list[ProcessorRow]:
        rows = self.part.rows(f"SELECT {_COLUMNS} FROM streams_processors WHERE desired = %s ORDER BY name",
                              (RUNNING,))
        return [_from_db(r) for r in rows]

    def delete(self, name: str, allowed: Collection[str] | None = None) -> bool:
        with self.part.tx() as db:
            found = db.execute("SELECT status FROM streams_processors WHERE name = %s FOR UPDATE", (name,)).fetchone()
            if found is None:
                return False
            if allowed is not None and found[0] not in allowed:
                raise ResourceInUseException(_in_use(name, found[0], allowed))
            db.execute("DELETE FROM streams_events WHERE name = %s", (name,))
            db.execute("DELETE FROM streams_processors WHERE name = %s", (name,))
        return True

    def transition(self, name: str, allowed: Collection[str], **changes: Any) -> ProcessorRow:
        unknown = set(changes) - set(_NAMES) or set(changes) & {"name", "arn", "created"}
        if unknown:
            raise TypeError(f"transition cannot change {sorted(unknown)}")
        with self.part.tx() as db:
            found = db.execute(f"SELECT {_COLUMNS} FROM streams_processors WHERE name = %s FOR UPDATE",
                               (name,)).fetchone()
            if found is None:
                raise ResourceNotFoundException(f"The stream processor {name} does not exist.")
            old = _from_db(found)
            if old.status not in allowed:
                raise ResourceInUseException(_in_use(name, old.status, allowed))
            values = {k: v(old) if callable(v) else v for k, v in changes.items()}
            values.setdefault("updated", time.time())
            new = dataclasses.replace(old, **values)
            names = [n for n in _NAMES if n != "name"]
            stored = dict(zip(_NAMES, _to_db(new), strict=True))
            db.execute(f"UPDATE streams_processors SET {', '.join(f'{n} = %s' for n in names)} WHERE name = %s",
                       (*(stored[n] for n in names), name))
        return new

    def set_status(self, name: str, status: str, message: str | None, *, generation: int | None = None) -> bool:
        updates = "status = %s, status_message = %s, updated = CASE WHEN status = %s THEN updated ELSE %s END"
        params: list[Any] = [status, message, status, time.time()]
        if status in (STOPPED, FAILED):
            updates += ", desired = %s"
            params.append(STOPPED)
        where, args = self._where(name, generation)
        return self.part.execute(f"UPDATE streams_processors SET {updates} WHERE {where}", params + args) > 0

    def set_health(self, name: str, health: dict[str, Any]) -> None:
        where, args = self._where(name, None)
        self.part.execute(f"UPDATE streams_processors SET health = %s WHERE {where}", [json.dumps(health), *args])

    def _where(self, name: str, generation: int | None) -> tuple[str, list[Any]]:
        where, args = "name = %s", [name]
        if generation is not None:
            where += " AND generation = %s"
            args.append(generation)
        if self.node is not None:  # fenced: not while another node holds the lease
            where += f" AND (lease_node IS NULL OR lease_node = %s OR lease_expires < {NOW})"
            args.append(self.node)
        return where, args

    # -- what the API asks of the other nodes --------------------------------------------------------

    def host_running(self) -> bool:
        """Whether some node's stream host is alive (its heartbeat not expired)."""
        return self.part.one(f"SELECT 1 FROM streams_hosts WHERE expires > {NOW} LIMIT 1") is not None

    def mapped_elsewhere(self, kind: str, name: str) -> bool:
        """Whether a live host resolves the stream (``kind`` "sources") or data stream ("data_streams")
        ``name``: hosts publish the names of their maps, never the URLs or sinks."""
        column = {"sources": "sources", "data_streams": "data_streams"}[kind]
        for (names,) in self.part.rows(f"SELECT {column} FROM streams_hosts WHERE expires > {NOW}"):
            if name in json.loads(names):
                return True
        return False

    # -- events (for Server-Sent Events) --------------------------------------------------------------

    def add_events(self, name: str, events: list[tuple[str, str]]) -> None:
        if not events:
            return
        with self.part.tx() as db, db.cursor() as cursor:
            cursor.executemany("INSERT INTO streams_events (name, kind, body) SELECT %s, %s, %s "
                               "WHERE EXISTS (SELECT 1 FROM streams_processors WHERE name = %s)",
                               [(name, kind, body, name) for kind, body in events])
            cursor.execute("DELETE FROM streams_events WHERE name = %s AND seq <= (SELECT seq FROM streams_events "
                           "WHERE name = %s ORDER BY seq DESC LIMIT 1 OFFSET %s)", (name, name, EVENT_RING))

    def events_after(self, name: str, seq: int, limit: int = 200) -> list[tuple[int, str, str]]:
        rows = self.part.rows("SELECT seq, kind, body FROM streams_events WHERE name = %s AND seq > %s ORDER BY seq "
                              "LIMIT %s", (name, seq, limit))
        return [(int(s), str(k), str(b)) for s, k, b in rows]

    def erase_events(self, needles: list[str], names: Callable[[Any], bool]) -> int:
        if not needles:
            return 0
        with self.part.tx() as db:
            seqs: set[int] = set()
            for needle in needles:
                seqs.update(r[0] for r in db.execute("SELECT seq FROM streams_events WHERE strpos(body, %s) > 0",
                                                     (needle,)))
            doomed = [seq for seq in sorted(seqs) if names(json.loads(db.execute(
                "SELECT body FROM streams_events WHERE seq = %s", (seq,)).fetchone()[0]))]
            db.execute("DELETE FROM streams_events WHERE seq = ANY(%s)", (doomed,))
        if doomed:
            with psycopg.connect(self.url, autocommit=True) as db:
                db.execute("VACUUM streams_events")
        return len(doomed)

    def last_seq(self, name: str) -> int:
        found = self.part.one("SELECT MAX(seq) FROM streams_events WHERE name = %s", (name,))
        return int(found[0] or 0) if found else 0


def copy_processors(source: Any, target: PgProcessorStore) -> dict[str, int]:
    """Move an embedded home's processors and their events (``source``: its ``ProcessorStore``, its
    host stopped) into ``target`` (``faceprint migrate``), in one transaction: rows as stored (wanted
    ones resume on the nodes' hosts; one left STOPPING is STOPPED, its host being gone), no lease,
    and the events with their seqs (an SSE client's Last-Event-ID stays good; new events follow
    them). ``InvalidParameterException`` if ``target`` holds processors already. Answers
    ``{"Processors", "Events"}``."""
    from faceprint.errors import InvalidParameterException
    from faceprint.streams.types import STOPPING

    rows = [dataclasses.replace(r, status=STOPPED, desired=STOPPED) if r.status == STOPPING else r
            for r in source.all()]
    events = source.all_events()
    with target.part.tx() as db:
        if db.execute("SELECT EXISTS (SELECT 1 FROM streams_processors)").fetchone()[0]:
            raise InvalidParameterException("The PostgreSQL store holds stream processors already: nothing was moved.")
        with db.cursor() as cursor:
            cursor.executemany(f"INSERT INTO streams_processors ({_COLUMNS}) VALUES "
                               f"({', '.join(['%s'] * len(_NAMES))})", [_to_db(r) for r in rows])
            cursor.executemany("INSERT INTO streams_events (seq, name, kind, body) OVERRIDING SYSTEM VALUE "
                               "VALUES (%s, %s, %s, %s)", events)
        if events:
            db.execute("SELECT setval(pg_get_serial_sequence('streams_events', 'seq'), %s)", (events[-1][0],))
    return {"Processors": len(rows), "Events": len(events)}
