"""Console users, their sessions and the cookie signing secret in the store's PostgreSQL database when
the store is one (docs/scale.md, "Console users"): a user added, locked out, unlocked or signed in on
one node is so on every node, and a session cookie made by one node is good on all of them. The part
``console``: tables ``console_users``, ``console_sessions`` and ``console_secret`` (one row: the
32 random bytes that sign the cookies and CSRF tokens, made by the first node that needs them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from faceprint.console.sessions import load_secret
from faceprint.console.users import ConsoleUsers
from faceprint.store.migrations import Migration
from faceprint.store.pgdb import PgDatabase, ddl, reaching, shared_url

TABLES = {"users": "console_users", "sessions": "console_sessions"}
V1 = ("""
CREATE TABLE console_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    salt BYTEA NOT NULL,
    digest BYTEA NOT NULL,
    refuse_low_quality INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL,
    changed DOUBLE PRECISION NOT NULL
);
CREATE TABLE console_sessions (
    sid TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
    created DOUBLE PRECISION NOT NULL,
    seen DOUBLE PRECISION NOT NULL
);
CREATE INDEX console_sessions_name ON console_sessions (name);
CREATE TABLE console_secret (id INTEGER PRIMARY KEY CHECK (id = 1), secret BYTEA NOT NULL);
""")
MIGRATIONS = [Migration(1, "console users, sessions and the cookie secret", ddl(V1))]


def open_console_users(home: Path, store_url: str | None, clock: Callable[[], float] = time.time) -> ConsoleUsers:
    """The console's users: in PostgreSQL when ``store_url`` (None: ``$FACEPRINT_STORE``) names it, else
    ``HOME/console/users.db``."""
    url = shared_url(store_url)
    if url is None:
        return ConsoleUsers(Path(home) / "console", clock=clock)
    from faceprint.store.pgshared import PgPart

    return ConsoleUsers(None, clock=clock, database=PgDatabase(PgPart(url, "console", MIGRATIONS), TABLES))


def signing_secret(users: ConsoleUsers) -> bytes:
    """The secret that signs the console's cookies: with the users, in PostgreSQL (shared by the nodes)
    or in ``HOME/console/secret``."""
    if not isinstance(users.db, PgDatabase):
        return load_secret(users.folder)
    part = users.db.part
    with reaching():
        part.execute("INSERT INTO console_secret VALUES (1, %s) ON CONFLICT (id) DO NOTHING", (os.urandom(32),))
        row = part.one("SELECT secret FROM console_secret WHERE id = 1")
    if row is None or len(row[0]) < 32:
        raise ValueError("The console's signing secret in PostgreSQL is damaged (under 32 bytes); delete the row "
                         "of console_secret to make a new one (signs everyone out).")
    return bytes(row[0])
