"""The audit log: an append-only, hash-chained SQLite table of every operation that identifies
or enrols (``HOME/audit/audit.db``).

Each appended :class:`Entry` becomes a :class:`Record` with the next sequence number, the hash
of the record before it, and its own hash (``faceprint.audit.chain``), in one write
transaction that also stores the new head signed with the online key (``signing``: the latest
head with a MAC under a key derived from it, a checkpoint every :data:`HEAD_EVERY` entries with an
Ed25519 signature as one); the latest head and the checkpoints are kept, so entries cut off the
end show. An append that finds the stored chain not ending at the latest
signed head (edited, cut or added to behind faceprint's back) writes a :data:`BROKEN` entry
first, so that what it found stays in the chain that its new head signs.
Writing fails with :class:`~faceprint.errors.AuditUnavailable` and nothing else: no entry, no
result. The columns that queries filter on (time, actor, operation, collection, case) are kept
beside the chain and filled in batches (``faceprint.audit.columns``); they only index the stored
bodies, and ``faceprint.audit.verify`` checks that they agree with them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.audit import columns as index
from faceprint.audit.caller import Caller
from faceprint.audit.chain import GENESIS, canonical_json, link, link_bytes
from faceprint.audit.journal import Head, Journal
from faceprint.audit.mover import Mover
from faceprint.audit.records import (
    NOT_AN_ENTRY,
    AuditFilter,
    Entry,
    Record,
    as_text,
    iso,
    lenient_text,
    page_request,
)
from faceprint.audit.signing import OnlineSigner
from faceprint.errors import AuditUnavailable
from faceprint.store.database import Database

__all__ = ["BROKEN", "HEAD_EVERY", "NOT_AN_ENTRY", "AuditFilter", "AuditLog", "Entry", "Record", "SignedHead",
           "as_text", "iso", "page_request"]  # what the records module holds is read from here too

EVERYTHING = AuditFilter()
"""The filter that every record matches."""

HEAD_EVERY = 1000
"""Besides the latest, the signed head of every this many entries is kept."""

PAGE = 2000
"""Rows read at a time when streaming the log."""

BROKEN = "AuditChainBroken"
"""The operation of the entry an append writes first where the stored chain did not end at its
latest signed head (``Details``: ``SignedHead`` and ``LastEntry``, each ``{"Seq", "Hash"}`` or None)."""

UNAVAILABLE = "The audit record could not be written, so the operation was not carried out."
UNREADABLE = "The audit record could not be read."

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS heads (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    time REAL NOT NULL,
    signature TEXT NOT NULL
);
""" + index.SCHEMA

LAST = ("SELECT (SELECT seq FROM entries ORDER BY seq DESC LIMIT 1), "
        "(SELECT hash FROM entries ORDER BY seq DESC LIMIT 1), "
        "(SELECT seq FROM heads ORDER BY seq DESC LIMIT 1), (SELECT hash FROM heads ORDER BY seq DESC LIMIT 1), "
        "(SELECT max(seq) FROM entry_columns)")
"""The last entry's seq and hash, the latest signed head's, and the filter index's top (NULLs where
there is none), in one statement."""
INSERT = "INSERT INTO entries (seq, body, prev_hash, hash) VALUES (?, ?, ?, ?)"
MOVE = "INSERT OR REPLACE INTO entries (seq, prev_hash, hash, body) VALUES (?, ?, ?, ?)"
"""A journal line (seq, prev_hash, hash, body) into the chain table."""
PUT_HEAD = "INSERT OR REPLACE INTO heads (seq, hash, time, signature) VALUES (?, ?, ?, ?)"

JOURNAL_BATCH = 128
"""A relaxed log moves its journal into ``audit.db`` once it holds this many entries (and before any read)."""

MOST_WAITING = 8 * JOURNAL_BATCH
"""A journal holding this many entries (its mover could not move them: ``audit.db`` unwritable...)
is moved by the append itself, as every batch was before the mover (``faceprint.audit.mover``)."""

CHECKPOINT_EVERY = 2048
"""A relaxed log checkpoints ``audit.db``'s WAL on a thread of its own each time this many entries
were written to it (about the 1,000 pages after which SQLite would checkpoint in the writing
thread, with an fsync of the WAL and one of the database that the search being recorded would
wait for); SQLite's own checkpoint is kept for a WAL of :data:`WAL_PAGES` pages, one the thread
could not keep down."""
WAL_PAGES = 16_000


def _position(found: tuple[int, str] | None) -> dict[str, Any] | None:
    return None if found is None else {"Seq": found[0], "Hash": found[1]}


class _Fast:
    """What a relaxed log knows after its own last write: the journal as it left it (``keys``: its
    inode and size, and its head's bytes: every writer of the chain, in any process, moves the head,
    which names the chain's end, and every append or move changes the size), the chain's end
    (``seq``, ``hash``: also the latest head) and the entries in the journal. (A plain class: one is
    made by every append.)"""

    __slots__ = ("keys", "seq", "hash", "count")

    def __init__(self, keys: tuple, seq: int, hash_: str, count: int) -> None:
        self.keys, self.seq, self.hash, self.count = keys, seq, hash_, count


@dataclass(frozen=True)
class SignedHead:
    """A chain head (the last seq and its hash) as signed with the online key at ``time``."""

    seq: int
    hash: str
    time: float
    signature: str


class AuditLog:
    """The audit log in ``folder`` (``HOME/audit``): ``audit.db`` and the online key. Safe across
    threads (a connection each) and processes (SQLite's write lock orders the appends).

    ``durable`` (default): each append is on disk before it returns (SQLite ``synchronous=FULL``:
    one fsync of the WAL an entry). False: ``synchronous=NORMAL``, an append is in the WAL (the
    OS's cache) when it returns, so it outlives the process but the last entries can be lost
    with the machine (power loss, kernel crash), and costs a fraction of a millisecond instead
    of the disk's fsync time; :meth:`sync` puts everything on disk (``seal`` does).

    A relaxed log appends an entry (one at a time: ``append``, ``append_seq``) to its journal
    (``faceprint.audit.journal``: one ``write`` of the chained line and one ``pwrite`` of the new
    latest head with its MAC at the journal's start, under the journal's lock) when the journal is
    as its own last write left it; the journal's entries move into ``audit.db`` every :data:`JOURNAL_BATCH` entries (on
    the thread of its :attr:`mover`, ``faceprint.audit.mover``: the search that fills a batch does not
    wait for its move) and before anything is read, so every reader sees them. Any other append
    (several entries at once, a durable log, files changed by another process or by hand) moves the
    journal first and is
    written to ``audit.db`` as before, finding there what changed. A relaxed log's WAL is checkpointed
    on a thread of its own every :data:`CHECKPOINT_EVERY` entries, so that no append waits for the
    checkpoint's fsyncs. ``journaled`` False: a relaxed log
    writes every append to ``audit.db`` (what it did before the journal; for measurements)."""

    def __init__(self, folder: Path, clock: Callable[[], float] = time.time, *, durable: bool = True,
                 journaled: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "audit.db"
        self.wal_path = self.path.with_name(self.path.name + "-wal")
        self.journal = Journal(self.folder)
        self.clock = clock
        self.durable = durable
        self.journaled = journaled  # False: a relaxed log writes every append to audit.db too (as durable ones do)
        self.signer = OnlineSigner(self.folder / "online-ed25519.pem")
        self._database: Database | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer a process at a time (the journal's flock: across them)
        self._writer: int | None = None  # the thread inside _exclusive
        self._fast: _Fast | None = None  # where the next single append may go to the journal
        self._latest: tuple[int, str, float, str] | None = None  # the latest head the last commit signed
        self._local = threading.local()
        self._identity: tuple[int, int] | None = None
        self._pending: dict[int, tuple[str, Entry, str]] = {}  # seq: (hash, entry, body) appended, not indexed
        self._written = 0  # entries a relaxed log wrote to audit.db since its last checkpoint began
        self._checkpointer: threading.Thread | None = None
        self.checkpoints = 0  # checkpoints made on a thread of their own, and their CPU seconds (for measurements)
        self.checkpoint_cpu = 0.0
        self.mover = Mover(self, "faceprint-audit-move")  # moves full batches of the journal
        self.background_moves = True  # False: the append that fills a batch moves it (as before the mover)
        _LOGS.add(self)

    # -- writing -------------------------------------------------------------------------------

    def append(self, entry: Entry) -> Record:
        """Record ``entry``: the next seq, chained and its head signed, in one write transaction.
        Raises :class:`AuditUnavailable` (never anything else) when it cannot be written."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[Entry]) -> list[Record]:
        """Record ``entries`` in order in one transaction (the chain as for one ``append`` each;
        the head signed after the last, and at every :data:`HEAD_EVERY`-th seq). The records hold
        the entries as stored (read back from their bodies: numpy numbers as Python's...)."""
        return [Record(seq, Entry.from_fields(json.loads(body)), prev, hash_)
                for seq, body, prev, hash_ in self._write(list(entries))]

    def append_seq(self, entry: Entry) -> int:
        """:meth:`append`, answering only the new entry's seq (no record read back: the audited
        operations' path, which needs no more)."""
        return self._write([entry])[0][0]

    def _write(self, entries: list[Entry]) -> list[tuple[int, str, str, str]]:
        """Append ``entries``: their stored rows (seq, body, prev_hash, hash); AuditUnavailable when
        they cannot be written."""
        try:
            if len(entries) == 1 and self._fast is not None and self.journaled:
                written = self._fast_write(entries[0])
                if written is not None:
                    return [written]
            database = self._db()
            self.signer.key  # noqa: B018 - made (or read) before the write lock is taken
            with self._exclusive():
                fast = self._fast if len(entries) == 1 and self.journaled and not self.durable else None
                if fast is not None and self._keys() == fast.keys:
                    return [self._to_journal(fast, entries[0])]
                return self._committed(database, entries)
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._fast = None
            raise AuditUnavailable(UNAVAILABLE) from exc

    def _fast_write(self, entry: Entry) -> tuple[int, str, str, str] | None:
        """:meth:`_to_journal` where the files are as this log's last write left them (what
        :meth:`_exclusive` does, written out: this is a search's path); None where they are not."""
        with self._write_lock:
            fd = self.journal.fd
            if fd is None or not self.journal.usable():
                return None
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._writer = threading.get_ident()
            try:
                fast = self._fast
                if fast is None or self._keys() != fast.keys:
                    return None
                return self._to_journal(fast, entry)
            finally:
                self._writer = None
                with suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """This log's writer: the thread lock, and the journal's lock across processes."""
        with self._write_lock:
            if not self.journal.usable():
                self._fast = None
                self.journal.open()
            with self.journal.locked():
                self._writer = threading.get_ident()
                try:
                    yield
                finally:
                    self._writer = None

    def _keys(self) -> tuple | None:
        """The journal as it is now (see :class:`_Fast`); None when it is gone."""
        try:
            return self.journal.key(), self.journal.read_head()
        except OSError:
            return None

    def _to_journal(self, fast: _Fast, entry: Entry) -> tuple[int, str, str, str]:
        """Append ``entry`` to the journal after the chain's end that ``fast`` knows, with the new
        latest head; the journal moved into ``audit.db`` once it holds :data:`JOURNAL_BATCH` entries."""
        seq, prev = fast.seq + 1, fast.hash
        body = canonical_json(entry.fields(seq))
        data = body.encode("ascii")
        hash_ = link_bytes(prev, data)
        journal_key = fast.keys[0]
        size = self.journal.append(seq, prev, hash_, data)
        try:
            now = float(self.clock())
            head = self.journal.write_head(seq, hash_, now, self.signer.mac_head(seq, hash_, now))
        except BaseException:
            with suppress(OSError):  # no line without its head
                os.ftruncate(self.journal.fd, journal_key[1])  # type: ignore[arg-type]
            raise
        self._pending[seq] = (hash_, entry, body)  # its columns made when it is indexed
        count = fast.count + 1
        self._fast = _Fast(((journal_key[0], journal_key[1] + size), head), seq, hash_, count)
        if count >= JOURNAL_BATCH and (count >= MOST_WAITING or not self.background_moves or not self.mover.wake()):
            with suppress(sqlite3.Error, OSError, ValueError):  # written; a later call moves it where this fails
                self._drain(self._db())
        return seq, body, prev, hash_

    def move_journal(self) -> None:
        """Move the journal into ``audit.db`` (its :attr:`mover`'s work, on the mover's thread); where
        it cannot, a later append or read does."""
        with suppress(sqlite3.Error, OSError, ValueError):
            database = self._db()
            with self._exclusive():
                self._drain(database)

    def _after_fork(self) -> None:
        """In a forked child (one thread): the locks a thread of the parent may have held (its mover
        in a move) anew, and the parent's threads forgotten."""
        self._lock, self._write_lock, self._writer = threading.Lock(), threading.Lock(), None
        self._checkpointer = None
        self.mover.after_fork()

    def _committed(self, database: Database, entries: list[Entry]) -> list[tuple[int, str, str, str]]:
        """Append ``entries`` in one ``audit.db`` transaction (the journal moved there first), finding
        there any change made since (see :meth:`_append`); a relaxed log then knows the files again."""
        self._fast = None
        self._same_file()
        self._drain(database)
        with database.tx() as db:
            written = self._append(db, entries)
        self._wrote(len(written))
        if written and self._latest is not None:  # the journal's head moves with the chain, whoever writes it
            with suppress(OSError):  # no head: the next append comes here again
                self.journal.write_head(*self._latest)
                keys = self._keys()
                if keys is not None and self.journaled and not self.durable:
                    self._fast = _Fast(keys, written[-1][0], written[-1][3], 0)
        return written[-len(entries):] if entries else []

    def _drain(self, database: Database) -> None:
        """Move the journal's entries into ``audit.db`` (the caller holds :meth:`_exclusive`), with
        the latest head: signed anew where the journal follows the stored chain and ends at its own
        head; else the journal's head as it is (or, with none there, the stored heads left as they
        are), so that the next append finds what does not match (see :meth:`_append`)."""
        lines = self.journal.lines()
        if not lines:
            return
        self._same_file()  # not into an audit.db removed or replaced since it was opened
        head = self.journal.head()
        end = (lines[-1][0], lines[-1][2])
        with database.tx() as db:
            last_seq, last_hash, head_seq, head_hash, top = db.execute(LAST).fetchone()
            before = None if last_seq is None else (last_seq, last_hash)
            latest = None if head_seq is None else (head_seq, head_hash)
            db.executemany(MOVE, lines)
            follows = (before or (0, GENESIS)) == (lines[0][0] - 1, lines[0][1]) and latest == before
            intact = follows and head is not None and (head[0], head[1]) == end
            if intact:
                self._sign_heads(db, before, [(seq, hash_) for seq, _, hash_, _ in lines])
            elif head is not None:
                self._install_head(db, latest, head)
            last = max(last_seq or 0, *(line[0] for line in lines))
            top = self._index_top(db, top or 0, last)
            if last - top >= index.INDEX_EVERY:
                self._catch_up(db, top)
        self._wrote(len(lines))
        self.journal.clear()
        fast = self._fast
        keys = self._keys() if intact and fast is not None and (fast.seq, fast.hash) == end else None
        self._fast = None if keys is None or fast is None else _Fast(keys, fast.seq, fast.hash, 0)

    def _wrote(self, count: int) -> None:
        """``count`` entries written to ``audit.db`` (the caller holds :meth:`_exclusive`): a relaxed
        log checkpoints its WAL on a thread of its own every :data:`CHECKPOINT_EVERY` of them."""
        self._written += count
        if self.durable or self._written < CHECKPOINT_EVERY:
            return
        running = self._checkpointer
        if running is not None and running.is_alive():  # (a thread of the parent is not alive in a forked child)
            return
        self._written = 0
        thread = threading.Thread(target=self._checkpoint, name="faceprint-audit-checkpoint", daemon=True)
        self._checkpointer = thread
        thread.start()

    def _checkpoint(self) -> None:
        """Copy the WAL's pages into ``audit.db`` (``PASSIVE``: no writer or reader waits for it), on
        this thread's own connection, closed after; where it cannot, the next one does, or SQLite."""
        database = self._database
        if database is None:
            return
        started = time.thread_time()
        try:
            database.db().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except (sqlite3.Error, OSError):
            pass
        finally:
            with suppress(sqlite3.Error):
                database.close()
            self.checkpoints += 1
            self.checkpoint_cpu += time.thread_time() - started

    def _install_head(self, db: sqlite3.Connection, latest: tuple[int, str] | None, head: Head) -> None:
        """Make the journal's ``head`` the stored latest head, as it is; the one before retires (a
        checkpoint's signed again as one, any other's removed)."""
        if latest is not None and latest[0] != head[0]:
            if latest[0] % HEAD_EVERY == 0:
                now = float(self.clock())
                db.execute(PUT_HEAD, (*latest, now, self.signer.sign_head(*latest, now, latest=False)))
            else:
                db.execute("DELETE FROM heads WHERE seq = ?", (latest[0],))
        db.execute(PUT_HEAD, head)

    def _settle(self) -> None:
        """Move the journal into ``audit.db`` before a read (best effort: a reader that cannot write
        reads what ``audit.db`` holds)."""
        if self._writer == threading.get_ident() or not self.journal.pending():
            return
        with suppress(sqlite3.Error, OSError, ValueError), self._exclusive():
            self._drain(self._db())

    def _same_file(self) -> None:
        """OSError when ``audit.db`` is gone or another file since it was opened (SQLite would go on
        writing to the file it has open, which no one would read again): the next call opens anew."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._forget()
            raise
        if self._identity is None:
            self._identity = (st.st_dev, st.st_ino)
        elif self._identity != (st.st_dev, st.st_ino):
            self._forget()
            raise FileNotFoundError(f"{self.path} was replaced")

    def _forget(self) -> None:
        """Open the database and the online key anew next time."""
        with self._lock:
            self._database, self._identity, self._fast = None, None, None
            self.signer = OnlineSigner(self.signer.path)
            self.journal.close()

    def _append(self, db: sqlite3.Connection, entries: list[Entry]) -> list[tuple[int, str, str, str]]:
        """Chain ``entries`` after the last stored one; where the stored chain does not end at its
        latest signed head, an :data:`BROKEN` entry saying so goes first (see :meth:`_broken`)."""
        last_seq, last_hash, head_seq, head_hash, top = db.execute(LAST).fetchone()
        before = None if last_seq is None else (last_seq, last_hash)
        top = self._index_top(db, top or 0, last_seq or 0)
        if len(self._pending) > 4 * index.INDEX_EVERY:  # another process indexed them
            self._pending = {k: v for k, v in self._pending.items() if k > top}
        latest = None if head_seq is None else (head_seq, head_hash)
        if entries and latest != before:
            entries = [self._broken(latest, before), *entries]
            self._drop_stale_heads(db, before)
        seq, prev = before or (0, GENESIS)
        written: list[tuple[int, str, str, str]] = []
        for entry in entries:
            seq += 1
            body = canonical_json(entry.fields(seq))
            hash_ = link(prev, body)
            written.append((seq, body, prev, hash_))
            self._pending[seq] = (hash_, entry, body)  # its columns made when it is indexed
            prev = hash_
        if len(written) == 1:
            db.execute(INSERT, written[0])
        else:
            db.executemany(INSERT, written)
        if written:
            self._sign_heads(db, before if latest == before else None, [(w[0], w[3]) for w in written])
            if seq - top >= index.INDEX_EVERY:
                self._catch_up(db, top)
        return written

    def _index_top(self, db: sqlite3.Connection, top: int, last: int) -> int:
        """The filter index's top, once no row of it lies past the last entry (entries cut off the
        end, or rows added to the index by hand: their seqs are the next entries')."""
        if top > last:
            db.execute("DELETE FROM entry_columns WHERE seq > ?", (last,))
            return last
        return top

    def _catch_up(self, db: sqlite3.Connection, top: int) -> None:
        """Index the entries after ``top`` (``columns.catch_up``), with the columns this log knows."""
        pending = self._pending

        def known(seq: int, hash_: str) -> index.Columns | None:
            found = pending.get(seq)
            return found[1].columns(found[2]) if found is not None and found[0] == hash_ else None

        new_top = index.catch_up(db, top, known)
        for seq in [s for s in pending if s <= new_top]:
            pending.pop(seq, None)

    def index(self) -> None:
        """Index every entry now (queries do not need it: they read the entries past the index)."""
        try:
            database = self._db()
            with self._exclusive():
                self._drain(database)
                with database.tx() as db:
                    last_seq, _, _, _, top = db.execute(LAST).fetchone()
                    self._catch_up(db, self._index_top(db, top or 0, last_seq or 0))
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc

    def _broken(self, latest: tuple[int, str] | None, before: tuple[int, str] | None) -> Entry:
        """The entry that keeps, in the chain, what an append found: a stored chain that does not end
        at the latest signed head (entries edited, cut off or added since it was signed, or heads
        removed). The next head is signed over that chain, but this entry stays in it."""
        now = float(self.clock())
        return Entry(BROKEN, Caller("faceprint", "system"), now, now,
                     details={"SignedHead": _position(latest), "LastEntry": _position(before)})

    @staticmethod
    def _drop_stale_heads(db: sqlite3.Connection, before: tuple[int, str] | None) -> None:
        """Remove the signed heads the stored chain no longer reaches or matches (past its end, or at
        it with another hash): the :data:`BROKEN` entry written now says what the latest of them was,
        so that one cut is reported once, not by every append until the log grows past it."""
        end, hash_ = before or (0, GENESIS)
        db.execute("DELETE FROM heads WHERE seq > ? OR (seq = ? AND hash != ?)", (end, end, hash_))

    def _sign_heads(self, db: sqlite3.Connection, before: tuple[int, str] | None,
                    heads: list[tuple[int, str]]) -> None:
        """Sign the new latest head (the last of ``heads``, the (seq, hash) of the entries written),
        and as checkpoints those at every :data:`HEAD_EVERY`-th seq. The latest head before them
        (``before``: its seq and hash, None where the chain did not end at it) retires: a
        checkpoint's is signed again as one, any other's row becomes the new latest head's; one the
        stored entries no longer matched stays, for verify to show."""
        signed, retired, latest = head_rows(self.signer, float(self.clock()), before, heads)
        if signed:
            db.executemany(PUT_HEAD, signed)
        self._latest = latest
        if retired is None:
            db.execute(PUT_HEAD, latest)
        else:  # one statement: no heads past it (it was the latest), so the new seq is free
            db.execute("UPDATE heads SET seq = ?, hash = ?, time = ?, signature = ? WHERE seq = ?", (*latest, retired))

    def delete_through(self, seq: int) -> int:
        """Remove the records up to ``seq`` and the heads they hold (retention's job: see
        ``faceprint.audit.retention``, which records the cut first); the WAL is emptied of them."""
        try:
            database = self._db()
            with self._exclusive():
                self._fast = None
                self._drain(database)
                with database.tx() as db:
                    gone = db.execute("DELETE FROM entries WHERE seq <= ?", (seq,)).rowcount
                    db.execute("DELETE FROM entry_columns WHERE seq <= ?", (seq,))
                    db.execute("DELETE FROM heads WHERE seq <= ?", (seq,))
                database.erase_wal()
            return gone
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc

    # -- reading -------------------------------------------------------------------------------

    def get(self, seq: int) -> Record | None:
        row = self._one("SELECT seq, body, prev_hash, hash FROM entries WHERE seq = ?", (int(seq),))
        return Record.from_row(*row) if row else None

    def head(self) -> tuple[int, str]:
        """The last seq and its hash; ``(0, GENESIS)`` when the log is empty."""
        row = self._one("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1", ())
        return (row[0], row[1]) if row else (0, GENESIS)

    def first_seq(self) -> int | None:
        row = self._one("SELECT min(seq) FROM entries", ())
        return row[0] if row else None

    def count(self) -> int:
        return self._one("SELECT count(*) FROM entries", ())[0]

    def count_through(self, seq: int) -> int:
        """How many records there are up to ``seq``."""
        return self._one("SELECT count(*) FROM entries WHERE seq <= ?", (int(seq),))[0]

    def first_started_since(self, since: float) -> int | None:
        """The first seq of a record started at or after ``since`` (None: there is none)."""
        found = self.query(AuditFilter(since=float(since)), limit=1)
        return found[0].seq if found else None

    def last_before(self, seq: int) -> int | None:
        """The last seq of a record before ``seq`` (None: there is none)."""
        return self._one("SELECT max(seq) FROM entries WHERE seq < ?", (int(seq),))[0]

    def query(self, filters: AuditFilter = EVERYTHING, after: int = 0, limit: int = 1000) -> list[Record]:
        """Up to ``limit`` records after seq ``after`` that match ``filters``, in seq order: through
        the filter index up to its top, then by reading the bodies of the entries past it."""
        parts, params = filters.where()
        after, limit = int(after), int(limit)
        if not parts:
            rows = self._all("SELECT seq, body, prev_hash, hash FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                             (after, limit))
            return [Record.from_row(*row) for row in rows]
        top = self._one(index.TOP, ())[0] or 0
        sql = ("SELECT e.seq, e.body, e.prev_hash, e.hash FROM entry_columns c JOIN entries e ON e.seq = c.seq "
               "WHERE " + " AND ".join(["c.seq > ?", "c.seq <= ?", *[f"c.{p}" for p in parts]])
               + " ORDER BY c.seq LIMIT ?")
        rows = self._all(sql, (after, top, *params, limit)) if after < top else []
        start = max(after, top)
        while len(rows) < limit:
            page = self._all("SELECT seq, body, prev_hash, hash FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                             (start, PAGE))
            rows += index.tail(page, filters)[:limit - len(rows)]
            if len(page) < PAGE:
                break
            start = page[-1][0]
        return [Record.from_row(*row) for row in rows]

    def records(self, start: int = 0) -> Iterator[Record]:
        """Every record from seq ``start`` on, in seq order, read a page at a time."""
        for seq, body, prev_hash, hash_, *_ in self.rows(start):
            yield Record.from_row(seq, body, prev_hash, hash_)

    def rows(self, start: int = 0) -> Iterator[tuple]:
        """The stored rows from seq ``start`` on: (seq, body, prev_hash, hash, started, operation,
        actor, collection_id, case_ref), a page at a time (for verification); the five columns are
        the filter index's, all None where it holds no row for the entry (see :meth:`index_top`)."""
        after = int(start) - 1
        while True:
            page = self._all("SELECT e.seq, e.body, e.prev_hash, e.hash, c.started, c.operation, c.actor, "
                             "c.collection_id, c.case_ref FROM entries e LEFT JOIN entry_columns c ON c.seq = e.seq "
                             "WHERE e.seq > ? ORDER BY e.seq LIMIT ?", (after, PAGE))
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def index_top(self) -> int:
        """The last seq the filter index holds (0: none); entries past it are not indexed yet."""
        return self._one(index.TOP, ())[0] or 0

    def signed_heads(self) -> list[SignedHead]:
        """The kept signed heads, in seq order."""
        return [SignedHead(*row) for row in self._all("SELECT seq, hash, time, signature FROM heads ORDER BY seq", ())]

    def latest_head(self) -> SignedHead | None:
        """The latest head with its Ed25519 signature (made now where it is stored with a MAC)."""
        row = self._one("SELECT seq, hash, time, signature FROM heads ORDER BY seq DESC LIMIT 1", ())
        return self.ed25519(SignedHead(*row)) if row else None

    def ed25519(self, head: SignedHead) -> SignedHead:
        """``head`` as the latest head, signed with Ed25519 (itself where it is; see ``signing``)."""
        return signed_latest(self.signer, head)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside (on this thread) see the log as it was at the first: one read transaction,
        so that entries appended meanwhile do not show without their signed head."""
        try:
            self._settle()
            reading = self._db().reading()
            reading.__enter__()
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(UNREADABLE) from exc
        try:
            yield
        finally:
            with suppress(sqlite3.Error):
                reading.__exit__(None, None, None)

    def close(self) -> None:
        """Close this thread's connection."""
        if self._database is not None:
            self._database.close()

    # -- the database ----------------------------------------------------------------------------

    def sync(self) -> None:
        """Everything appended so far on disk (an fsync of the journal, its head and the WAL)."""
        wal = self.wal_path
        try:
            with self._write_lock:
                self.journal.sync()  # the entries not moved yet, and the head
        except OSError as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc
        try:
            fd = os.open(wal, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise AuditUnavailable(UNAVAILABLE) from exc
        finally:
            os.close(fd)

    def _db(self) -> Database:
        if self._database is None:
            with self._lock:
                if self._database is None:
                    database = Database(self.path, SCHEMA)
                    index.migrate(database.db())
                    self._database = database
        if not self.durable:
            connection = self._database.db()
            if getattr(self._local, "relaxed", None) is not connection:
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")  # see CHECKPOINT_EVERY
                self._local.relaxed = connection
        return self._database

    def _one(self, sql: str, params: tuple) -> tuple | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _all(self, sql: str, params: tuple) -> list[tuple]:
        try:
            connection = self._db().db()
            if not connection.in_transaction:
                self._settle()
            try:
                return connection.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
            connection.text_factory = lenient_text  # text that is not UTF-8 was written in: read it anyway
            try:
                return connection.execute(sql, params).fetchall()
            finally:
                connection.text_factory = str
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(UNREADABLE) from exc


def head_rows(signer: Any, now: float, before: tuple[int, str] | None, heads: list[tuple[int, str]]
              ) -> tuple[list[tuple[int, str, float, str]], int | None, tuple[int, str, float, str]]:
    """The head rows an append writes, for both logs (embedded and PostgreSQL): the checkpoints among
    ``heads`` (the (seq, hash) of the entries written; every :data:`HEAD_EVERY`-th seq, signed with
    Ed25519); the latest head before them (``before``; None where the chain did not end at it), which
    retires: signed again as a checkpoint where it is one, else its seq is returned, to be replaced;
    and the new latest head (the last of ``heads``) with its MAC (see ``signing``)."""
    sign = signer.sign_head
    signed = [(seq, hash_, now, sign(seq, hash_, now, latest=False))
              for seq, hash_ in heads[:-1] if seq % HEAD_EVERY == 0]
    retired = None
    if before is not None:
        if before[0] % HEAD_EVERY == 0:
            signed.append((*before, now, sign(*before, now, latest=False)))
        else:
            retired = before[0]
    seq, hash_ = heads[-1]
    return signed, retired, (seq, hash_, now, signer.mac_head(seq, hash_, now))


def signed_latest(signer: Any, head: SignedHead) -> SignedHead:
    """``head``, the latest head (stored with a MAC), with an Ed25519 signature made now (for both
    logs); AuditUnavailable where the online key cannot be read."""
    try:
        signature = signer.signed_latest(head.seq, head.hash, head.time, head.signature)
    except (OSError, ValueError) as exc:
        raise AuditUnavailable(UNREADABLE) from exc
    return SignedHead(head.seq, head.hash, head.time, signature)


_LOGS: weakref.WeakSet[AuditLog] = weakref.WeakSet()
"""The logs of this process, whose locks a forked child takes anew (see :meth:`AuditLog._after_fork`)."""


def _forked() -> None:
    for log in list(_LOGS):
        log._after_fork()


os.register_at_fork(after_in_child=_forked)
