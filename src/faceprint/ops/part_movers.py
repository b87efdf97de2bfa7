"""The movers of the home's parts that have a PostgreSQL twin (see ``faceprint.ops.migrate``), in
order: the account id (so ARNs stay the same), access keys, console users (and the cookie secret),
collection settings, the audit chain, the review queue, stored-video jobs, stream processors.

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
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from faceprint.errors import InvalidParameterException
from faceprint.ops.digest import Tally, sort_key


@dataclass(frozen=True)
class PartSpec:
    name: str
    module: str
    migrations: str
    """The module's attribute holding the part's migrations (a list, or a function giving it)."""


class NothingToMove:
    """A part the home never used (no file): nothing copied, the target left alone; or one this
    faceprint has no PostgreSQL twin for (``outcome`` says so)."""

    def __init__(self, name: str, outcome: str = "nothing to move") -> None:
        self.name, self.outcome = name, outcome

    def target_empty(self) -> bool:
        return True

    def copy(self) -> Tally:
        return Tally()

    def target_tally(self) -> Tally:
        return Tally()

    def source_tally(self) -> Tally:
        return Tally()

    def close(self) -> None:
        pass


class TableMover:
    """An SQLite file's tables into a part's tables (``tables``: SQLite name -> PostgreSQL name), the
    columns both have; ``refuse(db)`` may return why the source cannot be moved now."""

    def __init__(self, spec: PartSpec, source: Path, url: str, tables: dict[str, str],
                 refuse: Callable[[sqlite3.Connection], str | None] | None = None) -> None:

        self.name, self.source, self.url, self.tables, self.refuse = spec.name, source, url, tables, refuse
        make_schema(spec, url)
        with closing(self._sqlite()) as src, psycopg.connect(url) as dst:
            self.columns = {t: _common_columns(src, dst, t, pg) for t, pg in tables.items()}

    def _sqlite(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{self.source}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
        return db

    def target_empty(self) -> bool:
        with psycopg.connect(self.url) as db:
            return not any(db.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(pg)))
                           .fetchone()[0] for pg in self.tables.values())

    def source_tally(self) -> Tally:
        with closing(self._sqlite()) as src:
            src.execute("BEGIN")
            return self._tally(lambda t, cols: src.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall(), False)

    def target_tally(self) -> Tally:
        with psycopg.connect(self.url) as dst:
            dst.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return self._tally(lambda t, cols: dst.execute(sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(t))).fetchall(), True)

    def _tally(self, read: Callable[[str, list[str]], list[tuple]], target: bool) -> Tally:
        found = Tally()
        for table, pg in self.tables.items():
            found.add(pg, sorted(read(pg if target else table, self.columns[table]), key=sort_key))
        return found

    def copy(self) -> Tally:
        read = Tally()
        with closing(self._sqlite()) as src, psycopg.connect(self.url) as dst:
            src.execute("BEGIN")  # one snapshot of the file
            why = self.refuse(src) if self.refuse else None
            if why:
                raise InvalidParameterException(f"{self.name}: {why}")
            for table, pg in self.tables.items():
                columns = self.columns[table]
                rows = src.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid").fetchall()
                with dst.cursor() as cursor, cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                        sql.Identifier(pg), sql.SQL(", ").join(map(sql.Identifier, columns)))) as out:
                    for row in rows:
                        out.write_row(row)
                read.add(pg, sorted(rows, key=sort_key))
                _advance_identities(dst, pg, columns)
            self.extra(dst)
        return read

    def extra(self, dst: psycopg.Connection) -> None:
        """Anything else the part holds (in the copy's transaction)."""

    def close(self) -> None:
        pass


class ConsoleMover(TableMover):
    """Console users and sessions, and the cookie secret (``HOME/console/secret``)."""

    def extra(self, dst: psycopg.Connection) -> None:
        secret = self.source.parent / "secret"
        if secret.is_file():
            dst.execute("INSERT INTO console_secret VALUES (1, %s)", (secret.read_bytes(),))

    def target_empty(self) -> bool:
        with psycopg.connect(self.url) as db:
            held = db.execute("SELECT EXISTS (SELECT 1 FROM console_secret)").fetchone()[0]
        return super().target_empty() and not held


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


def part_movers(home: Path, target: str) -> list[Callable[[], Any]]:
    """Each part's mover, in order (made when its turn comes)."""
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
        tables(VIDEO, home / "video" / "jobs.db", {"jobs": "video_jobs", "items": "video_items"},
               refuse=_video_in_progress),
        tables(STREAMS, home / "streams" / "processors.db", {"processors": "streams_processors",
                                                             "events": "streams_events"}),
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
    count = db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('QUEUED', 'RUNNING')").fetchone()[0]
    if count:
        return (f"{count} video jobs are queued or running: let them finish (GetFace... says SUCCEEDED or "
                "FAILED), then migrate; their input files are this node's and are not moved.")
    return None


def make_schema(spec: PartSpec, url: str) -> None:
    """The part's tables, made (or migrated) by the part's own code: its migrations where the module
    publishes them, else by opening the part through its module's factory."""
    from faceprint.store.pgshared import PgPart

    found = getattr(importlib.import_module(spec.module), spec.migrations, None)
    if found is not None:
        PgPart(url, spec.name, found() if callable(found) else found).close()
    else:
        OPENERS[spec.name](url)


def _open_keys(url: str) -> None:
    from faceprint.server.pgkeys import open_keys

    getattr(open_keys(NO_HOME, url), "close", lambda: None)()


def _open_console(url: str) -> None:
    from faceprint.console.pgusers import open_console_users

    open_console_users(NO_HOME, url).db.close()


def _open_settings(url: str) -> None:
    from faceprint.audit.pgparts import open_settings

    open_settings(NO_HOME, url).close()


def _open_review(url: str) -> None:
    from faceprint.audit.backend import open_audit_log
    from faceprint.audit.pgparts import open_reviews, open_settings

    log, settings = open_audit_log(NO_HOME, url), open_settings(NO_HOME, url)
    try:
        open_reviews(NO_HOME, url, log, settings).database.close()
    finally:
        settings.close()
        getattr(log, "close", lambda: None)()


NO_HOME = Path("/nonexistent/faceprint-home")
"""The home given to a factory that only needs the URL (nothing is written there)."""
OPENERS: dict[str, Callable[[str], None]] = {"keys": _open_keys, "console": _open_console,
                                              "settings": _open_settings, "review": _open_review}


def _common_columns(src: sqlite3.Connection, dst: psycopg.Connection, table: str, pg: str) -> list[str]:
    """The source table's columns that the target table has too, in the source's order."""
    mine = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    theirs = {r[0] for r in dst.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                        "AND table_schema = current_schema()", (pg,))}
    if not mine or not theirs:
        raise InvalidParameterException(f"The table {table} (or its twin {pg}) does not exist.")
    return [c for c in mine if c in theirs]


def _advance_identities(dst: psycopg.Connection, table: str, columns: list[str]) -> None:
    """Move each identity or serial sequence of ``table`` that was written past the values copied."""
    for column in columns:
        sequence = dst.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column)).fetchone()[0]
        if sequence:
            dst.execute(sql.SQL("SELECT setval(%s, GREATEST((SELECT COALESCE(MAX({}), 0) FROM {}), 1), "
                                "(SELECT COUNT(*) > 0 FROM {}))").format(
                sql.Identifier(column), sql.Identifier(table), sql.Identifier(table)), (sequence,))
