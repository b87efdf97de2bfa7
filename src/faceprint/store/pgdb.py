"""A home database's interface (:class:`faceprint.store.database.Database`: ``db()``, ``tx()``,
``reading()``, ``erase_wal()``, ``close()``) over a PostgreSQL part (:class:`PgPart`), so that a class
written for one of the home's SQLite files (console users, collection settings, the review queue)
keeps its SQL and runs on the shared database unchanged.

The SQL the classes send is portable (``INSERT ... ON CONFLICT``, ``RETURNING``); two things differ
and are translated here: SQLite's ``?`` parameters become psycopg's ``%s``, and each of the part's
tables gets its part's prefix (``tables``: ``{"users": "console_users"}``; whole words only).

Writes serialise as SQLite's ``BEGIN IMMEDIATE`` does: :meth:`PgDatabase.tx` takes the part's
transaction-scoped advisory lock first, so one write transaction of the part runs at a time across
every node, and a read-modify-write (a lock-out counter, a review's status, a setting) never loses
another node's write. Reads take no lock; :meth:`PgDatabase.reading` is one repeatable-read
snapshot, as a SQLite read transaction is.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg is the optional [postgres] extra: imported only where PostgreSQL is used
    import psycopg

    from faceprint.store.pgshared import PgPart


def ddl(text: str) -> Callable[[Any, Callable[[], float]], None]:
    """:func:`faceprint.store.pgshared.statements` (a migration's ``apply`` running ``text``'s statements,
    separated by ``;`` at a line's end), without importing psycopg where the store is not PostgreSQL."""
    def apply(db: Any, clock: Callable[[], float]) -> None:
        for statement in text.split(";\n"):
            if statement.strip():
                db.execute(statement)
    return apply


@contextmanager
def reaching() -> Iterator[None]:
    """A lost or refused connection (the server down, the database gone, no pooled connection within
    the pool's timeout) as ``StoreUnavailable`` with libpq's message, rather than psycopg's error."""
    import psycopg

    from faceprint.store.postgres import StoreUnavailable

    try:
        yield
    except psycopg.OperationalError as e:  # psycopg_pool.PoolTimeout is one too
        raise StoreUnavailable(f"The PostgreSQL store is unavailable: {e}".strip()) from None


class Result:
    """A statement's rows (all fetched) and the rows it touched: what the classes read of a cursor."""

    def __init__(self, rows: list[tuple], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple]:
        return list(self._rows)


class Dialect:
    """SQLite's SQL as PostgreSQL takes it: ``?`` as ``%s``, table names with their part's prefix."""

    def __init__(self, tables: Mapping[str, str]) -> None:
        self.tables = dict(tables)
        self._names = re.compile(r"\b(" + "|".join(map(re.escape, self.tables)) + r")\b") if self.tables else None

    def sql(self, text: str) -> str:
        text = text.replace("%", "%%").replace("?", "%s")
        return self._names.sub(lambda m: self.tables[m.group(1)], text) if self._names else text


class Connection:
    """One transaction's connection, taking SQLite's SQL."""

    def __init__(self, db: psycopg.Connection, dialect: Dialect) -> None:
        self._db, self._dialect = db, dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        cursor = self._db.execute(self._dialect.sql(sql), tuple(args))
        return Result(cursor.fetchall() if cursor.description is not None else [], cursor.rowcount)


class Autocommit:
    """``Database.db()``'s stand-in: each statement in its own transaction."""

    def __init__(self, part: PgPart, dialect: Dialect) -> None:
        self._part, self._dialect = part, dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        with reaching(), self._part.tx() as db:
            return Connection(db, self._dialect).execute(sql, args)


class PgDatabase:
    def __init__(self, part: PgPart, tables: Mapping[str, str]) -> None:
        self.part = part
        self.dialect = Dialect(tables)
        self._lock = zlib.crc32(f"faceprint part {part.part} writes".encode())

    def db(self) -> Autocommit:
        return Autocommit(self.part, self.dialect)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction, after every other node's write transaction of this part (rolled back
        on any exception)."""
        with reaching(), self.part.tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock,))
            yield Connection(db, self.dialect)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One read transaction: one snapshot of the database for everything read inside."""
        with reaching(), self.part.tx() as db:
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield Connection(db, self.dialect)

    def erase_wal(self, wait: float = 0.0) -> None:
        """Nothing to do here: PostgreSQL keeps deleted rows until VACUUM reclaims them (docs/scale.md)."""

    def close(self) -> None:
        self.part.close()


def shared_url(store_url: str | None) -> str | None:
    """The PostgreSQL URL the home's shared state lives at: ``store_url`` (None: ``$FACEPRINT_STORE``)
    when it names PostgreSQL; None when the store is the embedded SQLite one (the state stays in files
    of the home)."""
    import os

    from faceprint.backends import STORE_ENV

    url = store_url if store_url is not None else os.environ.get(STORE_ENV) or None
    # faceprint.store.pgshared.is_postgres, without importing psycopg for the embedded default
    return url if url and url.split(":", 1)[0].lower() in ("postgresql", "postgres") else None
