"""The face store's mover: an embedded SQLite store's collections, faces (vectors byte for byte,
face ids, ``seq`` numbers, dates), users, ClientRequestToken records, bulk-import records and
deletion log copied into a PostgreSQL store, in one PostgreSQL transaction (all or nothing), from
one SQLite read snapshot. The collections' write and delete counters and the faces' ``seq`` are
kept, so an embedded index file written over the SQLite store is current over the PostgreSQL one
too. Nothing is embedded again: the vectors are the stored ones."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from faceprint.ops.digest import Tally, sort_key

BATCH = 5_000
"""Faces read and written a batch at a time (a million faces never sit in memory at once)."""

FACE_COLUMNS = ("seq", "face_id", "collection_id", "image_id", "external_image_id", "width", "height", "left_",
                "top", "confidence", "user_id", "vector", "created")
COLLECTION_COLUMNS = ("collection_id", "arn", "face_model_version", "dim", "created", "generation", "deletions")
SMALL_TABLES = {
    "users": ("collection_id", "user_id", "created"),
    "request_tokens": ("collection_id", "operation", "token", "parameters", "response"),
    "imports": ("collection_id", "source_sha256", "image_id", "outcome"),
    "deleted_faces": ("collection_id", "deletion", "face_id"),
}


class StoreMover:
    """``name``, ``source_tally()``, ``target_tally()``, ``target_empty()``, ``copy()``: see
    ``faceprint.ops.migrate.Mover``."""

    name = "store"

    def __init__(self, source: Path, target_url: str) -> None:
        from faceprint.store.postgres import PostgresStore
        from faceprint.store.sqlite import SQLiteStore

        SQLiteStore(source)._database.close()  # brought to the latest schema, as any open would
        PostgresStore(target_url).close()  # the target's schema, made and migrated
        self.source, self.target_url = source, target_url

    # -- reading ---------------------------------------------------------------------------------------
    def source_tally(self) -> Tally:
        with closing(self._sqlite()) as db:
            db.execute("BEGIN")
            return tally(db.execute, db.execute)

    def target_tally(self) -> Tally:
        return pg_tally(self.target_url)

    def target_empty(self) -> bool:
        with psycopg.connect(self.target_url) as db:
            return db.execute("SELECT NOT EXISTS (SELECT 1 FROM collections) AND NOT EXISTS "
                              "(SELECT 1 FROM request_tokens) AND NOT EXISTS (SELECT 1 FROM deleted_faces)"
                              ).fetchone()[0]

    # -- copying ---------------------------------------------------------------------------------------
    def copy(self) -> Tally:
        """Copy everything from one snapshot; the tally of what was read (the source's)."""
        from faceprint.store.postgres import _PARTITION_SETTINGS, _partition

        read = Tally()
        with closing(self._sqlite()) as src, psycopg.connect(self.target_url) as dst:
            src.execute("BEGIN")  # one snapshot for every table
            collections = src.execute(f"SELECT {', '.join(COLLECTION_COLUMNS)} FROM collections "
                                      "ORDER BY collection_id").fetchall()
            for row in collections:
                part = dst.execute(f"INSERT INTO collections ({', '.join(COLLECTION_COLUMNS)}) "
                                   "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING part", row).fetchone()[0]
                dst.execute(sql.SQL("CREATE TABLE {} PARTITION OF faces FOR VALUES IN ({}) WITH ({})").format(
                    _partition(part), sql.Literal(row[0]), sql.SQL(_PARTITION_SETTINGS)))
            read.add("collections", sorted(collections, key=sort_key))
            read.add("faces", _copy_rows(dst, "faces", FACE_COLUMNS, _faces(src)))
            for table, columns in SMALL_TABLES.items():
                rows = sorted(src.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=sort_key)
                read.add(table, _copy_rows(dst, table, columns, iter(rows)))
            dst.execute("UPDATE collections c SET face_count = (SELECT COUNT(*) FROM faces f "
                        "WHERE f.collection_id = c.collection_id)")
            dst.execute("SELECT setval('faces_seq', GREATEST((SELECT COALESCE(MAX(seq), 0) FROM faces), 1), "
                        "(SELECT COUNT(*) > 0 FROM faces))")
            src.execute("COMMIT")
        return read

    def _sqlite(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.source, isolation_level=None, timeout=30.0)
        db.execute("PRAGMA query_only=ON")
        return db

    def close(self) -> None:
        pass


def pg_tally(url: str) -> Tally:
    """The tally of the PostgreSQL store at ``url`` (one snapshot)."""
    with psycopg.connect(url) as db:
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot
        with db.cursor(binary=True) as small, db.cursor("faces", binary=True) as big:
            big.itersize = BATCH  # a server-side cursor: the faces stream, a batch at a time
            return tally(small.execute, big.execute)


def tally(query: Any, stream: Any) -> Tally:
    """The store's tally through ``query(sql)`` (rows of small tables) and ``stream(sql)`` (faces,
    by ``seq``, iterated); the same SQL for both databases."""
    found = Tally()
    found.add("collections", sorted(query(f"SELECT {', '.join(COLLECTION_COLUMNS)} FROM collections").fetchall(),
                                    key=sort_key))
    found.add("faces", stream(f"SELECT {', '.join(FACE_COLUMNS)} FROM faces ORDER BY seq"))
    for table, columns in SMALL_TABLES.items():
        found.add(table, sorted(query(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=sort_key))
    return found


def _faces(src: sqlite3.Connection) -> Iterator[tuple]:
    after = -1
    while True:
        rows = src.execute(f"SELECT {', '.join(FACE_COLUMNS)} FROM faces WHERE seq > ? ORDER BY seq LIMIT ?",
                           (after, BATCH)).fetchall()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def _copy_rows(dst: psycopg.Connection, table: str, columns: tuple[str, ...], rows: Iterator[tuple]
               ) -> Iterator[tuple]:
    """COPY ``rows`` into ``table``, yielding each as it goes (so the caller tallies what it wrote)."""
    written: list[tuple] = []
    with dst.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            written.append(row)
            if len(written) >= BATCH:
                yield from written
                written = []
    yield from written
