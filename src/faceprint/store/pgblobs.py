"""Face crops and stored probes in the store's PostgreSQL database (parts ``crops`` and ``probes`` of
``faceprint.store.pgshared``), where the embedded default keeps them as files of the home
(``HOME/crops``, ``HOME/audit/probes``), so that every ``faceprint serve`` node sees the crops and
probes any node kept, and a delete through any node removes them for all.

:class:`PgCropStore` and :class:`PgProbeStore` have the methods of :class:`faceprint.crops.CropStore`
and :class:`faceprint.audit.probe_store.ProbeStore`; where those answer a file's ``Path`` (``path``,
``find``), these answer a :class:`StoredBlob` with the two things callers ask of that path
(``is_file()``, ``read_bytes()``).

Deletion erases as the face store's does (docs/scale.md, "How deletion erases in PostgreSQL"): a
delete removes the rows in one transaction, gone from every read from then on; their bytes (kept
uncompressed out of line, ``STORAGE EXTERNAL``, in TOAST tables) leave the table files when their
partition is **rewritten** (``VACUUM FULL``). Each table has ``PARTITIONS`` hash partitions, so a
rewrite copies and locks a sixteenth of it: a delete rewrites each partition it deleted from once
the rows deleted there since its last rewrite reach ``COMPACT_SHARE`` of the rows it keeps, and
:meth:`PgCropStore.compact` rewrites them all on demand. Below that share autovacuum prunes them
(every partition and its TOAST table is set to be vacuumed after any delete) and later writes
overwrite the space freed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from faceprint.audit.probe_store import EXTENSIONS, SHA256, Probe
from faceprint.crops import FACE_ID, MAX_CROP
from faceprint.store.migrations import Migration
from faceprint.store.pgdb import reaching
from faceprint.store.pgshared import PgPart, statements
from faceprint.store.postgres import CONNECT_TIMEOUT

COMPACT_SHARE = 0.1
"""Share of a partition's rows deleted since its last rewrite that makes a delete rewrite it (``VACUUM FULL``)."""
PARTITIONS = 16
"""Hash partitions of each table (by face id, by digest): a rewrite locks and copies one of them."""

_VACUUM = ("autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1, "
           "toast.autovacuum_vacuum_scale_factor = 0, toast.autovacuum_vacuum_threshold = 1")


def _schema(table: str, columns: str, key: str, blob: str, extra: str = "") -> str:
    """The table, hash-partitioned by ``key`` into ``table_0`` .. ``table_15`` (each vacuumed after any
    delete, its ``blob`` column out of line and uncompressed), and its state: one row a partition."""
    state = table.split("_", 1)[0] + "_state"
    parts = "".join(f"CREATE TABLE {table}_{i} PARTITION OF {table} FOR VALUES WITH (MODULUS {PARTITIONS}, "
                    f"REMAINDER {i}) WITH ({_VACUUM});\n"
                    f"ALTER TABLE {table}_{i} ALTER COLUMN {blob} SET STORAGE EXTERNAL;\n" for i in range(PARTITIONS))
    return f"""
CREATE TABLE {table} ({columns}) PARTITION BY HASH ({key});
ALTER TABLE {table} ALTER COLUMN {blob} SET STORAGE EXTERNAL;
{parts}{extra}
CREATE TABLE {state} (partition TEXT PRIMARY KEY, uncompacted BIGINT NOT NULL);
INSERT INTO {state} SELECT '{table}_' || i, 0 FROM generate_series(0, {PARTITIONS - 1}) AS i;
"""


CROPS_TABLE = "crops_faces"
CROPS_MIGRATIONS = (Migration(1, "face crops (JPEG), out of line and vacuumed after any delete", statements(_schema(
    CROPS_TABLE, 'collection_id TEXT COLLATE "C" NOT NULL, face_id TEXT COLLATE "C" NOT NULL, jpeg BYTEA NOT NULL, '
    "created DOUBLE PRECISION NOT NULL, PRIMARY KEY (collection_id, face_id)", "face_id", "jpeg"))),)
PROBES_TABLE = "probes_stored"
PROBES_MIGRATIONS = (Migration(1, "stored probes, out of line and vacuumed after any delete", statements(_schema(
    PROBES_TABLE, 'sha256 TEXT COLLATE "C" PRIMARY KEY, ext TEXT NOT NULL, data BYTEA NOT NULL, '
    "used DOUBLE PRECISION NOT NULL", "sha256", "data",
    f"CREATE INDEX {PROBES_TABLE}_by_use ON {PROBES_TABLE} (used);"))),)


class StoredBlob:
    """A crop or probe kept in PostgreSQL, standing where the embedded store answers its file's path."""

    def __init__(self, read: Callable[[], bytes | None], exists: Callable[[], bool]) -> None:
        self._read, self._exists = read, exists

    def is_file(self) -> bool:
        return self._exists()

    def read_bytes(self) -> bytes:
        data = self._read()
        if data is None:
            raise FileNotFoundError("not kept (any more)")
        return data


class BlobTable:
    """One part's table of blobs: its pool (opened, and the part migrated, at the first use: a node
    that never stores a probe opens no pool for them), the rows deleted from each partition since its
    last rewrite, and the rewrites."""

    def __init__(self, url: str, part: str, table: str, migrations: Sequence[Migration],
                 compact_share: float, pool_size: int) -> None:
        self.url, self.compact_share = url, compact_share
        self.table, self.state = table, f"{part}_state"
        self._open = lambda: PgPart(url, part, migrations, pool_size=pool_size)
        self._part: PgPart | None = None
        self._lock = threading.Lock()

    @property
    def part(self) -> PgPart:
        with self._lock:
            if self._part is None:
                with reaching():
                    self._part = self._open()
            return self._part

    def close(self) -> None:
        with self._lock:
            if self._part is not None:
                self._part.close()
                self._part = None

    def rows(self, query: str, args: Sequence[Any] = ()) -> list[tuple]:
        with reaching():
            return self.part.rows(query, args)

    def delete(self, where: str, args: Sequence[Any]) -> int:
        """Delete the rows ``where`` selects (one transaction, counted by partition), then rewrite the
        partitions where the share is reached; how many rows were deleted."""
        with reaching():
            with self.part.tx() as db:
                gone = Counter(r[0] for r in db.execute(
                    f"DELETE FROM {self.table} WHERE {where} RETURNING tableoid::regclass::text", args).fetchall())
                for partition, count in sorted(gone.items()):
                    db.execute(f"UPDATE {self.state} SET uncompacted = uncompacted + %s WHERE partition = %s",
                               (count, partition))
            due = self._due(sorted(gone))
            if due:
                self.compact(due)
        return sum(gone.values())

    def _due(self, partitions: list[str]) -> list[str]:
        """Those of ``partitions`` whose rows deleted since their last rewrite reach the share of those
        kept (the statistics' live-row estimate: cheap, never reading the table)."""
        if not partitions:
            return []
        found = self.part.rows("SELECT s.partition, s.uncompacted, GREATEST(COALESCE(t.n_live_tup, 0), c.reltuples, 0) "
                               f"FROM {self.state} s JOIN pg_class c ON c.oid = to_regclass(s.partition) "
                               "LEFT JOIN pg_stat_user_tables t ON t.relid = c.oid WHERE s.partition = ANY(%s) "
                               "ORDER BY s.partition", (partitions,))
        return [name for name, deleted, kept in found if deleted > 0 and deleted >= self.compact_share * float(kept)]

    def compact(self, partitions: list[str] | None = None) -> None:
        """Rewrite ``partitions`` (None: every one), one after the other (``VACUUM FULL``): no deleted
        or replaced row's bytes are left in their files (or their TOAST tables'). Reads and writes of a
        partition wait while it is rewritten; the other partitions' do not."""
        with reaching():
            seen = dict(self.part.rows(f"SELECT partition, uncompacted FROM {self.state} ORDER BY partition"))
            for partition in partitions if partitions is not None else list(seen):
                with psycopg.connect(self.url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)) as db:
                    db.execute(sql.SQL("VACUUM FULL {}").format(sql.Identifier(partition)))
                self.part.execute(f"UPDATE {self.state} SET uncompacted = GREATEST(uncompacted - %s, 0) "
                                  "WHERE partition = %s", (seen.get(partition, 0), partition))


class _PgBlobStore:
    """What both stores share: their :class:`BlobTable` (``part``, ``table``, ``migrations``) and clock."""

    shared = True
    part: str
    table: str
    migrations: Sequence[Migration]

    def __init__(self, url: str, *, compact_share: float = COMPACT_SHARE, pool_size: int = 4,
                 clock: Callable[[], float] = time.time) -> None:
        self.blobs = BlobTable(url, self.part, self.table, self.migrations, compact_share, pool_size)
        self.clock = clock

    def close(self) -> None:
        self.blobs.close()

    def compact(self) -> None:
        self.blobs.compact()


class PgCropStore(_PgBlobStore):
    """Face crops in PostgreSQL (table ``crops_faces``): :class:`faceprint.crops.CropStore`'s methods."""

    part, table, migrations = "crops", CROPS_TABLE, CROPS_MIGRATIONS

    @staticmethod
    def _check(face_id: str) -> None:
        if not isinstance(face_id, str) or not FACE_ID.fullmatch(face_id):
            raise ValueError(f"not a face id: {face_id!r}")

    def path(self, collection_id: str, face_id: str) -> StoredBlob:
        """The crop of ``face_id`` (kept or not); ValueError for anything but a face id."""
        self._check(face_id)
        return StoredBlob(lambda: self.get(collection_id, face_id), lambda: self.has(collection_id, face_id))

    def save(self, collection_id: str, face_id: str, jpeg: bytes) -> StoredBlob:
        """Store one crop (replacing the face's earlier one, if any)."""
        if not isinstance(jpeg, bytes | bytearray) or not jpeg or len(jpeg) > MAX_CROP:
            raise ValueError("a crop is 1 byte to 4 MiB of JPEG")
        blob = self.path(collection_id, face_id)
        with reaching(), self.blobs.part.tx() as db:
            for (partition,) in db.execute(f"DELETE FROM {CROPS_TABLE} WHERE collection_id = %s AND face_id = %s "
                                           "RETURNING tableoid::regclass::text", (collection_id, face_id)):
                db.execute(f"UPDATE {self.blobs.state} SET uncompacted = uncompacted + 1 WHERE partition = %s",
                           (partition,))  # the face's earlier crop: a deleted row's bytes now
            db.execute(f"INSERT INTO {CROPS_TABLE} VALUES (%s, %s, %s, %s) ON CONFLICT (collection_id, face_id) "
                       "DO UPDATE SET jpeg = EXCLUDED.jpeg, created = EXCLUDED.created",
                       (collection_id, face_id, bytes(jpeg), self.clock()))
        return blob

    def get(self, collection_id: str, face_id: str) -> bytes | None:
        """The crop's JPEG, or None where none is kept."""
        found = self.blobs.rows(f"SELECT jpeg FROM {CROPS_TABLE} WHERE collection_id = %s AND face_id = %s",
                                (collection_id, face_id))
        return bytes(found[0][0]) if found else None

    def has(self, collection_id: str, face_id: str) -> bool:
        return bool(self.blobs.rows(f"SELECT 1 FROM {CROPS_TABLE} WHERE collection_id = %s AND face_id = %s",
                                    (collection_id, face_id)))

    def face_ids(self, collection_id: str) -> Iterator[str]:
        """The faces of ``collection_id`` that have a crop."""
        rows = self.blobs.rows(f"SELECT face_id FROM {CROPS_TABLE} WHERE collection_id = %s ORDER BY face_id",
                               (collection_id,))
        yield from (r[0] for r in rows)

    def delete(self, collection_id: str, face_ids: Iterable[str]) -> int:
        """Erase the crops of ``face_ids`` (those that have one); answers how many were erased."""
        wanted = sorted({f for f in face_ids if isinstance(f, str) and FACE_ID.fullmatch(f)})
        if not wanted:
            return 0
        return self.blobs.delete("collection_id = %s AND face_id = ANY(%s)", (collection_id, wanted))

    def drop(self, collection_id: str) -> int:
        """Erase every crop of the collection; answers how many were erased."""
        return self.blobs.delete("collection_id = %s", (collection_id,))


class PgProbeStore(_PgBlobStore):
    """Stored probes in PostgreSQL (table ``probes_stored``): :class:`faceprint.audit.probe_store.ProbeStore`'s
    methods. A probe's time of last use is the node's clock at the search, as a file's mtime is."""

    part, table, migrations = "probes", PROBES_TABLE, PROBES_MIGRATIONS

    def path(self, sha256: str, ext: str) -> StoredBlob:
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256) or ext not in EXTENSIONS:
            raise ValueError(f"not a probe name: {sha256!r}.{ext!r}")
        return StoredBlob(lambda: self._get(sha256, ext), lambda: self._get(sha256, ext, "1") is not None)

    def save(self, probe: Probe) -> bool:
        """Store ``probe``; False if it was stored already (its time of use set to now)."""
        self.path(probe.sha256, probe.ext)
        with reaching(), self.blobs.part.tx() as db:
            now = self.clock()
            if db.execute(f"UPDATE {PROBES_TABLE} SET used = %s WHERE sha256 = %s", (now, probe.sha256)).rowcount:
                return False
            return db.execute(f"INSERT INTO {PROBES_TABLE} VALUES (%s, %s, %s, %s) ON CONFLICT (sha256) DO NOTHING",
                              (probe.sha256, probe.ext, probe.data, now)).rowcount == 1

    def _get(self, sha256: str, ext: str | None = None, what: str = "data") -> bytes | None:
        query, args = f"SELECT {what} FROM {PROBES_TABLE} WHERE sha256 = %s", [sha256]
        if ext is not None:
            query, args = query + " AND ext = %s", [*args, ext]
        found = self.blobs.rows(query, args)
        return (bytes(found[0][0]) if what == "data" else b"") if found else None

    def find(self, sha256: str) -> StoredBlob | None:
        """The stored probe with this digest, or None (ValueError for anything but a SHA-256)."""
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            raise ValueError(f"not a probe name: {sha256!r}")
        found = self.blobs.rows(f"SELECT ext FROM {PROBES_TABLE} WHERE sha256 = %s", (sha256,))
        return self.path(sha256, found[0][0]) if found else None

    def has(self, sha256: str) -> bool:
        try:
            return self.find(sha256) is not None
        except ValueError:
            return False

    def get(self, sha256: str) -> bytes | None:
        """The stored probe's bytes, or None where it is not kept."""
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            return None
        return self._get(sha256)

    def delete(self, sha256: str) -> bool:
        """Erase the stored probe with this digest; False if none was kept."""
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            return False
        return bool(self.blobs.delete("sha256 = %s", (sha256,)))

    def digests(self) -> list[str]:
        """The digests of the probes kept."""
        return [r[0] for r in self.blobs.rows(f"SELECT sha256 FROM {PROBES_TABLE} ORDER BY sha256")]

    def prune(self, older_than_days: float, now: float | None = None) -> int:
        """Erase the probes last used by a search more than ``older_than_days`` ago; answers how many."""
        now = self.clock() if now is None else now
        return self.blobs.delete("used < %s", (now - older_than_days * 86400,))
