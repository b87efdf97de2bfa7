"""The embedded store: one SQLite database (WAL) holding collections, faces and their vectors;
its schema is versioned (``faceprint.store.migrations.sqlite``), migrated when opened.

Every write is one transaction with ``synchronous=FULL``: once a call returns, its faces
survive a crash or ``kill -9``. Connections are per thread; SQLite's WAL lets readers run
while one writer writes.

Deletion erases: every connection has ``secure_delete`` on (SQLite overwrites deleted rows and
freed pages with zeros), and after a call that deleted faces, users or a collection the WAL,
which still holds the pages as they were before, is checkpointed and truncated (``erase_wal``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceprint.errors import ResourceAlreadyExistsException, ResourceNotFoundException
from faceprint.store import CollectionRow, FaceRow
from faceprint.store.database import Database
from faceprint.store.migrations.sqlite import SCHEMA_V1 as SCHEMA
from faceprint.store.migrations.sqlite import migrate

__all__ = ["SCHEMA", "SQLiteStore"]


DELETION_LOG = 10_000
"""Delete calls remembered per collection; an index further behind rebuilds its list of faces."""

_FACE_COLUMNS = ("seq, face_id, collection_id, image_id, external_image_id, width, height, left_, top, "
                 "confidence, user_id, vector, created")


class SQLiteStore:
    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        """Open (or create) the database at ``path`` (private files: see ``Database``); ``clock``
        dates the faces stored (for face retention)."""
        self.path = Path(path)
        self.clock = clock
        self._database = Database(self.path, "")
        self._db, self._tx, self._erase_wal = self._database.db, self._database.tx, self._database.erase_wal
        self.schema_version = migrate(self._database, clock)
        """The schema version (``faceprint.store.migrations.sqlite``): the latest once opened."""

    def create_collection(self, row: CollectionRow) -> None:
        try:
            with self._tx() as db:
                db.execute("INSERT INTO collections (collection_id, arn, face_model_version, dim, created) "
                           "VALUES (?, ?, ?, ?, ?)",
                           (row.collection_id, row.arn, row.face_model_version, row.dim, row.created))
        except sqlite3.IntegrityError:
            raise ResourceAlreadyExistsException(
                f"The collection {row.collection_id!r} already exists.") from None

    def get_collection(self, collection_id: str) -> CollectionRow | None:
        found = self._db().execute("SELECT collection_id, arn, face_model_version, dim, created FROM collections "
                                   "WHERE collection_id = ?", (collection_id,)).fetchone()
        return CollectionRow(*found) if found else None

    def generation(self, collection_id: str) -> tuple[int, int]:
        """(writes, deletes) so far: lets a cached index see another process's changes cheaply."""
        found = self._db().execute("SELECT generation, deletions FROM collections WHERE collection_id = ?",
                                   (collection_id,)).fetchone()
        return (int(found[0]), int(found[1])) if found else (0, 0)

    def faces_after(self, collection_id: str, seq: int, limit: int = -1) -> tuple[list[str], np.ndarray, int]:
        """Ids and vectors of the faces added after ``seq`` (at most ``limit``; -1: all), and the
        highest seq seen."""
        rows = self._db().execute("SELECT seq, face_id, vector FROM faces WHERE collection_id = ? AND seq > ? "
                                  "ORDER BY seq LIMIT ?", (collection_id, seq, limit)).fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32), seq
        vectors = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), -1)
        return [r[1] for r in rows], vectors, int(rows[-1][0])

    def list_collections(self, after: str | None, limit: int) -> list[CollectionRow]:
        rows = self._db().execute(
            "SELECT collection_id, arn, face_model_version, dim, created FROM collections "
            "WHERE collection_id > ? ORDER BY collection_id LIMIT ?",
            (after or "", limit)).fetchall()
        return [CollectionRow(*r) for r in rows]

    def imported(self, collection_id: str) -> set[str]:
        """SHA-256 of every source image a bulk import has finished in this collection."""
        rows = self._db().execute("SELECT source_sha256 FROM imports WHERE collection_id = ?", (collection_id,))
        return {r[0] for r in rows}

    # -- users ---------------------------------------------------------------------------------
    def create_user(self, collection_id: str, user_id: str, created: float) -> bool:
        """False if the user exists already."""
        try:
            with self._tx() as db:
                _require_collection(db, collection_id)
                db.execute("INSERT INTO users VALUES (?, ?, ?)", (collection_id, user_id, created))
        except sqlite3.IntegrityError:
            return False
        return True

    def delete_user(self, collection_id: str, user_id: str) -> bool:
        """Forget the user: its faces stay (without it), and the ClientRequestToken records whose
        request or answer name it go too (a token used before then works as a new one)."""
        with self._tx() as db:
            db.execute("UPDATE faces SET user_id = NULL WHERE collection_id = ? AND user_id = ?",
                       (collection_id, user_id))
            named = json.dumps(user_id)  # as the records' JSON holds it, quotes included
            db.execute("DELETE FROM request_tokens WHERE collection_id = ? "
                       "AND (instr(parameters, ?) > 0 OR instr(response, ?) > 0)", (collection_id, named, named))
            deleted = db.execute("DELETE FROM users WHERE collection_id = ? AND user_id = ?",
                                 (collection_id, user_id)).rowcount > 0
        if deleted:
            self._erase_wal()
        return deleted

    def user_exists(self, collection_id: str, user_id: str) -> bool:
        return self._db().execute("SELECT 1 FROM users WHERE collection_id = ? AND user_id = ?",
                                  (collection_id, user_id)).fetchone() is not None

    def list_users(self, collection_id: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        """(user id, number of faces) in user id order."""
        return [(r[0], int(r[1])) for r in self._db().execute(
            "SELECT u.user_id, (SELECT COUNT(*) FROM faces f WHERE f.collection_id = u.collection_id "
            "AND f.user_id = u.user_id) FROM users u WHERE u.collection_id = ? AND u.user_id > ? "
            "ORDER BY u.user_id LIMIT ?", (collection_id, after or "", limit))]

    def count_users(self, collection_id: str) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM users WHERE collection_id = ?",
                                      (collection_id,)).fetchone()[0])

    def user_faces(self, collection_id: str, user_id: str) -> list[FaceRow]:
        rows = self._db().execute(f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_id = ? AND user_id = ? "
                                  "ORDER BY seq", (collection_id, user_id)).fetchall()
        return [_face(r) for r in rows]

    def set_user(self, collection_id: str, face_ids: list[str], user_id: str | None) -> None:
        with self._tx() as db:
            db.executemany("UPDATE faces SET user_id = ? WHERE collection_id = ? AND face_id = ?",
                           [(user_id, collection_id, f) for f in face_ids])

    def face_ids(self, collection_id: str) -> list[str]:
        """Every face id in the collection (to reconcile an index opened from its file)."""
        return [r[0] for r in self._db().execute("SELECT face_id FROM faces WHERE collection_id = ?",
                                                 (collection_id,))]

    def face_users(self, collection_id: str) -> dict[str, str]:
        """face id -> user id, for the faces that belong to a user."""
        return dict(self._db().execute(
            "SELECT face_id, user_id FROM faces WHERE collection_id = ? AND user_id IS NOT NULL", (collection_id,)))

    def get_token(self, collection_id: str, operation: str, token: str) -> tuple[str, str] | None:
        """(parameters, response) recorded for a ClientRequestToken."""
        return self._db().execute(
            "SELECT parameters, response FROM request_tokens WHERE collection_id = ? AND operation = ? "
            "AND token = ?", (collection_id, operation, token)).fetchone()

    def put_token(self, collection_id: str, operation: str, token: str, parameters: str, response: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO request_tokens VALUES (?, ?, ?, ?, ?)",
                       (collection_id, operation, token, parameters, response))

    def delete_collection(self, collection_id: str) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM faces WHERE collection_id = ?", (collection_id,))
            db.execute("DELETE FROM users WHERE collection_id = ?", (collection_id,))
            db.execute("DELETE FROM request_tokens WHERE collection_id = ?", (collection_id,))
            db.execute("DELETE FROM imports WHERE collection_id = ?", (collection_id,))
            db.execute("DELETE FROM deleted_faces WHERE collection_id = ?", (collection_id,))
            deleted = db.execute("DELETE FROM collections WHERE collection_id = ?", (collection_id,)).rowcount > 0
        if deleted:
            self._erase_wal()
        return deleted

    def count_faces(self, collection_id: str) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM faces WHERE collection_id = ?",
                                      (collection_id,)).fetchone()[0])

    def add_faces(self, faces: list[FaceRow], source: tuple[str, str, str] | None = None) -> None:
        """Store ``faces``; with ``source`` = (collection_id, sha256, outcome), record in the same
        transaction that this source image is done, so a bulk import resumes without duplicates."""
        with self._tx() as db:
            if source is not None or faces:
                _require_collection(db, source[0] if source is not None else faces[0].collection_id)
            if source is not None:
                db.execute("INSERT OR REPLACE INTO imports VALUES (?, ?, ?, ?)",
                           (source[0], source[1], faces[0].image_id if faces else None, source[2]))
            now = self.clock()
            db.executemany(
                "INSERT INTO faces (face_id, collection_id, image_id, external_image_id, width, height, "
                "left_, top, confidence, user_id, vector, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(f.face_id, f.collection_id, f.image_id, f.external_image_id, *f.box, f.confidence,
                  f.user_id, np.asarray(f.vector, np.float32).tobytes(), now if f.created is None else f.created)
                 for f in faces])
            if faces:
                db.execute("UPDATE collections SET generation = generation + 1 WHERE collection_id = ?",
                           (faces[0].collection_id,))

    def list_faces(self, collection_id: str, after_seq: int, limit: int,
                   face_ids: list[str] | None = None, user_id: str | None = None) -> list[FaceRow]:
        # with face ids, the unique face_id index must drive the query, not the collection's
        column = "+collection_id" if face_ids else "collection_id"
        sql = f"SELECT {_FACE_COLUMNS} FROM faces WHERE {column} = ? AND seq > ?"
        args: list[object] = [collection_id, after_seq]
        if user_id is not None:
            sql += " AND user_id = ?"
            args.append(user_id)
        if face_ids:
            sql += f" AND face_id IN ({','.join('?' * len(face_ids))})"
            args += face_ids
        rows = self._db().execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        return [_face(r) for r in rows]

    def get_faces(self, collection_id: str, face_ids: list[str]) -> list[FaceRow]:
        return self.list_faces(collection_id, 0, len(face_ids), face_ids) if face_ids else []

    def delete_faces(self, collection_id: str, face_ids: list[str]) -> list[str]:
        """Delete the faces of ``face_ids`` that the collection has; those, in the order asked."""
        with self._tx() as db:
            marks = ",".join("?" * len(face_ids))
            present = {r[0] for r in db.execute(
                f"SELECT face_id FROM faces WHERE +collection_id = ? AND face_id IN ({marks})",
                (collection_id, *face_ids))}
            found = [f for f in dict.fromkeys(face_ids) if f in present]  # in the order asked
            db.execute(f"DELETE FROM faces WHERE +collection_id = ? AND face_id IN ({marks})",
                       (collection_id, *face_ids))
            if found:
                db.execute("UPDATE collections SET generation = generation + 1, deletions = deletions + 1 "
                           "WHERE collection_id = ?", (collection_id,))
                (deletion,) = db.execute("SELECT deletions FROM collections WHERE collection_id = ?",
                                         (collection_id,)).fetchone()
                db.executemany("INSERT INTO deleted_faces VALUES (?, ?, ?)",
                               [(collection_id, deletion, f) for f in found])
                db.execute("DELETE FROM deleted_faces WHERE collection_id = ? AND deletion <= ?",
                           (collection_id, deletion - DELETION_LOG))
        if found:
            self._erase_wal()
        return found

    # -- erasure and face retention -----------------------------------------------------------------
    def faces_named(self, external_image_id: str, collection_id: str | None = None) -> list[FaceRow]:
        """The faces with this ExternalImageId, in every collection (or in ``collection_id``)."""
        sql, args = f"SELECT {_FACE_COLUMNS} FROM faces WHERE external_image_id = ?", [external_image_id]
        if collection_id is not None:
            sql, args = sql + " AND collection_id = ?", [*args, collection_id]
        return [_face(r) for r in self._db().execute(sql + " ORDER BY collection_id, seq", args)]

    def user_collections(self, user_id: str, collection_id: str | None = None) -> list[str]:
        """The collections (all, or ``collection_id``) that have a user of this id."""
        sql, args = "SELECT collection_id FROM users WHERE user_id = ?", [user_id]
        if collection_id is not None:
            sql, args = sql + " AND collection_id = ?", [*args, collection_id]
        return [r[0] for r in self._db().execute(sql + " ORDER BY collection_id", args)]

    def faces_before(self, collection_id: str, before: float, limit: int) -> list[FaceRow]:
        """Up to ``limit`` faces of the collection stored before ``before`` (epoch seconds), oldest first."""
        rows = self._db().execute(f"SELECT {_FACE_COLUMNS} FROM faces WHERE collection_id = ? AND created < ? "
                                  "ORDER BY seq LIMIT ?", (collection_id, before, limit)).fetchall()
        return [_face(r) for r in rows]

    def deleted_since(self, collection_id: str, deletion: int) -> list[str] | None:
        """Face ids deleted after the collection's deletions counter was ``deletion``, or None
        when the log no longer reaches that far back."""
        db = self._db()
        db.execute("BEGIN")  # one snapshot for the counter and the log
        try:
            found = db.execute("SELECT deletions FROM collections WHERE collection_id = ?",
                               (collection_id,)).fetchone()
            rows = db.execute("SELECT deletion, face_id FROM deleted_faces WHERE collection_id = ? AND deletion > ?",
                              (collection_id, deletion)).fetchall()
        finally:
            db.execute("COMMIT")
        if found is None or len({r[0] for r in rows}) != found[0] - deletion:
            return None
        return [r[1] for r in rows]


def _require_collection(db: sqlite3.Connection, collection_id: str) -> None:
    """Inside a write: the collection may have been deleted since the caller looked it up."""
    if db.execute("SELECT 1 FROM collections WHERE collection_id = ?", (collection_id,)).fetchone() is None:
        raise ResourceNotFoundException(f"The collection {collection_id!r} does not exist.")


def _face(r: tuple) -> FaceRow:
    seq, face_id, cid, image_id, ext, w, h, left, top, conf, user, vec, created = r
    return FaceRow(face_id=face_id, collection_id=cid, image_id=image_id, external_image_id=ext,
                   box=(w, h, left, top), confidence=conf, vector=np.frombuffer(vec, np.float32),
                   user_id=user, seq=seq, created=created)
