"""The home's shared state in PostgreSQL: what lives in files of the home on one machine (access
keys, console users, collection settings, review decisions, video jobs, stream processors, the
audit chain) lives in the store's PostgreSQL database when the store is one, so that every
``faceprint serve`` node on every machine sees the same.

Each such *part* is a :class:`PgPart`: a small connection pool on the database ``url`` names and
the part's own versioned schema, recorded per part in ``faceprint_parts`` (part, version,
description, applied) and migrated on open under a transaction-scoped advisory lock, so that
nodes starting together migrate once. A part's tables carry its name as a prefix (``keys_...``,
``video_...``) and never touch the face store's tables. Parameters are psycopg's (``%s``).

Connections: what the URL leaves out comes from libpq's environment (``PGHOST``, ``PGUSER``,
``PGPASSWORD``, ``PGPASSFILE``, ...), as for the store. Each part's pool opens connections on
demand (none held while idle beyond ``min_size``) and holds at most ``pool_size``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from faceprint.account import account_id
from faceprint.backends import is_postgres  # noqa: F401 (re-exported: where the parts' users look for it)
from faceprint.store.migrations import Migration, latest, pending
from faceprint.store.postgres import open_pool

PARTS_TABLE = "faceprint_parts"
POOL_SIZE = 4


def statements(ddl: str) -> Callable[[Any, Callable[[], float]], None]:
    """A migration's ``apply`` that runs ``ddl``'s statements (separated by ``;`` at a line's end)."""
    def apply(db: Any, clock: Callable[[], float]) -> None:
        for statement in ddl.split(";\n"):
            if statement.strip():
                db.execute(statement)
    return apply


class PgPart:
    def __init__(self, url: str, part: str, migrations: Sequence[Migration], *,
                 clock: Callable[[], float] = time.time, pool_size: int = POOL_SIZE) -> None:
        """Connect to ``url`` and bring ``part``'s schema to its latest version (``migrations``: 1..n).
        ``faceprint.store.postgres.StoreUnavailable`` if the database cannot be reached."""
        self.url, self.part, self.clock = url, part, clock
        self._pool = open_pool(url, f"faceprint-{part}", min_size=0, max_size=pool_size)
        try:
            self.schema_version = self._migrate(migrations)
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed at the end of the block, rolled back on an exception. Use
        ``SELECT ... FOR UPDATE`` (or ``SKIP LOCKED``) inside it to serialise with other nodes."""
        with self._pool.connection() as db:
            yield db

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """One read's rows (binary results: ``bytea`` comes as bytes)."""
        with self._pool.connection() as db, db.cursor(binary=True) as cursor:
            return cursor.execute(sql, args).fetchall()

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple | None:
        found = self.rows(sql, args)
        return found[0] if found else None

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; the rows it touched."""
        with self._pool.connection() as db:
            return db.execute(sql, args).rowcount

    def _migrate(self, migrations: Sequence[Migration]) -> int:
        lock = zlib.crc32(f"faceprint part {self.part}".encode())
        while True:
            with self.tx() as db:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                db.execute(f"CREATE TABLE IF NOT EXISTS {PARTS_TABLE} (part TEXT NOT NULL, version INTEGER NOT NULL, "
                           "description TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL, PRIMARY KEY (part, version))")
                current = db.execute(f"SELECT COALESCE(MAX(version), 0) FROM {PARTS_TABLE} WHERE part = %s",
                                     (self.part,)).fetchone()[0]
                todo = pending(migrations, int(current), f"PostgreSQL {self.part}")
                if not todo:
                    return int(current)
                todo[0].apply(db, self.clock)
                db.execute(f"INSERT INTO {PARTS_TABLE} VALUES (%s, %s, %s, %s)",
                           (self.part, todo[0].version, todo[0].description, self.clock()))
            if todo[0].version == latest(migrations):
                return todo[0].version


ACCOUNT = Migration(1, "the deployment's account id", statements(
    "CREATE TABLE account_id (single BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (single), account TEXT NOT NULL);\n"))


def shared_account_id(url: str, home: Path) -> str:
    """The account id of a deployment on PostgreSQL, the same for every node: the first node (or
    ``faceprint migrate``) to ask stores its home's own id (``faceprint.account.account_id``), and
    every node answers that one from then on, so a collection's ARN is the same on every node."""
    part = PgPart(url, "account", [ACCOUNT], pool_size=1)
    try:
        with part.tx() as db:
            db.execute("INSERT INTO account_id (account) VALUES (%s) ON CONFLICT DO NOTHING", (account_id(home),))
            return db.execute("SELECT account FROM account_id").fetchone()[0]
    finally:
        part.close()
