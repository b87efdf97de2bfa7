"""The PostgreSQL store (``postgresql://...``): collections, faces and their vectors (the source of
truth), users, ClientRequestToken records and bulk-import progress in one PostgreSQL database,
shared by any number of faceprint processes; the same behaviour as the SQLite store
(``faceprint.store.sqlite``), which ``tests/test_store_backends.py`` checks call by call.

Connections come from a pool (``psycopg_pool``); what the URL leaves out (host, port, user,
password, database, TLS) comes from libpq's environment (``PGHOST``, ``PGUSER``, ``PGPASSWORD``,
``PGPASSFILE``, ...). The schema is created and migrated on open (``faceprint.store.migrations.postgres``).

Statements are not prepared on the server (``prepare_threshold=None``): each is planned with its
values, for its collection's partition alone, where a generic plan of a prepared statement would
lock every partition and wait for a rewrite (``compact``) of any collection.

Every write is one transaction. Writes to a collection's faces lock its ``collections`` row
first, so that they commit in ``seq`` order: an index that catches up with ``faces_after(seq)``
never skips a face committed late (as SQLite's single writer guarantees).

Deletion erases. ``faces`` is partitioned by collection (``faces_PART``, one table per
collection): ``delete_collection`` drops its partition, so its faces' rows leave with the
partition's files at once. DeleteFaces deletes rows, which PostgreSQL leaves in the table file
until VACUUM, and VACUUM only frees their space for reuse (the bytes stay until overwritten): so
once the faces deleted from a collection since its partition was last rewritten reach
``COMPACT_SHARE`` of it, the delete rewrites the partition (``VACUUM FULL``, which leaves none of
the deleted rows in the new files; it locks that one collection's faces while it runs); below
that share the rows are pruned by autovacuum (every partition is set to be visited after any
delete) and ``compact()`` rewrites a collection on demand. What no VACUUM reaches: WAL segments
until recycled, base backups, replicas' and archives' copies: see ``docs/scale.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from faceprint.errors import FaceprintError, ResourceAlreadyExistsException, ResourceNotFoundException
from faceprint.store import CollectionRow, FaceRow
from faceprint.store.migrations.postgres import migrate
from faceprint.store.sqlite import DELETION_LOG

COMPACT_SHARE = 0.1
"""Share of a collection's faces deleted since its partition was last rewritten that makes a delete
rewrite it (``VACUUM FULL``)."""

LOCK_TIMEOUT = "2s"
"""How long one try at creating or dropping a collection's partition waits for the faces table's
exclusive lock (reads of every collection queue behind a waiting try: it must be short)."""

LOCK_TRIES = 10
"""Tries (a second apart) before CreateCollection / DeleteCollection answer ``ThrottlingException``."""

_PARTITION_SETTINGS = ("autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1, "
                       "toast.autovacuum_vacuum_scale_factor = 0, toast.autovacuum_vacuum_threshold = 1")
"""Every partition (and its TOAST table, where vectors of 512 dimensions and more are kept out of
line) is vacuumed after any delete."""

POOL_SIZE = 16
CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a connection (at open, and from the pool)."""

_FACE_COLUMNS = ("seq, face_id, collection_id, image_id, external_image_id, width, height, left_, top, "
                 "confidence, user_id, vector, created")
_COLLECTION_COLUMNS = "collection_id, arn, face_model_version, dim, created"
_SMALL_TABLES = "users, request_tokens, imports, deleted_faces, collections"


class StoreUnavailable(FaceprintError):
    """The PostgreSQL store cannot be reached or logged in to (libpq's message says why)."""


class StoreBusy(FaceprintError):
    """The faces table stayed in use too long for a collection's partition to be made or dropped:
    try again (the AWS SDKs retry ``ThrottlingException`` by themselves)."""

    code = "ThrottlingException"


def open_pool(url: str, name: str, min_size: int, max_size: int) -> ConnectionPool:
    """A pool of connections to ``url`` (libpq's environment fills the rest), checked before each is
    lent (after a server restart: no dead one), statements not prepared on the server (see the
    module); StoreUnavailable, with libpq's message, if the database cannot be reached now."""
    try:
        psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)).close()
    except psycopg.Error as e:
        raise StoreUnavailable(f"Cannot connect to the PostgreSQL store: {e}".strip()) from None
    return ConnectionPool(url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT,
                          kwargs={"connect_timeout": int(CONNECT_TIMEOUT), "prepare_threshold": None},
                          open=True, name=name, check=ConnectionPool.check_connection)


class PostgresStore:
    def __init__(self, url: str, clock: Callable[[], float] = time.time, pool_size: int = POOL_SIZE) -> None:
        """Connect to the database ``url`` names (libpq's environment fills the rest) and migrate its
        schema; ``clock`` dates the faces stored. StoreUnavailable if it cannot be reached."""
        self.url, self.clock = url, clock
        self._pool = open_pool(url, "faceprint", min_size=1, max_size=pool_size)
        try:
            self.schema_version = migrate(self._pool.connection, clock)
        except BaseException:
            self._pool.close()
            raise
        """The schema version (``faceprint.store.migrations.postgres``): the latest once opened."""

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One transaction: committed at the end of the block, rolled back on an exception."""
        with self._pool.connection() as db:
            yield db

    def _rows(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        """One read; results in binary (vectors come as their bytes, not hex text)."""
        with self._pool.connection() as db, db.cursor(binary=True) as cursor:
            return cursor.execute(sql, args).fetchall()

    # -- collections -----------------------------------------------------------------------------
    def create_collection(self, row: CollectionRow) -> None:
        """The collection's row and its faces' partition, in one transaction."""
        self._retrying(lambda: self._create_collection(row))

    def _create_collection(self, row: CollectionRow) -> None:
        with self._tx() as db:
            created = db.execute(
                f"INSERT INTO collections ({_COLLECTION_COLUMNS}) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (collection_id) DO NOTHING RETURNING part",
                (row.collection_id, row.arn, row.face_model_version, row.dim, row.created)).fetchone()
            if created is None:
                raise ResourceAlreadyExistsException(f"The collection {row.collection_id!r} already exists.")
            db.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            db.execute(sql.SQL("CREATE TABLE {} PARTITION OF faces FOR VALUES IN ({}) WITH ({})").format(
                _partition(created[0]), sql.Literal(row.collection_id), sql.SQL(_PARTITION_SETTINGS)))

    def get_collection(self, collection_id: str) -> CollectionRow | None:
        found = self._rows(f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE collection_id = %s",
                           (collection_id,))
        return CollectionRow(*found[0]) if found else None

    def list_collections(self, after: str | None, limit: int) -> list[CollectionRow]:
        return [CollectionRow(*r) for r in self._rows(
            f"SELECT {_COLLECTION_COLUMNS} FROM collections WHERE collection_id > %s ORDER BY collection_id LIMIT %s",
            (after or "", limit))]

    def delete_collection(self, collection_id: str) -> bool:
        """Drop the collection's partition (its faces' files go) and delete the rest of it."""
        if not self._retrying(lambda: self._delete_collection(collection_id)):
            return False
        self._vacuum(_SMALL_TABLES)
        return True

    def _delete_collection(self, collection_id: str) -> bool:
        with self._tx() as db:
            found = _lock_collection(db, collection_id)
            if not found:
                return False
            db.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_partition(found[0][0])))
            for table in ("users", "request_tokens", "imports", "deleted_faces", "collections"):
                db.execute(f"DELETE FROM {table} WHERE collection_id = %s", (collection_id,))
        return True

    def _retrying(self, change: Callable[[], Any]) -> Any:
        """Run a transaction that makes or drops a partition, again while the faces table's lock
        cannot be had within LOCK_TIMEOUT (running reads hold it shared); then StoreBusy."""
        for _ in range(LOCK_TRIES - 1):
            try:
                return change()
            except psycopg.errors.LockNotAvailable:
                time.sleep(1.0)
        try:
            return change()
        except psycopg.errors.LockNotAvailable:
            raise StoreBusy("The faces table is busy: the collection could not be created or deleted now; "
                            "try again.") from None

    def generation(self, collection_id: str) -> tuple[int, int]:
        """(writes, deletes) so far: lets a cached index see another process's changes cheaply."""
        found = self._rows("SELECT generation, deletions FROM collections WHERE collection_id = %s", (collection_id,))
        return (int(found[0][0]), int(found[0][1])) if found else (0, 0)

    def imported(self, collection_id: str) -> set[str]:
        return {r[0] for r in self._rows("SELECT source_sha256 FROM imports WHERE collection_id = %s",
                                         (collection_id,))}

    # -- faces -----------------------------------------------------------------------------------
    def count_faces(self, collection_id: str) -> int:
        """The collection's count, kept by every write (a COUNT(*) would read every face)."""
        found = self._rows("SELECT face_count FROM collections WHERE collection_id = %s", (collection_id,))
        return int(found[0][0]) if found else 0

    def add_faces(self, faces: list[FaceRow], source: tuple[str, str, str] | None = None) -> None:
        """Store ``faces``; with ``source`` = (collection_id, sha256, outcome), record in the same
        transaction that this source image is done (see ``SQLiteStore.add_faces``)."""
        if source is None and not faces:
            return
        collection_id = source[0] if source is not None else faces[0].collection_id
        with self._tx() as db:
            if faces:  # the row lock orders this collection's writes: seq order is commit order
                bumped = db.execute("UPDATE collections SET generation = generation + 1, face_count = face_count + %s "
                                    "WHERE collection_id = %s", (len(faces), faces[0].collection_id)).rowcount
            else:
                bumped = len(_lock_collection(db, collection_id))
            if not bumped:
                raise ResourceNotFoundException(f"The collection {collection_id!r} does not exist.")
            if source is not None:
                db.execute("INSERT INTO imports VALUES (%s, %s, %s, %s) ON CONFLICT (collection_id, source_sha256) "
                           "DO UPDATE SET image_id = EXCLUDED.image_id, outcome = EXCLUDED.outcome",
                           (source[0], source[1], faces[0].image_id if faces else None, source[2]))
            now = self.clock()
            with db.cursor() as cursor, cursor.copy(
                    "COPY faces (face_id, collection_id, image_id, external_image_id, width, height, left_, top, "
                    "confidence, user_id, vector, created) FROM STDIN") as copy:
                for f in faces:
                    copy.write_row((f.face_id, f.collection_id, f.image_id, f.external_image_id, *map(float, f.box),
                                    float(f.confidence), f.user_id, np.asarray(f.vector, np.float32).tobytes(),
                                    now if f.created is None else f.created))

    def list_faces(self, collection_id: str, after_seq: int, limit: int,
                   face_ids: list[str] | None = None, user_id: str | None = None) -> list[FaceRow]:
        column = "seq + 0" if face_ids else "seq"  # with face ids: no (collection, seq) range for the planner
        sql = f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_id = %s AND {column} > %s"
        args: list[object] = [collection_id, after_seq]
        if user_id is not None:
            sql, args = sql + " AND user_id = %s", [*args, user_id]
        if face_ids:  # ordered here: ORDER BY seq LIMIT would draw the planner to walk (collection, seq)
            rows = self._rows(sql + " AND face_id = ANY(%s)", [*args, list(face_ids)])
            return [_face(r) for r in (sorted(rows) if limit < 0 else sorted(rows)[:limit])]
        return [_face(r) for r in self._rows(sql + " ORDER BY seq LIMIT %s", [*args, limit])]

    def get_faces(self, collection_id: str, face_ids: list[str]) -> list[FaceRow]:
        return self.list_faces(collection_id, 0, len(face_ids), face_ids) if face_ids else []

    def delete_faces(self, collection_id: str, face_ids: list[str]) -> list[str]:
        """Delete the faces of ``face_ids`` that the collection has; those, in the order asked."""
        if not face_ids:
            return []
        with self._tx() as db:
            if not _lock_collection(db, collection_id):
                return []
            present = {r[0] for r in db.execute(
                "DELETE FROM faces WHERE collection_id = %s AND face_id = ANY(%s) RETURNING face_id",
                (collection_id, list(face_ids)))}
            found = [f for f in dict.fromkeys(face_ids) if f in present]  # in the order asked, as SQLite
            if not found:
                return []
            deletion, uncompacted, left = db.execute(
                "UPDATE collections SET generation = generation + 1, deletions = deletions + 1, uncompacted = "
                "uncompacted + %s, face_count = face_count - %s WHERE collection_id = %s "
                "RETURNING deletions, uncompacted, face_count", (len(found), len(found), collection_id)).fetchone()
            db.execute("INSERT INTO deleted_faces SELECT %s, %s, unnest(%s::text[])", (collection_id, deletion, found))
            db.execute("DELETE FROM deleted_faces WHERE collection_id = %s AND deletion <= %s",
                       (collection_id, deletion - DELETION_LOG))
        if uncompacted >= COMPACT_SHARE * (uncompacted + left):
            self.compact(collection_id)
        return found

    def faces_after(self, collection_id: str, seq: int, limit: int = -1) -> tuple[list[str], np.ndarray, int]:
        """Ids and vectors of the faces added after ``seq`` (at most ``limit``; -1: all), and the
        highest seq seen."""
        rows = self._rows("SELECT seq, face_id, vector FROM faces WHERE collection_id = %s AND seq > %s "
                          "ORDER BY seq LIMIT %s", (collection_id, seq, None if limit < 0 else limit))
        if not rows:
            return [], np.zeros((0, 0), np.float32), seq
        vectors = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), -1)
        return [r[1] for r in rows], vectors, int(rows[-1][0])

    def face_ids(self, collection_id: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT face_id FROM faces WHERE collection_id = %s", (collection_id,))]

    def deleted_since(self, collection_id: str, deletion: int) -> list[str] | None:
        """Face ids deleted after the collection's deletions counter was ``deletion``, or None when
        the log no longer reaches that far back (one statement: one snapshot)."""
        rows = self._rows("SELECT c.deletions, d.deletion, d.face_id FROM collections c LEFT JOIN deleted_faces d "
                          "ON d.collection_id = c.collection_id AND d.deletion > %s WHERE c.collection_id = %s",
                          (deletion, collection_id))
        if not rows:
            return None
        found = [(r[1], r[2]) for r in rows if r[1] is not None]
        if len({d for d, _ in found}) != rows[0][0] - deletion:
            return None
        return [f for _, f in found]

    # -- users -----------------------------------------------------------------------------------
    def create_user(self, collection_id: str, user_id: str, created: float) -> bool:
        """False if the user exists already."""
        with self._tx() as db:
            if not _lock_collection(db, collection_id, share=True):
                raise ResourceNotFoundException(f"The collection {collection_id!r} does not exist.")
            return db.execute("INSERT INTO users VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                              (collection_id, user_id, created)).rowcount > 0

    def delete_user(self, collection_id: str, user_id: str) -> bool:
        """Forget the user (see ``SQLiteStore.delete_user``)."""
        named = json.dumps(user_id)
        with self._tx() as db:
            db.execute("UPDATE faces SET user_id = NULL WHERE collection_id = %s AND user_id = %s",
                       (collection_id, user_id))
            db.execute("DELETE FROM request_tokens WHERE collection_id = %s "
                       "AND (strpos(parameters, %s) > 0 OR strpos(response, %s) > 0)", (collection_id, named, named))
            return db.execute("DELETE FROM users WHERE collection_id = %s AND user_id = %s",
                              (collection_id, user_id)).rowcount > 0

    def user_exists(self, collection_id: str, user_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM users WHERE collection_id = %s AND user_id = %s",
                               (collection_id, user_id)))

    def list_users(self, collection_id: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        return [(r[0], int(r[1])) for r in self._rows(
            "SELECT u.user_id, (SELECT COUNT(*) FROM faces f WHERE f.collection_id = u.collection_id "
            "AND f.user_id = u.user_id) FROM users u WHERE u.collection_id = %s AND u.user_id > %s "
            "ORDER BY u.user_id LIMIT %s", (collection_id, after or "", limit))]

    def count_users(self, collection_id: str) -> int:
        return int(self._rows("SELECT COUNT(*) FROM users WHERE collection_id = %s", (collection_id,))[0][0])

    def user_faces(self, collection_id: str, user_id: str) -> list[FaceRow]:
        return [_face(r) for r in self._rows(f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_id = %s "
                                             "AND user_id = %s ORDER BY seq", (collection_id, user_id))]

    def set_user(self, collection_id: str, face_ids: list[str], user_id: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE faces SET user_id = %s WHERE collection_id = %s AND face_id = ANY(%s)",
                       (user_id, collection_id, list(face_ids)))

    def face_users(self, collection_id: str) -> dict[str, str]:
        return dict(self._rows("SELECT face_id, user_id FROM faces WHERE collection_id = %s AND user_id IS NOT NULL",
                               (collection_id,)))

    def user_collections(self, user_id: str, collection_id: str | None = None) -> list[str]:
        sql, args = "SELECT collection_id FROM users WHERE user_id = %s", [user_id]
        if collection_id is not None:
            sql, args = sql + " AND collection_id = %s", [*args, collection_id]
        return [r[0] for r in self._rows(sql + " ORDER BY collection_id", args)]

    # -- request tokens, erasure and face retention ------------------------------------------------
    def get_token(self, collection_id: str, operation: str, token: str) -> tuple[str, str] | None:
        found = self._rows("SELECT parameters, response FROM request_tokens WHERE collection_id = %s "
                           "AND operation = %s AND token = %s", (collection_id, operation, token))
        return found[0] if found else None

    def put_token(self, collection_id: str, operation: str, token: str, parameters: str, response: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO request_tokens VALUES (%s, %s, %s, %s, %s) "
                       "ON CONFLICT (collection_id, operation, token) "
                       "DO UPDATE SET parameters = EXCLUDED.parameters, response = EXCLUDED.response",
                       (collection_id, operation, token, parameters, response))

    def faces_named(self, external_image_id: str, collection_id: str | None = None) -> list[FaceRow]:
        sql, args = f"SELECT {_FACE_COLUMNS} FROM faces WHERE external_image_id = %s", [external_image_id]
        if collection_id is not None:
            sql, args = sql + " AND collection_id = %s", [*args, collection_id]
        return [_face(r) for r in self._rows(sql + " ORDER BY collection_id, seq", args)]

    def faces_before(self, collection_id: str, before: float, limit: int) -> list[FaceRow]:
        return [_face(r) for r in self._rows(f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_id = %s "
                                             "AND created < %s ORDER BY seq LIMIT %s", (collection_id, before, limit))]

    def compact(self, collection_id: str) -> None:
        """Rewrite the collection's partition (``VACUUM FULL``): no deleted face's row is left in its
        files. Its faces are locked while it runs (reads and writes of it wait)."""
        found = self._rows("SELECT part, uncompacted FROM collections WHERE collection_id = %s", (collection_id,))
        if found:
            self._vacuum(sql.SQL("FULL {}").format(_partition(found[0][0])))
            with self._tx() as db:
                db.execute("UPDATE collections SET uncompacted = GREATEST(uncompacted - %s, 0) "
                           "WHERE collection_id = %s", (found[0][1], collection_id))

    def vacuum(self) -> None:
        """VACUUM every table of the store (deleted rows pruned, their space free for reuse)."""
        self._vacuum(sql.SQL("faces, " + _SMALL_TABLES))

    def _vacuum(self, what: str | sql.Composable) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)) as db:
            db.execute(sql.SQL("VACUUM ") + (sql.SQL(what) if isinstance(what, str) else what))


def _partition(part: int) -> sql.Identifier:
    return sql.Identifier(f"faces_{int(part)}")


def _lock_collection(db: Any, collection_id: str, share: bool = False) -> list[tuple]:
    """Lock the collection's row for this transaction (its writes queue behind each other); its
    [(part,)], or [] if there is none."""
    mode = "FOR SHARE" if share else "FOR UPDATE"
    return db.execute(f"SELECT part FROM collections WHERE collection_id = %s {mode}", (collection_id,)).fetchall()


def _face(r: tuple) -> FaceRow:
    seq, face_id, cid, image_id, ext, w, h, left, top, conf, user, vec, created = r
    return FaceRow(face_id=face_id, collection_id=cid, image_id=image_id, external_image_id=ext,
                   box=(w, h, left, top), confidence=conf, vector=np.frombuffer(vec, np.float32),
                   user_id=user, seq=seq, created=created)
