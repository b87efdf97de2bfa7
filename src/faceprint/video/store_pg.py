"""The video job store in PostgreSQL (part ``video`` of ``faceprint.store.pgshared``): the same
public methods as :class:`faceprint.video.store.JobStore`, for when the store URL is PostgreSQL, so
that every ``faceprint serve`` node (any machine) shares the jobs, their results and their inputs.

- **Claims**: a runner with a free worker takes the oldest queued job with ``FOR UPDATE SKIP
  LOCKED``: two nodes never take the same job, and neither waits for the other.
- **Leases**: a claimed job carries a lease (``lease_seconds``, by the database's clock, so the
  nodes' clocks need not agree) that its runner renews while the job runs (``renew``). A job whose
  lease lapsed (its node died, or lost the database) is requeued by whichever node looks next
  (``recover``; every runner looks every third of a lease), or FAILED once it was started
  ``max_attempts`` times, as a single home's runner does with the jobs of a dead runner. Every
  write of a worker is conditional on its run still owning the job, so a node that comes back after
  its lease lapsed writes nothing more.
- **The limit**: ``insert`` counts the jobs in progress under a transaction-scoped advisory lock, so
  ``--max-video-jobs`` holds across nodes starting jobs at once.
- **Inputs**: a job's video (bytes given to Start, or a file given by path, which another node could
  not read) is kept in ``video_inputs`` in ``CHUNK``-byte pieces; the node that claims the job
  streams it to a file under its own home (``HOME/video/inputs/JOB``), one piece in memory at a
  time, and the pieces and the files are erased when the job ends. ``Video.S3Object`` videos are
  fetched by the claiming node from the buckets, as on one machine.
- **NextTokens** are signed with the job's secret, kept in its row: a token from one node is good on
  every node.
- **Notifications**: a finished job's notification is claimed (a lease of ``NOTIFY_LEASE`` seconds)
  by the one runner that sends it; one left unsent by a node that died is claimed by another once
  that lease lapsed.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faceprint.errors import LimitExceededException, VideoTooLargeException
from faceprint.home import create_private, private_folder
from faceprint.store.migrations import Migration
from faceprint.store.pgshared import PgPart, statements
from faceprint.video.context import Item
from faceprint.video.store import (
    _COLUMNS,
    _NAMES,
    FAILED,
    ORPHAN_AGE,
    QUEUED,
    RUNNING,
    SORTS,
    SUCCEEDED,
    JobRow,
    erase_needles,
    page_token,
    token_position,
    without_matches,
)

PART = "video"
CHUNK = 4 * 1024 * 1024
"""Bytes in one piece of a job's input video (one piece is in memory at a time)."""
LEASE = 30.0
"""Seconds a claimed job stays its runner's without a renewal."""
NOTIFY_LEASE = 120.0
"""Seconds a claimed notification is its sender's (a delivery takes at most about 65 s)."""
NOW = "extract(epoch from clock_timestamp())"
"""The database's clock: leases do not depend on the nodes' clocks agreeing."""
LIMIT_LOCK = 0x76696430  # "vid0": serialises Starts counting the jobs in progress
_VACUUM = "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1"

SCHEMA_V1 = f"""
CREATE TABLE video_jobs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    job_id TEXT PRIMARY KEY,
    api TEXT NOT NULL, status TEXT NOT NULL, status_message TEXT, params TEXT NOT NULL,
    request_hash TEXT NOT NULL, client_token TEXT, job_tag TEXT, notification TEXT,
    notify_pending BOOLEAN NOT NULL DEFAULT FALSE, source_kind TEXT NOT NULL, source TEXT NOT NULL,
    profile TEXT NOT NULL, owner TEXT, secret TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
    started DOUBLE PRECISION, finished DOUBLE PRECISION, expiry_seconds DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION, attempts INTEGER NOT NULL DEFAULT 0, frames_done BIGINT NOT NULL DEFAULT 0,
    frames_total BIGINT NOT NULL DEFAULT 0, metadata TEXT, limits TEXT NOT NULL,
    lease DOUBLE PRECISION, notify_lease DOUBLE PRECISION
) WITH ({_VACUUM});
CREATE UNIQUE INDEX video_jobs_by_token ON video_jobs(api, client_token) WHERE client_token IS NOT NULL;
CREATE INDEX video_jobs_by_status ON video_jobs(status, created, seq);
CREATE INDEX video_jobs_by_expiry ON video_jobs(expires) WHERE expires IS NOT NULL;
CREATE TABLE video_items (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES video_jobs(job_id) ON DELETE CASCADE,
    timestamp_ms BIGINT NOT NULL, idx BIGINT NOT NULL, body TEXT NOT NULL
) WITH ({_VACUUM});
CREATE INDEX video_items_by_timestamp ON video_items(job_id, timestamp_ms, idx, seq);
CREATE INDEX video_items_by_index ON video_items(job_id, idx, timestamp_ms, seq);
CREATE TABLE video_inputs (
    job_id TEXT NOT NULL, n INTEGER NOT NULL, data BYTEA NOT NULL, created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, n)
) WITH ({_VACUUM});
ALTER TABLE video_inputs ALTER COLUMN data SET STORAGE EXTERNAL;
"""
_TOAST = "toast.autovacuum_vacuum_scale_factor = 0, toast.autovacuum_vacuum_threshold = 1"
SCHEMA_V2 = f"""
ALTER TABLE video_jobs SET ({_TOAST});
ALTER TABLE video_items SET ({_TOAST});
ALTER TABLE video_inputs SET ({_TOAST});
"""
"""The input pieces (and long items) live in the tables' TOAST tables, whose autovacuum settings are
their own: vacuumed after any delete too."""
MIGRATIONS = (Migration(1, "video jobs, their items and input videos", statements(SCHEMA_V1)),
              Migration(2, "their TOAST tables vacuumed after any delete", statements(SCHEMA_V2)))
_IN_PROGRESS = f"status IN ('{QUEUED}', '{RUNNING}')"


class PgJobStore:
    """Video jobs, their items and their input videos in the PostgreSQL database ``url`` names;
    ``inputs`` is this node's folder for the input files its workers read."""

    shared = True
    path = None
    """No file: workers open the store from ``FACEPRINT_STORE`` (never their command line)."""

    def __init__(self, url: str, inputs: Path | str, *, lease_seconds: float = LEASE, pool_size: int = 4) -> None:
        self.url = url
        self.inputs = Path(inputs)
        self.lease_seconds = lease_seconds
        self._part = PgPart(url, PART, MIGRATIONS, pool_size=pool_size)
        self._reading = threading.local()

    def close(self) -> None:
        self._part.close()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction (REPEATABLE READ) for this thread's reads inside the block."""
        if getattr(self._reading, "db", None) is not None:
            yield
            return
        with self._part.tx() as db:
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._reading.db = db
            try:
                yield
            finally:
                self._reading.db = None

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        db = getattr(self._reading, "db", None)
        if db is None:
            return self._part.rows(sql, args)
        with db.cursor(binary=True) as cursor:
            return cursor.execute(sql, args).fetchall()

    # -- jobs --------------------------------------------------------------------------------------

    def insert(self, row: JobRow, max_in_progress: int) -> JobRow:
        """As ``JobStore.insert``; the count and the insert hold an advisory lock (every node's Starts)."""
        with self._part.tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (LIMIT_LOCK,))
            if row.client_token is not None:
                found = _first(db.execute(f"SELECT {_COLUMNS} FROM video_jobs WHERE api = %s AND client_token = %s",
                                          (row.api, row.client_token)).fetchall())
                if found is not None:
                    return found
            _check_limit(db, max_in_progress)
            values = list(row.to_db())
            values[_NAMES.index("notify_pending")] = bool(row.notify_pending)
            db.execute(f"INSERT INTO video_jobs ({_COLUMNS}) VALUES ({', '.join(['%s'] * len(_NAMES))})", values)
        return row

    def check_limit(self, max_in_progress: int) -> None:
        with self._part.tx() as db:
            _check_limit(db, max_in_progress)

    def get(self, job_id: str) -> JobRow | None:
        return _first(self._rows(f"SELECT {_COLUMNS} FROM video_jobs WHERE job_id = %s", (job_id,)))

    def by_token(self, api: str, token: str) -> JobRow | None:
        return _first(self._rows(f"SELECT {_COLUMNS} FROM video_jobs WHERE api = %s AND client_token = %s",
                                 (api, token)))

    def listing(self, now: float, after: tuple[float, str] | None, limit: int) -> list[JobRow]:
        where, params = "(expires IS NULL OR expires > %s)", [now]
        if after is not None:
            where += " AND (created < %s OR (created = %s AND job_id > %s))"
            params += [after[0], after[0], after[1]]
        rows = self._rows(f"SELECT {_COLUMNS} FROM video_jobs WHERE {where} ORDER BY created DESC, job_id LIMIT %s",
                          (*params, limit))
        return [JobRow.from_db(r) for r in rows]

    def claimable(self, kinds: tuple[str, ...]) -> int:
        found = self._part.one("SELECT COUNT(*) FROM video_jobs WHERE status = %s AND source_kind = ANY(%s)",
                               (QUEUED, list(kinds)))
        return int(found[0]) if found else 0

    def claim(self, owner: str, now: float, kinds: tuple[str, ...]) -> JobRow | None:
        """The oldest queued job no other node is claiming (``SKIP LOCKED``), now RUNNING for ``owner``
        with a lease of ``lease_seconds``."""
        with self._part.tx() as db:
            found = db.execute(f"UPDATE video_jobs SET status = %s, owner = %s, started = %s, attempts = attempts + 1, "
                               f"frames_done = 0, frames_total = 0, lease = {NOW} + %s WHERE job_id = ("
                               "SELECT job_id FROM video_jobs WHERE status = %s AND source_kind = ANY(%s) "
                               "ORDER BY created, seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING job_id",
                               (RUNNING, owner, now, self.lease_seconds, QUEUED, list(kinds))).fetchone()
        return self.get(found[0]) if found else None

    def renew(self, owners: Iterable[str]) -> None:
        """Extend the leases of the jobs that ``owners`` (this node's runs) hold."""
        owners = list(owners)
        if owners:
            self._part.execute(f"UPDATE video_jobs SET lease = {NOW} + %s WHERE status = %s AND owner = ANY(%s)",
                               (self.lease_seconds, RUNNING, owners))

    def recover(self, now: float, max_attempts: int, message: str) -> list[JobRow]:
        """Jobs whose lease lapsed (their node died): requeued, or FAILED with ``message`` once started
        ``max_attempts`` times. Answers the ones FAILED."""
        with self._part.tx() as db:
            rows = [JobRow.from_db(r) for r in db.execute(
                f"SELECT {_COLUMNS} FROM video_jobs WHERE status = %s AND lease < {NOW} FOR UPDATE SKIP LOCKED",
                (RUNNING,)).fetchall()]
            for row in rows:
                if row.attempts >= max_attempts:
                    _finish(db, row, FAILED, message, now)
                else:
                    _requeue(db, row.job_id, 0)
        return [self.get(r.job_id) for r in rows if r.attempts >= max_attempts]  # type: ignore[misc]

    def release(self, job_id: str, owner: str) -> bool:
        with self._part.tx() as db:
            if not _owned(db, job_id, owner):
                return False
            _requeue(db, job_id, 1)
        return True

    def finish(self, job_id: str, owner: str | None, status: str, message: str | None, now: float,
               items: Iterable[Item] = ()) -> bool:
        with self._part.tx() as db:
            if not _owned(db, job_id, owner):
                return False
            _insert_items(db, job_id, items)
            row = _first(db.execute(f"SELECT {_COLUMNS} FROM video_jobs WHERE job_id = %s", (job_id,)).fetchall())
            assert row is not None
            _finish(db, row, status, message, now)
        return True

    def notified(self, job_id: str) -> None:
        self._part.execute("UPDATE video_jobs SET notify_pending = FALSE WHERE job_id = %s", (job_id,))

    def pending_notifications(self) -> list[JobRow]:
        """The finished jobs' notifications that no runner is sending, now this caller's to send
        (claimed for ``NOTIFY_LEASE`` seconds): each is handed to one caller."""
        with self._part.tx() as db:
            rows = db.execute(f"UPDATE video_jobs SET notify_lease = {NOW} + %s WHERE job_id IN ("
                              "SELECT job_id FROM video_jobs WHERE notify_pending AND status IN (%s, %s) "
                              f"AND (notify_lease IS NULL OR notify_lease < {NOW}) FOR UPDATE SKIP LOCKED) "
                              f"RETURNING {_COLUMNS}", (NOTIFY_LEASE, SUCCEEDED, FAILED)).fetchall()
        return [JobRow.from_db(r) for r in rows]

    def sweep(self, now: float) -> list[str]:
        """Delete the expired jobs (rows, items, input pieces and this node's input files), the input
        pieces of jobs that ended, and pieces and files of no job ``ORPHAN_AGE`` seconds old."""
        with self._part.tx() as db:
            ids = [r[0] for r in db.execute("DELETE FROM video_jobs WHERE expires < %s RETURNING job_id",
                                            (now,)).fetchall()]
            db.execute("DELETE FROM video_inputs i WHERE job_id = ANY(%s) OR EXISTS (SELECT 1 FROM video_jobs j "
                       "WHERE j.job_id = i.job_id AND j.status IN (%s, %s)) OR (i.created < %s AND NOT EXISTS "
                       "(SELECT 1 FROM video_jobs j WHERE j.job_id = i.job_id))",
                       (ids, SUCCEEDED, FAILED, time.time() - ORPHAN_AGE))
        for job_id in ids:
            self._unlink(job_id)
        self._sweep_orphans(time.time() - ORPHAN_AGE)
        return ids

    def _sweep_orphans(self, before: float) -> None:
        try:
            entries = [e for e in os.scandir(self.inputs) if not e.name.startswith(".")]
        except FileNotFoundError:
            return
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                row = self.get(entry.name)
                ended = row is not None and row.status in (SUCCEEDED, FAILED)
                if ended or (row is None and entry.stat(follow_symlinks=False).st_mtime < before):
                    os.unlink(entry.path)

    # -- inputs --------------------------------------------------------------------------------------

    def input_path(self, job_id: str) -> Path:
        """This node's file of the job's video (written by ``fetch_input``, or by an S3 copy)."""
        return self.inputs / job_id

    def write_input(self, job_id: str, data: bytes | Path, max_bytes: int | None = None) -> Path:
        """Keep a Start's video (bytes, or a file read in ``CHUNK`` pieces) for whichever node runs the
        job; bytes are also written to this node's input file (answered: what to probe).
        ``VideoTooLargeException`` if a file grew past ``max_bytes`` since it was measured."""
        if isinstance(data, bytes | bytearray | memoryview):
            path = private_folder(self.inputs) / job_id
            with os.fdopen(create_private(path), "wb") as fh:
                fh.write(data)
        else:
            path = Path(data)
        with open(path, "rb") as source:
            n, size = 0, 0
            while piece := source.read(CHUNK):
                size += len(piece)
                if max_bytes is not None and size > max_bytes:
                    raise VideoTooLargeException(f"The video grew past the limit of {max_bytes} bytes.")
                self._part.execute("INSERT INTO video_inputs VALUES (%s, %s, %s, %s)", (job_id, n, piece, time.time()))
                n += 1
        return path

    def fetch_input(self, job_id: str, on_chunk: Callable[[int], None] | None = None) -> Path:
        """The job's video as a file of this node (streamed from the database one piece at a time,
        unless this node wrote it at Start); ``on_chunk(bytes so far)`` after each piece (it may raise
        to stop). ``FileNotFoundError`` if the job has no input kept."""
        found = self._part.one("SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM video_inputs WHERE job_id = %s",
                               (job_id,))
        count, size = (int(found[0]), int(found[1])) if found else (0, 0)
        if count == 0:
            raise FileNotFoundError(f"no input kept for job {job_id}")
        path = self.input_path(job_id)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size == size:
                return path
        partial = private_folder(self.inputs) / f".{job_id}.part"
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        try:
            self._stream(job_id, count, partial, on_chunk)
        except BaseException:  # stopped, or the database went: nothing half-written is left
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        os.replace(partial, path)
        return path

    def _stream(self, job_id: str, count: int, path: Path, on_chunk: Callable[[int], None] | None) -> None:
        done = 0
        with os.fdopen(create_private(path), "wb") as fh:
            for n in range(count):
                piece = self._part.one("SELECT data FROM video_inputs WHERE job_id = %s AND n = %s", (job_id, n))
                if piece is None:
                    raise FileNotFoundError(f"piece {n} of job {job_id}'s input is missing")
                fh.write(piece[0])
                done += len(piece[0])
                if on_chunk is not None:
                    on_chunk(done)

    def delete_input(self, job_id: str) -> None:
        """Erase the job's input: its pieces in the database and this node's file."""
        self._part.execute("DELETE FROM video_inputs WHERE job_id = %s", (job_id,))
        self._unlink(job_id)

    def _unlink(self, job_id: str) -> None:
        for path in (self.input_path(job_id), self.inputs / f".{job_id}.part"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- erasure -------------------------------------------------------------------------------------

    def erase_matches(self, face_ids: Iterable[str], external_image_id: str | None = None) -> dict[str, Any]:
        """As ``JobStore.erase_matches``."""
        needles, wanted = erase_needles(face_ids, external_image_id)
        if not needles:
            return {"Jobs": [], "Matches": 0}
        jobs, removed = set(), 0
        with self._part.tx() as db:
            found = db.execute("SELECT i.seq, i.job_id, i.body FROM video_items i JOIN video_jobs j ON j.job_id = "
                               "i.job_id WHERE j.api = 'StartFaceSearch' AND EXISTS (SELECT 1 FROM unnest(%s::text[]) "
                               "n WHERE strpos(i.body, n) > 0) ORDER BY i.seq FOR UPDATE OF i", (needles,)).fetchall()
            for seq, job_id, body in found:
                changed, gone = without_matches(body, wanted, external_image_id)
                if gone:
                    db.execute("UPDATE video_items SET body = %s WHERE seq = %s", (changed, seq))
                    jobs.add(job_id)
                    removed += gone
        return {"Jobs": sorted(jobs), "Matches": removed}

    # -- what a worker writes ------------------------------------------------------------------------

    def add_items(self, job_id: str, owner: str, items: Iterable[Item]) -> bool:
        with self._part.tx() as db:
            if not _owned(db, job_id, owner):
                return False
            _insert_items(db, job_id, items)
        return True

    def set_metadata(self, job_id: str, owner: str, metadata: dict[str, Any]) -> bool:
        return self._owned_update(job_id, owner, "metadata = %s", (json.dumps(metadata),))

    def set_progress(self, job_id: str, owner: str, done: int, total: int) -> bool:
        return self._owned_update(job_id, owner, "frames_done = %s, frames_total = %s", (done, total))

    def _owned_update(self, job_id: str, owner: str, assignments: str, args: tuple) -> bool:
        return self._part.execute(f"UPDATE video_jobs SET {assignments} WHERE job_id = %s AND status = %s "
                                  "AND owner = %s", (*args, job_id, RUNNING, owner)) > 0

    # -- paging ---------------------------------------------------------------------------------------

    def page(self, row: JobRow, sort: str, limit: int, next_token: str | None
             ) -> tuple[list[dict[str, Any]], str | None]:
        first, second = SORTS[sort]
        after = token_position(row, sort, next_token)
        found = self._rows(f"SELECT {first}, {second}, seq, body FROM video_items WHERE job_id = %s "
                           f"AND ({first}, {second}, seq) > (%s, %s, %s) ORDER BY {first}, {second}, seq LIMIT %s",
                           (row.job_id, *after, limit + 1))
        more = len(found) > limit
        found = found[:limit]
        token = page_token(row, sort, tuple(found[-1][:3])) if more else None  # type: ignore[arg-type]
        return [json.loads(r[3]) for r in found], token

    def position(self, row: JobRow, sort: str, token: str | None) -> tuple[int, int, int]:
        return token_position(row, sort, token)


def _first(rows: list[tuple]) -> JobRow | None:
    return JobRow.from_db(rows[0]) if rows else None


def _check_limit(db: Any, max_in_progress: int) -> None:
    (count,) = db.execute(f"SELECT COUNT(*) FROM video_jobs WHERE {_IN_PROGRESS}").fetchone()
    if count >= max_in_progress:
        raise LimitExceededException(f"{count} video jobs are in progress; at most {max_in_progress} may be at once.")


def _owned(db: Any, job_id: str, owner: str | None) -> bool:
    """The job is RUNNING for ``owner`` (None: anyone), its row locked until the transaction ends."""
    found = db.execute("SELECT owner FROM video_jobs WHERE job_id = %s AND status = %s FOR UPDATE",
                       (job_id, RUNNING)).fetchone()
    return found is not None and (owner is None or found[0] == owner)


def _requeue(db: Any, job_id: str, refund: int) -> None:
    db.execute("DELETE FROM video_items WHERE job_id = %s", (job_id,))
    db.execute("UPDATE video_jobs SET status = %s, owner = NULL, started = NULL, attempts = attempts - %s, "
               "frames_done = 0, frames_total = 0, metadata = NULL, lease = NULL WHERE job_id = %s",
               (QUEUED, refund, job_id))


def _finish(db: Any, row: JobRow, status: str, message: str | None, now: float) -> None:
    if status != SUCCEEDED:
        db.execute("DELETE FROM video_items WHERE job_id = %s", (row.job_id,))
    db.execute("UPDATE video_jobs SET status = %s, status_message = %s, finished = %s, expires = %s, owner = NULL, "
               "lease = NULL, notify_pending = %s, notify_lease = NULL WHERE job_id = %s",
               (status, message, now, now + row.expiry_seconds, row.notification is not None, row.job_id))


def _insert_items(db: Any, job_id: str, items: Iterable[Item]) -> None:
    rows = [(job_id, int(i.timestamp_ms), int(i.index), json.dumps(i.body)) for i in items]
    if rows:
        with db.cursor() as cursor:
            cursor.executemany("INSERT INTO video_items (job_id, timestamp_ms, idx, body) VALUES (%s, %s, %s, %s)",
                               rows)


MOVED_PATH_GONE = "The job's video file could not be read when the jobs moved to PostgreSQL: start it again."


def copy_jobs(source: Any, target: PgJobStore) -> dict[str, int]:
    """Move an embedded home's jobs (``source``: a ``JobStore``, its runner stopped) into ``target``
    (``faceprint migrate``), in one transaction: every job row as stored (its NextToken secret
    included, so tokens issued before stay good), the results of finished jobs, and the videos of
    jobs not finished (an input file, or the file a path names: the job then keeps its video in
    the database). A job left RUNNING is queued again (its partial results dropped, the attempt not
    counted); one whose path cannot be read is FAILED, saying so. ``InvalidParameterException``
    if ``target`` holds jobs already. Answers ``{"Jobs", "Items", "InputBytes"}``."""
    from faceprint.errors import InvalidParameterException

    rows = source.all_jobs()
    counts = {"Jobs": 0, "Items": 0, "InputBytes": 0}
    with target._part.tx() as db:
        if db.execute("SELECT EXISTS (SELECT 1 FROM video_jobs)").fetchone()[0]:
            raise InvalidParameterException("The PostgreSQL store holds video jobs already: nothing was moved.")
        for row in rows:
            moved = _moved_row(row, source, db, counts)
            values = list(moved.to_db())
            values[_NAMES.index("notify_pending")] = bool(moved.notify_pending)
            db.execute(f"INSERT INTO video_jobs ({_COLUMNS}) VALUES ({', '.join(['%s'] * len(_NAMES))})", values)
            if moved.status == SUCCEEDED:
                found = source.all_items(row.job_id)
                with db.cursor() as cursor:
                    cursor.executemany("INSERT INTO video_items (job_id, timestamp_ms, idx, body) VALUES "
                                       "(%s, %s, %s, %s)", [(row.job_id, *f) for f in found])
                counts["Items"] += len(found)
            counts["Jobs"] += 1
    return counts


def _moved_row(row: JobRow, source: Any, db: Any, counts: dict[str, int]) -> JobRow:
    """``row`` as the target keeps it, its video (if it is still to run) written to ``video_inputs``."""
    import dataclasses

    if row.status == RUNNING:
        row = dataclasses.replace(row, status=QUEUED, owner=None, started=None, attempts=max(0, row.attempts - 1),
                                  frames_done=0, frames_total=0, metadata=None)
    if row.status != QUEUED or row.source_kind == "s3":
        return row
    path = source.input_path(row.job_id) if row.source_kind == "input" else Path(row.source)
    size, n = 0, 0
    try:
        with open(path, "rb") as video:
            while piece := video.read(CHUNK):
                db.execute("INSERT INTO video_inputs VALUES (%s, %s, %s, %s)", (row.job_id, n, piece, time.time()))
                size, n = size + len(piece), n + 1
    except OSError:
        db.execute("DELETE FROM video_inputs WHERE job_id = %s", (row.job_id,))
        now = time.time()
        return dataclasses.replace(row, status=FAILED, status_message=MOVED_PATH_GONE, finished=now,
                                   expires=now + row.expiry_seconds, notify_pending=row.notification is not None)
    counts["InputBytes"] += size
    return dataclasses.replace(row, source_kind="input")
