"""One SQLite database file of the home, as both stores (faces, video jobs) use it: private files,
one connection per thread, write transactions, and erasure after deletes."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from faceprint.home import private_file, private_folder, tighten

BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another's write lock."""

ERASE_WAIT = 1.0
"""Seconds a delete waits for other connections' reads and writes to end so that it can empty the
WAL; if they go on longer, the next write tries again."""


class Database:
    def __init__(self, path: Path | str, schema: str) -> None:
        """Open (or create) the database at ``path`` with ``schema`` (idempotent DDL); it, its WAL and
        its folder are private (0600, 0700): SQLite gives the WAL and shared-memory files the
        database file's mode."""
        self.path = Path(path)
        private_folder(self.path.parent)
        private_file(self.path)
        for suffix in ("-wal", "-shm", "-journal"):
            tighten(self.path.with_name(self.path.name + suffix))
        self._local = threading.local()
        self._wal_holds_deleted = False  # an erase_wal that could not finish: the next write retries
        self.db().executescript(schema)  # executescript manages its own transaction

    def db(self) -> sqlite3.Connection:
        """This thread's connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path)
        return db

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), rolled back on any exception."""
        db = self.db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if self._wal_holds_deleted:
            self.erase_wal(0.0)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: what is read inside sees the database as it was at the first read."""
        db = self.db()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def erase_wal(self, wait: float = ERASE_WAIT) -> None:
        """After a delete: no copy of the deleted rows left in the WAL (best effort; see :func:`erase_wal`)."""
        self._wal_holds_deleted = not erase_wal(self.db(), wait)

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's storage goes)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def connect(path: Path) -> sqlite3.Connection:
    """A connection as the home's databases use them: WAL, ``synchronous=FULL``, foreign keys, and
    ``secure_delete`` (deleted rows and freed pages are overwritten with zeros, not left in the file)."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=True)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA secure_delete=ON")
    return db


def erase_wal(db: sqlite3.Connection, wait: float) -> bool:
    """Checkpoint the WAL into the database and truncate it to nothing, so that the page images
    it holds from before a delete (deleted rows included) are gone; called after a deleting
    transaction. Waits up to ``wait`` seconds for other connections' transactions to end; False if
    they went on (or the checkpoint failed): the WAL may still hold them."""
    db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
    try:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return False
    finally:
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    return busy == 0
