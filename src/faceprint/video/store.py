"""The video job store: one SQLite database (WAL) at ``HOME/video/jobs.db``, shared by every
process using the home (the API that starts jobs, the runner, its workers). With a PostgreSQL store
the jobs live in its database instead, shared by every node (``faceprint.video.store_pg``, the same
public methods; :func:`open_job_store` picks one).

A job is QUEUED, RUNNING (claimed by one run of one runner: ``owner``), then SUCCEEDED or FAILED;
the API shows QUEUED and RUNNING as ``IN_PROGRESS``. Every write a worker makes is conditional on
its ``owner``, so a worker left over from a dead runner cannot touch a job that was requeued.
Items are kept as Rekognition's JSON with the keys they are sorted by; NextTokens are signed with
a secret of the job, so a token is good only for the job and the sort order it was issued for.
Deleted jobs and items are erased as the main store's faces are (``secure_delete``, and the WAL
emptied after a delete: ``faceprint.store.sqlite.erase_wal``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.collections import MAX_SEQ, decode_token, encode_token
from faceprint.errors import InvalidPaginationTokenException, LimitExceededException
from faceprint.home import create_private, private_folder
from faceprint.store.database import Database
from faceprint.video.context import Item

QUEUED, RUNNING, SUCCEEDED, FAILED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED"
IN_PROGRESS_STATES = (QUEUED, RUNNING)
SORTS = {"TIMESTAMP": ("timestamp_ms", "idx"), "INDEX": ("idx", "timestamp_ms")}
ORPHAN_AGE = 3600.0
"""Seconds an input file of no job is left alone (a Start writes it just before adding the job)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    api TEXT NOT NULL,                 -- StartFaceSearch, StartFaceDetection, ...
    status TEXT NOT NULL,              -- QUEUED, RUNNING, SUCCEEDED, FAILED
    status_message TEXT,
    params TEXT NOT NULL,              -- the Start members the analyser reads (JSON)
    request_hash TEXT NOT NULL,        -- the whole request's digest, for ClientRequestToken
    client_token TEXT,
    job_tag TEXT,
    notification TEXT,                 -- {"SNSTopicArn", "RoleArn", "URL"} (JSON) or NULL
    notify_pending INTEGER NOT NULL DEFAULT 0,
    source_kind TEXT NOT NULL,         -- path (read in place), input (our file), s3 (copied to input)
    source TEXT NOT NULL,              -- the path, or the S3Object (JSON)
    profile TEXT NOT NULL,
    owner TEXT,                        -- the runner's run that holds a RUNNING job
    secret TEXT NOT NULL,              -- signs the job's NextTokens
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    expiry_seconds REAL NOT NULL,
    expires REAL,                      -- finished + expiry_seconds
    attempts INTEGER NOT NULL DEFAULT 0,
    frames_done INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER NOT NULL DEFAULT 0,
    metadata TEXT,                     -- {"video": {...}, "audio": [...]} (JSON) once known
    limits TEXT NOT NULL               -- the VideoLimits the job was accepted under (JSON)
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_token ON jobs(api, client_token) WHERE client_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, created);
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs(expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
    timestamp_ms INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_timestamp ON items(job_id, timestamp_ms, idx, seq);
CREATE INDEX IF NOT EXISTS items_by_index ON items(job_id, idx, timestamp_ms, seq);
"""

_COLUMNS = ("job_id, api, status, status_message, params, request_hash, client_token, job_tag, notification, "
            "notify_pending, source_kind, source, profile, owner, secret, created, started, finished, "
            "expiry_seconds, expires, attempts, frames_done, frames_total, metadata, limits")
_NAMES = tuple(name.strip() for name in _COLUMNS.split(","))
_JSON = {_NAMES.index(name) for name in ("params", "notification", "metadata", "limits")}
_PENDING = _NAMES.index("notify_pending")


@dataclass(frozen=True)
class JobRow:
    job_id: str
    api: str
    status: str
    status_message: str | None
    params: dict[str, Any]
    request_hash: str
    client_token: str | None
    job_tag: str | None
    notification: dict[str, str] | None
    notify_pending: bool
    source_kind: str
    source: str
    profile: str
    owner: str | None
    secret: str
    created: float
    started: float | None
    finished: float | None
    expiry_seconds: float
    expires: float | None
    attempts: int
    frames_done: int
    frames_total: int
    metadata: dict[str, Any] | None
    limits: dict[str, Any]

    @property
    def job_status(self) -> str:
        """Rekognition's JobStatus."""
        return "IN_PROGRESS" if self.status in IN_PROGRESS_STATES else self.status

    @property
    def s3_object(self) -> dict[str, Any] | None:
        return json.loads(self.source) if self.source_kind == "s3" else None

    @classmethod
    def from_db(cls, row: tuple) -> JobRow:
        values = [json.loads(v) if i in _JSON and v is not None else v for i, v in enumerate(row)]
        return cls(**dict(zip(_NAMES, values, strict=True)) | {"notify_pending": bool(row[_PENDING])})

    def to_db(self) -> tuple:
        values = [getattr(self, name) for name in _NAMES]
        return tuple(json.dumps(v) if i in _JSON and v is not None else v for i, v in enumerate(values))


def open_job_store(home: Path | str, store_url: str | None, *, existing: bool = False, **pg: Any) -> Any:
    """The job store of ``home``: in PostgreSQL when ``store_url`` names it (shared by every node:
    ``faceprint.video.store_pg.PgJobStore``, its input files under ``HOME/video/inputs``; ``pg``:
    its keyword arguments), else this module's :class:`JobStore` at ``HOME/video/jobs.db`` (with
    ``existing``: None if that file is not there, as in a home that never ran a job)."""
    from faceprint.backends import is_postgres
    from faceprint.video.runner import store_path, video_folder

    if is_postgres(store_url):
        from faceprint.video.store_pg import PgJobStore  # psycopg is imported for PostgreSQL only

        # HOME/video holds the runner's lock and log, and this node's input files
        return PgJobStore(str(store_url), private_folder(video_folder(Path(home))) / "inputs", **pg)
    path = store_path(Path(home))
    return None if existing and not path.is_file() else JobStore(path)


def new_secret() -> str:
    return secrets.token_hex(16)


class JobStore:
    """Video jobs and their items in SQLite at ``path``; input files in ``path``'s folder's ``inputs``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.inputs = self.path.parent / "inputs"
        self._database = Database(self.path, SCHEMA)  # with secure_delete, as the main store's
        self._db, self._tx, self._erase_wal = self._database.db, self._database.tx, self._database.erase_wal

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction: what is read inside sees the store as it was at the first read (a
        Get reads the job and its page together, though a sweep may delete it meanwhile)."""
        with self._database.reading():
            yield

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's storage goes)."""
        self._database.close()

    shared = False
    """Jobs are this home's alone (a PostgreSQL job store's are shared by every node)."""
    lease_seconds: float | None = None
    """No leases: the home's runner lock says which process runs jobs, and what it finds RUNNING when
    it takes the lock was left by a dead runner (``recover``)."""

    def input_path(self, job_id: str) -> Path:
        """Where a job's own copy of its video lives (bytes given to Start, an S3 object fetched)."""
        return self.inputs / job_id

    def write_input(self, job_id: str, data: bytes) -> Path:
        """Write the video bytes a Start was given to the job's input file; its path."""
        path = private_folder(self.inputs) / job_id
        with os.fdopen(create_private(path), "wb") as fh:
            fh.write(data)
        return path

    def fetch_input(self, job_id: str, on_chunk: Callable[[int], None] | None = None) -> Path:
        """The job's input file, for its worker (on this machine already)."""
        return self.input_path(job_id)

    def renew(self, owners: Iterable[str]) -> None:
        """Leases: none here (see ``lease_seconds``)."""

    # -- jobs --------------------------------------------------------------------------------------

    def insert(self, row: JobRow, max_in_progress: int) -> JobRow:
        """Add ``row`` (QUEUED), or answer the job already started with its ClientRequestToken (the
        caller compares the requests); ``LimitExceededException`` when ``max_in_progress`` jobs are
        queued or running. One transaction: concurrent Starts cannot pass the limit together."""
        with self._tx() as db:
            if row.client_token is not None:
                found = self._by_token(db, row.api, row.client_token)
                if found is not None:
                    return found
            self._check_limit(db, max_in_progress)
            db.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))})", row.to_db())
        return row

    def check_limit(self, max_in_progress: int) -> None:
        """``LimitExceededException`` if ``max_in_progress`` jobs are queued or running."""
        self._check_limit(self._db(), max_in_progress)

    @staticmethod
    def _check_limit(db: sqlite3.Connection, max_in_progress: int) -> None:
        (count,) = db.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN {IN_PROGRESS_STATES}").fetchone()
        if count >= max_in_progress:
            raise LimitExceededException(
                f"{count} video jobs are in progress; at most {max_in_progress} may be at once.")

    def get(self, job_id: str) -> JobRow | None:
        found = self._db().execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobRow.from_db(found) if found else None

    def by_token(self, api: str, token: str) -> JobRow | None:
        return self._by_token(self._db(), api, token)

    def listing(self, now: float, after: tuple[float, str] | None, limit: int) -> list[JobRow]:
        """Up to ``limit`` jobs not expired at ``now``, newest first, after the (created, job id) ``after``."""
        where, params = "(expires IS NULL OR expires > ?)", [now]
        if after is not None:
            where += " AND (created < ? OR (created = ? AND job_id > ?))"
            params += [after[0], after[0], after[1]]
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY created DESC, job_id LIMIT ?",
                                  (*params, limit)).fetchall()
        return [JobRow.from_db(r) for r in rows]

    @staticmethod
    def _by_token(db: sqlite3.Connection, api: str, token: str) -> JobRow | None:
        found = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE api = ? AND client_token = ?",
                           (api, token)).fetchone()
        return JobRow.from_db(found) if found else None

    def claimable(self, kinds: tuple[str, ...]) -> int:
        """Queued jobs whose video is of one of ``kinds``."""
        marks = ", ".join("?" * len(kinds))
        (count,) = self._db().execute(f"SELECT COUNT(*) FROM jobs WHERE status = ? AND source_kind IN ({marks})",
                                      (QUEUED, *kinds)).fetchone()
        return int(count)

    def claim(self, owner: str, now: float, kinds: tuple[str, ...]) -> JobRow | None:
        """The oldest queued job (video of one of ``kinds``), now RUNNING for ``owner``."""
        marks = ", ".join("?" * len(kinds))
        with self._tx() as db:
            found = db.execute(f"SELECT job_id FROM jobs WHERE status = ? AND source_kind IN ({marks}) "
                               "ORDER BY created, rowid LIMIT 1", (QUEUED, *kinds)).fetchone()
            if found is None:
                return None
            db.execute("UPDATE jobs SET status = ?, owner = ?, started = ?, attempts = attempts + 1, "
                       "frames_done = 0, frames_total = 0 WHERE job_id = ?", (RUNNING, owner, now, found[0]))
        return self.get(found[0])

    def recover(self, now: float, max_attempts: int, message: str) -> list[JobRow]:
        """Jobs left RUNNING by a dead runner: requeued (their partial items deleted), or FAILED with
        ``message`` once they were started ``max_attempts`` times. Answers the ones FAILED."""
        with self._tx() as db:
            rows = [JobRow.from_db(r) for r in db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE status = ?",
                                                          (RUNNING,)).fetchall()]
            for row in rows:
                if row.attempts >= max_attempts:
                    self._finish(db, row, FAILED, message, now)
                else:
                    self._requeue(db, row.job_id, 0)
        if rows:
            self._erase_wal()  # their partial items
        return [self.get(r.job_id) for r in rows if r.attempts >= max_attempts]  # type: ignore[misc]

    def release(self, job_id: str, owner: str) -> bool:
        """Give a RUNNING job back to the queue (its runner is closing): it does not count as an attempt."""
        with self._tx() as db:
            if not self._owned(db, job_id, owner):
                return False
            self._requeue(db, job_id, 1)
        self._erase_wal()  # its partial items
        return True

    @staticmethod
    def _requeue(db: sqlite3.Connection, job_id: str, refund: int) -> None:
        db.execute("DELETE FROM items WHERE job_id = ?", (job_id,))
        db.execute("UPDATE jobs SET status = ?, owner = NULL, started = NULL, attempts = attempts - ?, "
                   "frames_done = 0, frames_total = 0, metadata = NULL WHERE job_id = ?", (QUEUED, refund, job_id))

    @staticmethod
    def _owned(db: sqlite3.Connection, job_id: str, owner: str | None) -> bool:
        found = db.execute("SELECT owner FROM jobs WHERE job_id = ? AND status = ?", (job_id, RUNNING)).fetchone()
        return found is not None and (owner is None or found[0] == owner)

    def finish(self, job_id: str, owner: str | None, status: str, message: str | None, now: float,
               items: Iterable[Item] = ()) -> bool:
        """Write the job's last ``items`` and its final ``status``, if ``owner`` still runs it (None:
        whoever does). False if the job was not RUNNING for ``owner``: nothing is written."""
        with self._tx() as db:
            if not self._owned(db, job_id, owner):
                return False
            self._insert_items(db, job_id, items)
            row = self.get(job_id)
            assert row is not None
            self._finish(db, row, status, message, now)
        if status != SUCCEEDED:
            self._erase_wal()  # the items it had written
        return True

    @staticmethod
    def _finish(db: sqlite3.Connection, row: JobRow, status: str, message: str | None, now: float) -> None:
        if status != SUCCEEDED:
            db.execute("DELETE FROM items WHERE job_id = ?", (row.job_id,))
        db.execute("UPDATE jobs SET status = ?, status_message = ?, finished = ?, expires = ?, owner = NULL, "
                   "notify_pending = ? WHERE job_id = ?",
                   (status, message, now, now + row.expiry_seconds, int(row.notification is not None), row.job_id))

    def notified(self, job_id: str) -> None:
        """The job's notification was delivered (or given up): not to be sent again."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET notify_pending = 0 WHERE job_id = ?", (job_id,))

    def pending_notifications(self) -> list[JobRow]:
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM jobs WHERE notify_pending = 1 AND status IN (?, ?)",
                                  (SUCCEEDED, FAILED)).fetchall()
        return [JobRow.from_db(r) for r in rows]

    def sweep(self, now: float) -> list[str]:
        """Delete the jobs whose results expired (rows, items, input files), input files of jobs
        that ended (their runner died before deleting them), and input files of no job (a process
        that died between writing one and adding its job, or between deleting a job and its file)
        once they are ``ORPHAN_AGE`` seconds old; answers the expired jobs' ids."""
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT job_id FROM jobs WHERE expires < ?", (now,)).fetchall()]
            for job_id in ids:
                db.execute("DELETE FROM items WHERE job_id = ?", (job_id,))
                db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        if ids:
            self._erase_wal()
        for job_id in ids:
            self.delete_input(job_id)
        self._sweep_orphans(time.time() - ORPHAN_AGE)
        return ids

    def _sweep_orphans(self, before: float) -> None:
        try:
            entries = list(os.scandir(self.inputs))
        except FileNotFoundError:
            return
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                row = self.get(entry.name)
                ended = row is not None and row.status in (SUCCEEDED, FAILED)
                if ended or (row is None and entry.stat(follow_symlinks=False).st_mtime < before):
                    os.unlink(entry.path)

    def delete_input(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.input_path(job_id).unlink()

    # -- moving to PostgreSQL (faceprint.video.store_pg.copy_jobs) ----------------------------------

    def all_jobs(self) -> list[JobRow]:
        """Every job, oldest first."""
        return [JobRow.from_db(r) for r in self._db().execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY created, rowid")]

    def all_items(self, job_id: str) -> list[tuple[int, int, str]]:
        """A job's items as stored: (timestamp_ms, idx, body JSON), in the order they were written."""
        return self._db().execute("SELECT timestamp_ms, idx, body FROM items WHERE job_id = ? ORDER BY seq",
                                  (job_id,)).fetchall()

    # -- erasure -------------------------------------------------------------------------------------

    def erase_matches(self, face_ids: Iterable[str], external_image_id: str | None = None) -> dict[str, Any]:
        """Remove from every face-search job's results the matches of ``face_ids`` (and of faces with
        ``external_image_id``), as an erasure of that person asks: the person stays in the
        results, unmatched. Answers ``{"Jobs": [job ids], "Matches": how many were removed}``."""
        needles, wanted = erase_needles(face_ids, external_image_id)
        if not needles:
            return {"Jobs": [], "Matches": 0}
        jobs, removed = set(), 0
        with self._tx() as db:
            seqs: set[int] = set()
            for needle in needles:
                seqs.update(r[0] for r in db.execute(
                    "SELECT i.seq FROM items i JOIN jobs j ON j.job_id = i.job_id "
                    "WHERE j.api = 'StartFaceSearch' AND instr(i.body, ?) > 0", (needle,)))
            for seq in sorted(seqs):
                job_id, body = db.execute("SELECT job_id, body FROM items WHERE seq = ?", (seq,)).fetchone()
                changed, gone = without_matches(body, wanted, external_image_id)
                if gone:
                    db.execute("UPDATE items SET body = ? WHERE seq = ?", (changed, seq))
                    jobs.add(job_id)
                    removed += gone
        if removed:
            self._erase_wal()
        return {"Jobs": sorted(jobs), "Matches": removed}

    # -- what a worker writes ------------------------------------------------------------------------

    def add_items(self, job_id: str, owner: str, items: Iterable[Item]) -> bool:
        with self._tx() as db:
            if not self._owned(db, job_id, owner):
                return False
            self._insert_items(db, job_id, items)
        return True

    @staticmethod
    def _insert_items(db: sqlite3.Connection, job_id: str, items: Iterable[Item]) -> None:
        db.executemany("INSERT INTO items (job_id, timestamp_ms, idx, body) VALUES (?, ?, ?, ?)",
                       ((job_id, int(i.timestamp_ms), int(i.index), json.dumps(i.body)) for i in items))

    def set_metadata(self, job_id: str, owner: str, metadata: dict[str, Any]) -> bool:
        with self._tx() as db:
            if not self._owned(db, job_id, owner):
                return False
            db.execute("UPDATE jobs SET metadata = ? WHERE job_id = ?", (json.dumps(metadata), job_id))
        return True

    def set_progress(self, job_id: str, owner: str, done: int, total: int) -> bool:
        with self._tx() as db:
            if not self._owned(db, job_id, owner):
                return False
            db.execute("UPDATE jobs SET frames_done = ?, frames_total = ? WHERE job_id = ?", (done, total, job_id))
        return True

    # -- paging ---------------------------------------------------------------------------------------

    def page(self, row: JobRow, sort: str, limit: int, next_token: str | None
             ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` items of the job in ``sort`` order ("TIMESTAMP" or "INDEX") from
        ``next_token``, and the token of the next page (None on the last)."""
        first, second = SORTS[sort]
        after = self.position(row, sort, next_token)
        query = (f"SELECT {first}, {second}, seq, body FROM items WHERE job_id = ? "
                 f"AND ({first}, {second}, seq) > (?, ?, ?) ORDER BY {first}, {second}, seq LIMIT ?")
        found = self._db().execute(query, (row.job_id, *after, limit + 1)).fetchall()
        more = len(found) > limit
        found = found[:limit]
        token = page_token(row, sort, found[-1][:3]) if more else None
        return [json.loads(r[3]) for r in found], token

    def position(self, row: JobRow, sort: str, token: str | None) -> tuple[int, int, int]:
        return token_position(row, sort, token)


def _mac(row: JobRow, sort: str, position: Iterable[int]) -> str:
    text = ":".join([row.job_id, sort, *(str(p) for p in position)])
    return hmac.new(bytes.fromhex(row.secret), text.encode(), hashlib.sha256).hexdigest()[:32]


def page_token(row: JobRow, sort: str, position: tuple[int, int, int]) -> str:
    """The NextToken of the page after ``position``, signed with the job's secret (kept in its row:
    a token issued by one node is good on every node of the job store)."""
    return encode_token([*position, _mac(row, sort, position)])


def token_position(row: JobRow, sort: str, token: str | None) -> tuple[int, int, int]:
    """Where ``token`` points in the job's items in ``sort`` order (the start for None), or
    ``InvalidPaginationTokenException`` unless it was issued for this job and order."""
    if token is None:
        return (-MAX_SEQ - 1, -MAX_SEQ - 1, -1)
    value = decode_token(token, _is_position)
    position = tuple(value[:3])
    if not hmac.compare_digest(value[3], _mac(row, sort, position)):
        raise InvalidPaginationTokenException(
            "NextToken is not one this service issued for this job and sort order.")
    return position  # type: ignore[return-value]


def erase_needles(face_ids: Iterable[str], external_image_id: str | None) -> tuple[list[str], set[str]]:
    """What to look for in items' JSON (face ids, the external image id as JSON) and the face ids."""
    needles = list(dict.fromkeys(face_ids))
    wanted = set(needles)
    if external_image_id is not None:
        needles.append(json.dumps(external_image_id))
    return needles, wanted


def without_matches(body: str, wanted: set[str], external_image_id: str | None) -> tuple[str, int]:
    """An item's JSON without the matches of ``wanted`` faces (or of ``external_image_id``), and
    how many were removed."""
    item = json.loads(body)
    matches = item.get("FaceMatches") or []
    kept = [m for m in matches if not _names(m.get("Face") or {}, wanted, external_image_id)]
    return json.dumps(item | {"FaceMatches": kept}), len(matches) - len(kept)


def _names(face: dict[str, Any], face_ids: set[str], external_image_id: str | None) -> bool:
    """A match's ``Face`` is one of ``face_ids`` or has ``external_image_id``."""
    return face.get("FaceId") in face_ids or (external_image_id is not None
                                               and face.get("ExternalImageId") == external_image_id)


def _is_position(value: Any) -> bool:
    """A NextToken's shape: ``[first key, second key, seq, mac]``."""
    return (isinstance(value, list) and len(value) == 4
            and all(type(v) is int and -MAX_SEQ <= v <= MAX_SEQ for v in value[:3])
            and isinstance(value[3], str) and len(value[3]) == 32)
