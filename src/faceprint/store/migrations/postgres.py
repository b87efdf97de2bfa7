"""The PostgreSQL store's schema versions (see ``faceprint.store.migrations``).

1. The SQLite store's version 1 in PostgreSQL's types: vectors as ``bytea`` (float32, as SQLite's
   blobs), times as ``double precision`` epoch seconds, ``seq`` an identity column, ids compared
   and ordered byte by byte (``COLLATE "C"``, as SQLite compares text), whatever the database's
   locale. ``faces`` is partitioned by collection (one partition per collection, made by
   ``create_collection`` and dropped by ``delete_collection``: see ``faceprint.store.postgres``);
   ``seq`` comes from one sequence for all of them.

Migrations run in one transaction each under a transaction-scoped advisory lock, so that
nodes starting together against an empty database migrate it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faceprint.store.migrations import TABLE, Migration, latest, pending

LOCK_KEY = 0x66616365  # "face": pg_advisory_xact_lock's key for migrations

SCHEMA_V1 = """
CREATE TABLE collections (
    collection_id TEXT COLLATE "C" PRIMARY KEY,
    arn TEXT NOT NULL,
    face_model_version TEXT NOT NULL,
    dim INTEGER NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    deletions BIGINT NOT NULL DEFAULT 0,
    part BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,  -- its faces are in the partition faces_PART
    uncompacted BIGINT NOT NULL DEFAULT 0,  -- faces deleted since its partition was last rewritten
    face_count BIGINT NOT NULL DEFAULT 0  -- its faces, kept with every write (COUNT(*) reads them all)
);
CREATE SEQUENCE faces_seq;
CREATE TABLE faces (
    seq BIGINT NOT NULL DEFAULT nextval('faces_seq'),
    face_id TEXT COLLATE "C" NOT NULL,
    collection_id TEXT COLLATE "C" NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    image_id TEXT NOT NULL,
    external_image_id TEXT COLLATE "C",
    width DOUBLE PRECISION NOT NULL, height DOUBLE PRECISION NOT NULL,
    left_ DOUBLE PRECISION NOT NULL, top DOUBLE PRECISION NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    user_id TEXT COLLATE "C",
    vector BYTEA NOT NULL,
    created DOUBLE PRECISION,
    PRIMARY KEY (collection_id, seq),
    UNIQUE (collection_id, face_id)
) PARTITION BY LIST (collection_id);
CREATE INDEX faces_by_user ON faces(collection_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX faces_by_external_image_id ON faces(external_image_id);
CREATE TABLE users (
    collection_id TEXT COLLATE "C" NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    user_id TEXT COLLATE "C" NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (collection_id, user_id)
);
CREATE TABLE request_tokens (
    collection_id TEXT COLLATE "C" NOT NULL,
    operation TEXT NOT NULL,
    token TEXT NOT NULL,
    parameters TEXT NOT NULL,
    response TEXT NOT NULL,
    PRIMARY KEY (collection_id, operation, token)
);
CREATE TABLE deleted_faces (
    collection_id TEXT COLLATE "C" NOT NULL,
    deletion BIGINT NOT NULL,
    face_id TEXT COLLATE "C" NOT NULL
);
CREATE INDEX deleted_faces_by_collection ON deleted_faces(collection_id, deletion);
CREATE TABLE imports (
    collection_id TEXT COLLATE "C" NOT NULL REFERENCES collections(collection_id) ON DELETE CASCADE,
    source_sha256 TEXT NOT NULL,
    image_id TEXT,
    outcome TEXT NOT NULL,
    PRIMARY KEY (collection_id, source_sha256)
);
"""


def _baseline(db: Any, clock: Callable[[], float]) -> None:
    for statement in SCHEMA_V1.split(";\n"):
        if statement.strip():
            db.execute(statement)


def _toast_vacuum(db: Any, clock: Callable[[], float]) -> None:
    """Partitions made before version 2: their TOAST tables (vectors of 512 dimensions and more are
    stored there, out of line) vacuumed after any delete, as the partitions themselves are."""
    for (part,) in db.execute("SELECT part FROM collections").fetchall():
        db.execute(f"ALTER TABLE faces_{int(part)} SET (toast.autovacuum_vacuum_scale_factor = 0, "
                   "toast.autovacuum_vacuum_threshold = 1)")


MIGRATIONS = (
    Migration(1, "collections, faces (vectors), users, request tokens, deletion log, imports", _baseline),
    Migration(2, "faces partitions' TOAST tables vacuumed after any delete", _toast_vacuum),
)


def version(db: Any) -> int:
    """The schema version recorded in the database (0: none recorded)."""
    if db.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()[0] is None:
        return 0
    return int(db.execute(f"SELECT COALESCE(MAX(version), 0) FROM {TABLE}").fetchone()[0])


def migrate(connect: Callable[[], Any], clock: Callable[[], float]) -> int:
    """Apply the migrations the database lacks, one transaction each under an advisory lock (a
    node that waited for another's finds them done); the version reached. ``connect`` gives a
    connection context (its block is one transaction)."""
    while True:
        with connect() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            current = version(db)
            todo = pending(MIGRATIONS, current, "PostgreSQL store")
            if not todo:
                return current
            db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY, "
                       "description TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)")
            todo[0].apply(db, clock)
            db.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, %s)", (todo[0].version, todo[0].description, clock()))
        if todo[0].version == latest(MIGRATIONS):
            return todo[0].version
