"""Which stream host runs which processor.

On one machine (the SQLite store) the home's one host (its host lock) runs every wanted processor:
:class:`LocalLeases`. With the PostgreSQL store every node's host looks at the same processors, and
each wanted processor is held by one host at a time through a *lease* (:class:`PgLeases`): the
columns ``lease_node`` and ``lease_expires`` of its row, dated by the database's clock.

- A host beats every ``ttl / 3`` seconds: its row in ``streams_hosts`` (live until ``ttl`` after
  its last beat) with the *names* of the streams and data streams it can resolve (never a URL), and
  the renewal of the leases of the processors it runs (or is stopping).
- It takes wanted processors that nobody holds or whose lease lapsed (``FOR UPDATE SKIP LOCKED``:
  hosts claiming at once never take the same one), at most ``ceil(wanted / live hosts)`` in all
  (balance), only those whose camera and data stream it can resolve. Beyond the balance it takes
  one left free for ``ttl`` (the hosts with room do not map its camera), and one that no live
  host has mapped for ``ORPHAN_LEASES`` lease times (to fail it with the reason, as on one machine;
  not at once: the node that maps it may be restarting).
- A host that finds a processor it runs leased to another (its lease lapsed and was taken: the host
  was cut off or paused) stops that run at once without writing its status; its store is fenced
  (``PgProcessorStore(node=...)``) so it cannot overwrite the new holder's writes.
- A host that cannot reach the database for ``ttl`` stops all its runs (others take them), and a
  stopping host releases its leases and its heartbeat, so others take its processors at their
  next look rather than at the lease's expiry.

A host's node id is kept in ``HOME/streams/node-id``: a host restarted on the same home (its runner
restarts it after a crash) takes its own leases back at once.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from faceprint.streams.types import FAILED, RUNNING, STOPPED, ProcessorRow

NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
"""The database's clock (seconds since the epoch) in SQL: leases and heartbeats are dated by it."""
LEASE_TTL = 15.0
"""Seconds a lease and a heartbeat last after their last renewal (renewed every third of it)."""
NODE_FILE = "node-id"
ORPHAN_LEASES = 4
"""A processor that no live host maps is failed (with the reason) once it has waited this many lease
times (60 s by default): the node that maps it may be restarting."""
FORGET_AFTER = 3600.0
"""Seconds after which a dead host's heartbeat row is deleted."""


def wanted(row: ProcessorRow) -> bool:
    """Whether ``row`` should run (and so be held by some host)."""
    return row.desired == RUNNING and row.status not in (STOPPED, FAILED)


class LocalLeases:
    """One home, one host (its host lock): every processor is this host's."""

    ttl = math.inf

    def settle(self, rows: Mapping[str, ProcessorRow], busy: Collection[str],
               resolvable: Callable[[ProcessorRow], bool]) -> tuple[set[str], set[str]]:
        """The names this host may run, and those another host holds (here: all, none)."""
        return set(rows), set()

    def elsewhere(self, row: ProcessorRow) -> bool:
        """Whether another live host resolves ``row``'s camera and data stream (here: there is none)."""
        return False

    def lapsed(self) -> bool:
        return False

    def close(self) -> None:
        pass


class PgLeases:
    """The leases of ``node`` in the processor store's database ``part`` (see the module's docstring);
    ``names()`` answers the stream and data stream names this host resolves (published in its beat)."""

    def __init__(self, part: Any, node: str, names: Callable[[], tuple[Iterable[str], Iterable[str]]], *,
                 ttl: float = LEASE_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.part, self.node, self.names, self.ttl, self.clock = part, node, names, ttl, clock
        self._beaten = -math.inf
        self._renewed = clock()
        self._free_since: dict[str, float] = {}

    def settle(self, rows: Mapping[str, ProcessorRow], busy: Collection[str],
               resolvable: Callable[[ProcessorRow], bool]) -> tuple[set[str], set[str]]:
        """Beat when due, take what it should, release what it holds and no longer runs: the names
        this host holds now (``busy``'s that it still holds, and those it just took: its own first,
        as after a restart on the same home), and the names other live hosts hold."""
        if self.clock() - self._beaten >= self.ttl / 3:
            self._beat(busy)
        held, others = self._look()
        mine = held & set(busy)
        free = sorted((row for name, row in rows.items() if wanted(row) and name not in mine and name not in others),
                      key=lambda row: (row.name not in held, row.name))
        now = self.clock()
        self._free_since = {row.name: self._free_since.get(row.name, now) for row in free}
        if free:
            mine |= self._take(rows, free, len(mine), resolvable)
        if held - mine:
            self._release(held - mine)
        return mine, others

    def elsewhere(self, row: ProcessorRow) -> bool:
        """Whether another live host publishes ``row``'s camera and data stream names."""
        return any(_resolves(published, row) for published in self._hosts()[1])

    def lapsed(self) -> bool:
        """Whether this host's leases may have been taken (no renewal for ``ttl``)."""
        return self.clock() - self._renewed >= self.ttl

    def close(self) -> None:
        """Release every lease and the heartbeat (a stopping host: others take over at once)."""
        with self.part.tx() as db:
            db.execute("UPDATE streams_processors SET lease_node = NULL, lease_expires = NULL WHERE lease_node = %s",
                       (self.node,))
            db.execute("DELETE FROM streams_hosts WHERE node = %s", (self.node,))

    # -- the steps ---------------------------------------------------------------------------------

    def _beat(self, busy: Collection[str]) -> None:
        started = self.clock()
        sources, data_streams = self.names()
        published = (json.dumps(sorted(sources)), json.dumps(sorted(data_streams)))
        with self.part.tx() as db:
            db.execute(f"INSERT INTO streams_hosts VALUES (%s, {NOW}, {NOW} + %s, %s, %s) ON CONFLICT (node) DO "
                       "UPDATE SET seen = EXCLUDED.seen, expires = EXCLUDED.expires, sources = EXCLUDED.sources, "
                       "data_streams = EXCLUDED.data_streams", (self.node, self.ttl, *published))
            db.execute(f"UPDATE streams_processors SET lease_expires = {NOW} + %s WHERE lease_node = %s "
                       "AND name = ANY(%s)", (self.ttl, self.node, list(busy)))
            db.execute(f"DELETE FROM streams_hosts WHERE expires < {NOW} - %s", (FORGET_AFTER,))
        self._beaten = self._renewed = started

    def _look(self) -> tuple[set[str], set[str]]:
        held: set[str] = set()
        others: set[str] = set()
        for name, node in self.part.rows(f"SELECT name, lease_node FROM streams_processors WHERE lease_node IS NOT "
                                         f"NULL AND (lease_node = %s OR lease_expires >= {NOW})", (self.node,)):
            (held if node == self.node else others).add(name)
        return held, others

    def _release(self, names: Collection[str]) -> None:
        self.part.execute("UPDATE streams_processors SET lease_node = NULL, lease_expires = NULL "
                          "WHERE lease_node = %s AND name = ANY(%s)", (self.node, list(names)))

    def _take(self, rows: Mapping[str, ProcessorRow], free: list[ProcessorRow], holding: int,
              resolvable: Callable[[ProcessorRow], bool]) -> set[str]:
        """Claim some of ``free``: within the balance those this host resolves, beyond it those left
        free for a lease's time (the hosts with room cannot resolve them), and those no live host
        has resolved for ``ORPHAN_LEASES`` lease times (to fail them, saying why)."""
        live, others = self._hosts()
        room = math.ceil(sum(wanted(r) for r in rows.values()) / live) - holding
        mapped = [r.name for r in free if resolvable(r)]
        waited = [n for n in mapped[max(0, room):] if self.clock() - self._free_since[n] >= self.ttl]
        orphans = [r.name for r in free if not resolvable(r) and not any(_resolves(p, r) for p in others)
                   and self.clock() - self._free_since[r.name] >= ORPHAN_LEASES * self.ttl]
        return self._claim(mapped[:max(0, room)] + waited) | self._claim(orphans)

    def _hosts(self) -> tuple[int, list[tuple[set[str], set[str]]]]:
        """How many hosts are live (this one included), and the names each other live host maps."""
        hosts = self.part.rows(f"SELECT node, sources, data_streams FROM streams_hosts WHERE expires >= {NOW}")
        live = max(1, len(hosts) + (self.node not in {h[0] for h in hosts}))
        return live, [(set(json.loads(s)), set(json.loads(d))) for node, s, d in hosts if node != self.node]

    def _claim(self, names: list[str]) -> set[str]:
        if not names:
            return set()
        with self.part.tx() as db:
            found = [r[0] for r in db.execute(
                f"SELECT name FROM streams_processors WHERE name = ANY(%s) AND desired = %s AND (lease_node IS NULL "
                f"OR lease_node = %s OR lease_expires < {NOW}) FOR UPDATE SKIP LOCKED",
                (names, RUNNING, self.node)).fetchall()]
            if found:
                db.execute(f"UPDATE streams_processors SET lease_node = %s, lease_expires = {NOW} + %s "
                           "WHERE name = ANY(%s)", (self.node, self.ttl, found))
        return set(found)


def _resolves(published: tuple[set[str], set[str]], row: ProcessorRow) -> bool:
    sources, data_streams = published
    return row.video_stream in sources and (row.data_stream is None or row.data_stream in data_streams)


def node_id(home: Path) -> str:
    """This home's stream host node id (``HOME/streams/node-id``, made at the first call)."""
    from faceprint.home import create_private
    from faceprint.streams.config import streams_folder

    path = streams_folder(home) / NODE_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    made = f"{socket.gethostname()[:64]}-{uuid.uuid4().hex[:12]}"
    try:
        fd = create_private(path)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(made + "\n")
    return made


def leases_for(store: Any, names: Callable[[], tuple[Iterable[str], Iterable[str]]],
               ttl: float = LEASE_TTL) -> LocalLeases | PgLeases:
    """The leases of ``store``'s host: :class:`PgLeases` for a shared store, else :class:`LocalLeases`."""
    if not getattr(store, "shared", False):
        return LocalLeases()
    return PgLeases(store.part, store.node, names, ttl=ttl)
