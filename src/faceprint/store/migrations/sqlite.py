"""The SQLite store's schema versions (see ``faceprint.store.migrations``).

1. The schema as faceprint wrote it before migrations were versioned, faces dated (``created``).
   A home from then is recognised (it has the tables but no ``schema_migrations``): what it lacks
   is created (every statement is ``IF NOT EXISTS``), a ``faces`` table from before faces were
   dated gets ``created`` (its faces count as stored at the upgrade: their retention runs from
   then, never shorter than asked), and it is stamped version 1.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from faceprint.store.database import Database
from faceprint.store.migrations import TABLE, Migration, latest, pending

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS collections (
    collection_id TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    face_model_version TEXT NOT NULL,
    dim INTEGER NOT NULL,
    created REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,  -- bumped by every write to the collection's faces
    deletions INTEGER NOT NULL DEFAULT 0    -- bumped by every delete of faces
);
CREATE TABLE IF NOT EXISTS faces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    face_id TEXT NOT NULL UNIQUE,
    collection_id TEXT NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    image_id TEXT NOT NULL,
    external_image_id TEXT,
    width REAL NOT NULL, height REAL NOT NULL, left_ REAL NOT NULL, top REAL NOT NULL,
    confidence REAL NOT NULL,
    user_id TEXT,
    vector BLOB NOT NULL,
    created REAL  -- epoch seconds the face was stored (face retention); added by a later version
);
CREATE INDEX IF NOT EXISTS faces_by_collection ON faces(collection_id, seq);
CREATE TABLE IF NOT EXISTS users (
    collection_id TEXT NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (collection_id, user_id)
);
CREATE TABLE IF NOT EXISTS request_tokens (
    collection_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    token TEXT NOT NULL,
    parameters TEXT NOT NULL,
    response TEXT NOT NULL,
    PRIMARY KEY (collection_id, operation, token)
);
CREATE TABLE IF NOT EXISTS deleted_faces (  -- lets another process's index drop just these
    collection_id TEXT NOT NULL,
    deletion INTEGER NOT NULL,  -- the collection's deletions counter after the delete
    face_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deleted_faces_by_collection ON deleted_faces(collection_id, deletion);
CREATE TABLE IF NOT EXISTS imports (
    collection_id TEXT NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    source_sha256 TEXT NOT NULL,
    image_id TEXT,
    outcome TEXT NOT NULL,
    PRIMARY KEY (collection_id, source_sha256)
);
"""


def _baseline(db: sqlite3.Connection, clock: Callable[[], float]) -> None:
    for statement in SCHEMA_V1.split(";\n"):
        if statement.strip():
            db.execute(statement)
    if "created" not in {r[1] for r in db.execute("PRAGMA table_info(faces)")}:
        db.execute("ALTER TABLE faces ADD COLUMN created REAL")
        db.execute("UPDATE faces SET created = ?", (clock(),))


MIGRATIONS = (
    Migration(1, "the schema before versioned migrations, faces dated", _baseline),
)


def version(db: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0: none recorded)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone() is None:
        return 0
    return int(db.execute(f"SELECT COALESCE(MAX(version), 0) FROM {TABLE}").fetchone()[0])


def migrate(database: Database, clock: Callable[[], float]) -> int:
    """Apply the migrations the database lacks, each in its own write transaction (``BEGIN IMMEDIATE``:
    one process at a time; another that opened it meanwhile finds them done); the version reached."""
    current = version(database.db())
    while current < latest(MIGRATIONS):
        with database.tx() as db:
            current = version(db)
            todo = pending(MIGRATIONS, current, "SQLite store")
            if todo:
                db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY, "
                           "description TEXT NOT NULL, applied REAL NOT NULL)")
                todo[0].apply(db, clock)
                db.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?)", (todo[0].version, todo[0].description, clock()))
                current = todo[0].version
    pending(MIGRATIONS, current, "SQLite store")  # a newer faceprint's database: SchemaTooNew
    return current
