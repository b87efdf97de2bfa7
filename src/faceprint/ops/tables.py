"""Moving a home part kept in an SQLite file of the home into its PostgreSQL twin, table by table
(:class:`TableMover`: the columns both have, rows as they are, identity sequences moved past them),
and making a part's schema with its own module's code (:func:`make_schema`)."""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

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
