"""Versioned schema migrations (faceprint.store.migrations): an SQLite home written before versions
were recorded is recognised as version 1 and stamped, with its faces intact; a fresh store of either
kind records every version; nodes opening an empty PostgreSQL database together migrate it once;
a database from a newer faceprint is refused, not written."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from faceprint.store import CollectionRow, FaceRow
from faceprint.store.migrations import SchemaTooNew, postgres, sqlite
from faceprint.store.sqlite import SQLiteStore
from pg import pg  # noqa: F401

BEFORE_VERSIONS = sqlite.SCHEMA_V1  # what faceprint wrote before schema_migrations existed


def old_home(path: Path, schema: str = BEFORE_VERSIONS) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(schema)
        db.execute("INSERT INTO collections (collection_id, arn, face_model_version, dim, created) "
                   "VALUES ('c', 'arn', 'v', 2, 1.0)")
        db.execute("INSERT INTO faces (face_id, collection_id, image_id, width, height, left_, top, confidence, "
                   "vector) VALUES ('f', 'c', 'i', 1, 1, 0, 0, 99, ?)", (np.ones(2, np.float32).tobytes(),))
    db.close()


def recorded(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT version, description FROM schema_migrations ORDER BY version").fetchall()
    db.close()
    return rows


def test_an_sqlite_home_from_before_versions_is_recognised_and_stamped(tmp_path: Path) -> None:
    path = tmp_path / "faceprint.db"
    old_home(path)
    store = SQLiteStore(path, clock=lambda: 7.0)
    assert store.schema_version == 1 and recorded(path) == [(1, sqlite.MIGRATIONS[0].description)]
    assert [f.face_id for f in store.list_faces("c", 0, 10)] == ["f"]
    assert store.list_faces("c", 0, 10)[0].created is None  # its column existed: its faces are left as they were
    assert SQLiteStore(path).schema_version == 1 and len(recorded(path)) == 1  # reopened: nothing applied twice


def test_an_sqlite_home_from_before_faces_were_dated_is_brought_to_version_1(tmp_path: Path) -> None:
    path = tmp_path / "faceprint.db"
    old_home(path, re.sub(r",\n\s*created REAL  --[^\n]*", "", BEFORE_VERSIONS))
    store = SQLiteStore(path, clock=lambda: 5000.0)
    assert store.schema_version == 1 and [f.created for f in store.list_faces("c", 0, 10)] == [5000.0]


def test_a_fresh_sqlite_store_records_its_versions(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "new.db")
    assert store.schema_version == sqlite.latest(sqlite.MIGRATIONS) == 1
    assert [v for v, _ in recorded(tmp_path / "new.db")] == [m.version for m in sqlite.MIGRATIONS]


def test_a_database_from_a_newer_faceprint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "faceprint.db"
    SQLiteStore(path)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (2, 'from the future', 0)")
    db.close()
    with pytest.raises(SchemaTooNew, match="version 2"):
        SQLiteStore(path)


def test_postgresql_is_migrated_once_by_nodes_starting_together(pg) -> None:  # noqa: F811
    from faceprint.store.postgres import PostgresStore

    url = pg.database()
    stores: list[PostgresStore] = []
    threads = [threading.Thread(target=lambda: stores.append(PostgresStore(url, pool_size=2))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latest = postgres.latest(postgres.MIGRATIONS)
    assert [s.schema_version for s in stores] == [latest] * 4
    database = url.split("?")[0].rsplit("/", 1)[1]
    assert pg.sql("SELECT version, description FROM schema_migrations ORDER BY version", database) == [
        (m.version, m.description) for m in postgres.MIGRATIONS]
    stores[0].create_collection(CollectionRow("c", "arn", "v", 2, 1.0))
    stores[1].add_faces([FaceRow("f", "c", "i", None, (1.0, 1.0, 0.0, 0.0), 99.0, np.ones(2, np.float32))])
    assert stores[2].count_faces("c") == 1
    pg.sql("INSERT INTO schema_migrations VALUES (9, 'from the future', 0)", database)
    with pytest.raises(SchemaTooNew, match="version 9"):
        PostgresStore(url)
    for store in stores:
        store.close()


def toast_options(pg, database: str, collection_id: str) -> list[str]:  # noqa: F811
    return pg.sql("SELECT t.reloptions FROM collections c JOIN pg_class p ON p.relname = 'faces_' || c.part "
                  f"JOIN pg_class t ON t.oid = p.reltoastrelid WHERE c.collection_id = '{collection_id}'",
                  database)[0][0] or []


def test_postgresql_partitions_toast_tables_are_vacuumed_after_any_delete(pg) -> None:  # noqa: F811
    """Vectors of 512 dimensions (2 KB) are kept out of line, in the partition's TOAST table: it gets the
    partition's vacuum settings, at CreateCollection and (version 2) for partitions made before."""
    from faceprint.store.postgres import PostgresStore

    url = pg.database()
    database = url.split("?")[0].rsplit("/", 1)[1]
    store = PostgresStore(url)
    store.create_collection(CollectionRow("new", "arn", "v", 512, 1.0))
    want = ["autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=1"]  # on the TOAST table itself
    assert sorted(toast_options(pg, database, "new")) == want
    store.create_collection(CollectionRow("old", "arn", "v", 512, 1.0))
    part = pg.sql("SELECT part FROM collections WHERE collection_id = 'old'", database)[0][0]
    pg.sql(f"ALTER TABLE faces_{part} RESET (toast.autovacuum_vacuum_threshold, toast.autovacuum_vacuum_scale_factor)",
           database)
    pg.sql("DELETE FROM schema_migrations WHERE version > 1", database)  # as a version-1 database left it
    store.close()
    assert toast_options(pg, database, "old") == []
    store = PostgresStore(url)
    assert store.schema_version == 2 and sorted(toast_options(pg, database, "old")) == want
    store.close()


def test_migration_lists_are_numbered_without_gaps() -> None:
    from faceprint.store.migrations import Migration, check_sequence

    check_sequence(sqlite.MIGRATIONS)
    check_sequence(postgres.MIGRATIONS)
    with pytest.raises(ValueError):
        check_sequence([Migration(1, "a", lambda db, clock: None), Migration(3, "b", lambda db, clock: None)])
