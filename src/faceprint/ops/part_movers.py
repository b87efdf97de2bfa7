"""The movers of the home's parts that have a PostgreSQL twin (see ``faceprint.ops.migrate``), in
order: the account id (so ARNs stay the same), access keys, console users (and the cookie secret),
collection settings, the audit chain, the review queue, stored-video jobs, stream processors
(through their module's own copy).

Most parts are SQLite databases of the home whose tables the twin keeps under its part's prefix
with the same columns (:class:`TableMover`): rows are copied as they are (numbered rows keep their
numbers: a stream's event ids, a review candidate's id) and each identity sequence is moved past
them. The access keys come from ``HOME/auth/keys.json`` (:class:`KeysMover`) and the audit chain
through its module's own copy, hashes, signed heads and online key intact (:class:`AuditMover`).
A part whose home file does not exist has nothing to move. Each part's schema is made by its own
module's migrations (its ``PgPart``), so the tables are the twin's.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from faceprint.errors import InvalidParameterException
from faceprint.ops.digest import Tally, sort_key
from faceprint.ops.tables import ConsoleMover, NothingToMove, PartSpec, TableMover, make_schema


class StreamsMover(TableMover):
    """Stream processors and their events through ``faceprint.streams.store_pg.copy_processors``
    (rows as stored, but one left STOPPING is STOPPED: its host is gone; events with their seqs);
    checked like any table mover, with that one change made to what was read."""

    def copy(self) -> Tally:
        from faceprint.streams.store import ProcessorStore
        from faceprint.streams.store_pg import PgProcessorStore, copy_processors

        source, target = ProcessorStore(self.source), PgProcessorStore(self.url)
        try:
            copy_processors(source, target)
        finally:
            source.close(), target.close()
        return self.source_tally()

    def _tally(self, read: Callable[[str, list[str]], list[tuple]], target: bool) -> Tally:
        if target:
            return super()._tally(read, target)
        columns = self.columns["processors"]
        status, desired = columns.index("status"), columns.index("desired")

        def settled(table: str, cols: list[str]) -> list[tuple]:
            rows = read(table, cols)
            if table != "processors":
                return rows
            return [tuple("STOPPED" if i in (status, desired) and r[status] == "STOPPING" else v
                          for i, v in enumerate(r)) for r in rows]
        return super()._tally(settled, target)


class VideoMover(TableMover):
    """Stored-video jobs and their results. A job still queued or running stops the move (its input
    file is this node's, and its runner would go on writing to the home), unless ``force``: then it
    arrives FAILED, as a runner fails a job (its partial results deleted, finished now, its results'
    expiry counted from then, its notification due), with :data:`FORCED` as its StatusMessage; the
    source is left as it is, and the check compares the target with the source so changed."""

    def __init__(self, spec: PartSpec, source: Path, url: str, tables: dict[str, str], force: bool = False,
                 now: float | None = None) -> None:
        super().__init__(spec, source, url, tables, refuse=None if force else _video_in_progress)
        self.force, self.now = force, self._forced_before() or (time.time() if now is None else now)

    def _forced_before(self) -> float | None:
        """When an earlier forced run failed the jobs (a run again compares with what it wrote)."""
        with psycopg.connect(self.url) as db:
            found = db.execute("SELECT MIN(finished) FROM video_jobs WHERE status_message = %s", (FORCED,)).fetchone()
        return found[0] if found else None

    def copy(self) -> Tally:
        super().copy()
        return self.source_tally()

    def extra(self, dst: psycopg.Connection) -> None:
        if self.force:
            dst.execute(f"DELETE FROM video_items WHERE job_id IN (SELECT job_id FROM video_jobs WHERE {_BUSY})")
            dst.execute(f"UPDATE video_jobs SET status = 'FAILED', status_message = %s, finished = %s, "
                        f"expires = %s + expiry_seconds, owner = NULL, notify_pending = notification IS NOT NULL "
                        f"WHERE {_BUSY}", (FORCED, self.now, self.now))

    def _tally(self, read: Callable[[str, list[str]], list[tuple]], target: bool) -> Tally:
        if target or not self.force:
            return super()._tally(read, target)
        busy: set[str] = set()

        def failed(table: str, cols: list[str]) -> list[tuple]:
            rows, at = read(table, cols), {c: i for i, c in enumerate(cols)}
            if table == "items":
                return [r for r in rows if r[at["job_id"]] not in busy]
            out = []
            for row in map(list, rows):
                if row[at["status"]] in ("QUEUED", "RUNNING"):
                    busy.add(row[at["job_id"]])
                    changes = {"status": "FAILED", "status_message": FORCED, "finished": self.now, "owner": None,
                               "expires": self.now + row[at["expiry_seconds"]],
                               "notify_pending": int(row[at["notification"]] is not None)}
                    for column, value in changes.items():
                        if column in at:
                            row[at[column]] = value
                out.append(tuple(row))
            return out
        return super()._tally(failed, target)


FORCED = "faceprint migrate --force moved this job while it was queued or running; start it again"
_BUSY = "status IN ('QUEUED', 'RUNNING')"


class KeysMover:
    """``HOME/auth/keys.json`` into the ``keys`` part (each key's record as the file holds it)."""

    name = "keys"

    def __init__(self, spec: PartSpec, home: Path, url: str) -> None:
        from faceprint.server.keys import KeyStore

        self.keys, self.url = KeyStore(home).list(), url
        make_schema(spec, url)
        self.table = sql.Identifier(importlib.import_module(spec.module).TABLE)

    def _rows(self) -> list[tuple]:
        return [(k.access_key_id, json.dumps(k.to_record())) for k in self.keys]

    def target_empty(self) -> bool:
        with psycopg.connect(self.url) as db:
            return not db.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self.table)).fetchone()[0]

    def source_tally(self) -> Tally:
        found = Tally()
        found.add("keys_access_keys", sorted(self._rows(), key=sort_key))
        return found

    def target_tally(self) -> Tally:
        with psycopg.connect(self.url) as db:
            rows = db.execute(sql.SQL("SELECT access_key_id, record FROM {}").format(self.table)).fetchall()
        found = Tally()
        found.add("keys_access_keys", sorted(((k, json.dumps(json.loads(r))) for k, r in rows), key=sort_key))
        return found

    def copy(self) -> Tally:
        with psycopg.connect(self.url) as db:
            for row in self._rows():  # in the file's order: the order of creation
                db.execute(sql.SQL("INSERT INTO {} (access_key_id, record) VALUES (%s, %s)").format(self.table), row)
        return self.source_tally()

    def close(self) -> None:
        pass


class AccountMover:
    """The home's account id (``HOME/account-id``) as the deployment's (``shared_account_id``), so that
    every collection's and stream processor's ARN stays what it was."""

    name = "account"

    def __init__(self, home: Path, url: str) -> None:
        from faceprint.account import ACCOUNT_FILE
        from faceprint.store.pgshared import ACCOUNT, PgPart

        self.home, self.url = home, url
        self.account = (home / ACCOUNT_FILE).read_text().strip()
        PgPart(url, "account", [ACCOUNT], pool_size=1).close()

    def _tally(self, rows: list[tuple]) -> Tally:
        found = Tally()
        found.add("account_id", rows)
        return found

    def target_empty(self) -> bool:
        return not self.target_tally().counts["account_id"]

    def source_tally(self) -> Tally:
        return self._tally([(self.account,)])

    def target_tally(self) -> Tally:
        with psycopg.connect(self.url) as db:
            return self._tally(db.execute("SELECT account FROM account_id").fetchall())

    def copy(self) -> Tally:
        from faceprint.store.pgshared import shared_account_id

        shared_account_id(self.url, self.home)
        return self.source_tally()

    def close(self) -> None:
        pass


class AuditMover:
    """The audit chain (``HOME/audit``) through ``faceprint.audit.backend.copy_log``: entries with
    their bodies and hashes as stored, signed heads, the online key; verified afterwards."""

    name = "audit"

    def __init__(self, home: Path, url: str) -> None:
        from faceprint.audit.log import AuditLog
        from faceprint.audit.pglog import PgAuditLog

        self.source, self.target = AuditLog(home / "audit"), PgAuditLog(url, home / "audit")

    def target_empty(self) -> bool:
        return self.target.count() == 0 and not self.target.signed_heads()

    def source_tally(self) -> Tally:
        return _audit_tally(self.source)

    def target_tally(self) -> Tally:
        return _audit_tally(self.target)

    def copy(self) -> Tally:
        from faceprint.audit.backend import copy_log
        from faceprint.audit.verify import verify

        copy_log(self.source, self.target)
        report = verify(self.target)
        if not report.ok:
            raise InvalidParameterException(f"audit: the chain copied does not verify: {report}")
        return self.source_tally()

    def close(self) -> None:
        for log in (self.source, self.target):
            getattr(log, "close", lambda: None)()


def _audit_tally(log: Any) -> Tally:
    from faceprint.audit.records import as_text

    found = Tally()
    found.add("audit_entries", ((seq, as_text(body), as_text(prev), as_text(hash_))
                                for seq, body, prev, hash_, *_ in log.rows()))
    found.add("audit_heads", ((h.seq, h.hash, h.time, h.signature) for h in log.signed_heads()))
    return found


# -- the list ------------------------------------------------------------------------------------------
KEYS = PartSpec("keys", "faceprint.server.pgkeys", "MIGRATIONS")
CONSOLE = PartSpec("console", "faceprint.console.pgusers", "MIGRATIONS")
SETTINGS = PartSpec("settings", "faceprint.audit.pgparts", "SETTINGS_MIGRATIONS")
REVIEW = PartSpec("review", "faceprint.audit.pgparts", "REVIEW_MIGRATIONS")
VIDEO = PartSpec("video", "faceprint.video.store_pg", "MIGRATIONS")
STREAMS = PartSpec("streams", "faceprint.streams.store_pg", "MIGRATIONS")
AUDIT = PartSpec("audit", "faceprint.audit.pglog", "migrations")
ACCOUNT = PartSpec("account", "faceprint.store.pgshared", "ACCOUNT")


def part_movers(home: Path, target: str, force: bool = False) -> list[Callable[[], Any]]:
    """Each part's mover, in order (made when its turn comes); ``force``: video jobs in progress move as
    FAILED (:class:`VideoMover`)."""
    def tables(spec: PartSpec, path: Path, names: dict[str, str], cls: type = TableMover, **kw: Any) -> Callable:
        return _if(spec, path, lambda: cls(spec, path, target, names, **kw))

    return [
        _if(ACCOUNT, home / "account-id", lambda: AccountMover(home, target)),
        _if(KEYS, home / "auth" / "keys.json", lambda: KeysMover(KEYS, home, target)),
        tables(CONSOLE, home / "console" / "users.db", {"users": "console_users", "sessions": "console_sessions"},
               ConsoleMover),
        tables(SETTINGS, home / "settings.db", {"collection_settings": "settings_collections"}),
        _if(AUDIT, home / "audit" / "audit.db", lambda: AuditMover(home, target)),
        tables(REVIEW, home / "audit" / "reviews.db", {"candidates": "review_candidates",
                                                       "decisions": "review_decisions",
                                                       "log_position": "review_log_position"}),
        tables(VIDEO, home / "video" / "jobs.db", {"jobs": "video_jobs", "items": "video_items"}, VideoMover,
               force=force),
        tables(STREAMS, home / "streams" / "processors.db", {"processors": "streams_processors",
                                                             "events": "streams_events"}, StreamsMover),
    ]


def _if(spec: PartSpec, path: Path, make: Callable[[], Any]) -> Callable[[], Any]:
    """``make`` if the home has the part's file and this faceprint the part's twin."""
    def mover() -> Any:
        if not path.is_file():
            return NothingToMove(spec.name)
        try:
            importlib.import_module(spec.module)
        except ImportError:
            return NothingToMove(spec.name, f"not moved: this faceprint has no PostgreSQL twin ({spec.module})")
        return make()
    return mover


def _video_in_progress(db: sqlite3.Connection) -> str | None:
    count = db.execute(f"SELECT COUNT(*) FROM jobs WHERE {_BUSY}").fetchone()[0]
    if count:
        return (f"{count} video jobs are queued or running: let them finish (GetFace... says SUCCEEDED or "
                "FAILED), then migrate; their input files are this node's and are not moved. (--force moves "
                "them as FAILED.)")
    return None


def video_in_progress(home: Path) -> str | None:
    """Why the home's video jobs cannot be moved now (some are queued or running), or None."""
    from contextlib import closing

    path = home / "video" / "jobs.db"
    if not path.is_file():
        return None
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)) as db:
        try:
            return _video_in_progress(db)
        except sqlite3.OperationalError:  # no jobs table: nothing ever ran
            return None
