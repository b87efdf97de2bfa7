"""The audit log's journal: where a relaxed (not ``durable``) log appends an entry on a search's
path, moved into ``audit.db`` in batches (``faceprint.audit.log``).

``HOME/audit/audit.journal`` starts with the latest head (its first :data:`HEAD_SIZE` bytes: one
line ``SEQ HASH TIME SIGNATURE``, the signature a MAC as in ``audit.db``'s ``heads``, padded with
spaces), overwritten in place with one ``pwrite(2)`` by every append, and then holds one line an
entry not yet moved into ``audit.db``, ``SEQ PREV_HASH HASH BODY`` (the body is the entry's
canonical JSON, ASCII with no line breaks), appended with one ``write(2)``. It is written under an
exclusive ``flock`` of itself, which every writer of the log takes (the log's thread lock orders
the threads of one process). An entry is written once its line is in the file: in the OS's
cache, as SQLite's WAL with ``synchronous=NORMAL`` keeps a commit.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

HEAD_SIZE = 256
"""The head's bytes at the start of the journal: one line, padded with spaces."""
MOST_SEQ = 2 ** 62
"""A line whose seq is not a number from 1 to this (edited by hand) takes the seq after the line before."""

Line = tuple[int, str, str, str]
"""(seq, prev_hash, hash, body) of one journal line."""
Head = tuple[int, str, float, str]
"""(seq, hash, time, signature) of the journal's head."""


class Journal:
    """``audit.journal`` in ``folder``, opened by :meth:`open`: ``fd`` appends lines, ``head_fd``
    (the same file, not in append mode) writes the head at its start."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "audit.journal"
        self.fd: int | None = None
        self.head_fd: int | None = None
        self.pid = 0  # the process that opened it: a child forked since shares its lock, and opens its own

    def usable(self) -> bool:
        """Whether the journal is open, by this process (not inherited through a fork)."""
        return self.fd is not None and self.pid == os.getpid()

    def open(self) -> None:
        """Open (or create, 0600) the journal."""
        self.close()
        cloexec = getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | cloexec, 0o600)
        try:
            self.head_fd = os.open(self.path, os.O_RDWR | cloexec)
        except OSError:
            os.close(fd)
            raise
        self.fd, self.pid = fd, os.getpid()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        if self.pid == os.getpid():  # a child's copies are closed with it, its parent's lock untouched
            for fd in (self.fd, self.head_fd):
                if fd is not None:
                    with suppress(OSError):
                        os.close(fd)
        self.fd = self.head_fd = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The journal's exclusive lock (across processes), held inside."""
        fd = self.fd
        assert fd is not None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with suppress(OSError):  # closed inside (the log forgot its files): the lock went with it
                fcntl.flock(fd, fcntl.LOCK_UN)

    def pending(self) -> bool:
        """Whether the journal (by its path) holds entries."""
        try:
            return os.stat(self.path).st_size > HEAD_SIZE
        except OSError:
            return False

    def key(self) -> tuple[int, int]:
        """The inode and size of the journal this one has open (one ``fstat``: no walk of the
        path, a search's path); OSError when it is closed or gone from its folder (removed, or
        replaced by a rename: no link left to it)."""
        if self.fd is None:
            raise OSError(f"{self.path} is not open")
        st = os.fstat(self.fd)
        if st.st_nlink == 0:
            raise FileNotFoundError(f"{self.path} was removed or replaced")
        return st.st_ino, st.st_size

    def append(self, seq: int, prev_hash: str, hash_: str, body: bytes) -> int:
        """Write one entry's line (one ``write``; ``body``: the entry's canonical JSON, encoded) after
        the head (written first: see :meth:`write_head`); the bytes written. A short write is undone
        (the file cut back) and raised as OSError, so that no half line stays."""
        assert self.fd is not None
        line = b"".join((f"{seq} {prev_hash} {hash_} ".encode("ascii"), body, b"\n"))
        written = os.write(self.fd, line)
        if written != len(line):
            with suppress(OSError):
                os.ftruncate(self.fd, os.fstat(self.fd).st_size - written)
            raise OSError(f"short write to {self.path}")
        return written

    def lines(self) -> list[Line]:
        """The journal's entries, in file order. A last line without its line break (a write cut
        short by a crash) was never written and is left out; a line edited by hand is read as
        well as it can be (``faceprint.audit.verify`` finds what is wrong with it)."""
        assert self.fd is not None
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, size - HEAD_SIZE, HEAD_SIZE) if size > HEAD_SIZE else b""
        end = data.rfind(b"\n") + 1
        out: list[Line] = []
        for raw in data[:end].split(b"\n")[:-1]:
            out.append(parse_line(raw.decode("utf-8", "replace"), out[-1][0] if out else 0))
        return out

    def clear(self) -> None:
        """Empty the journal of entries (they are in ``audit.db``); the head stays."""
        assert self.fd is not None
        os.ftruncate(self.fd, HEAD_SIZE)

    def write_head(self, seq: int, hash_: str, time_: float, signature: str) -> bytes:
        """Overwrite the head with this one (a journal shorter than the head grows to it); its bytes
        (as :meth:`read_head` reads them back)."""
        assert self.head_fd is not None
        data = f"{seq} {hash_} {time_!r} {signature}".encode("ascii").ljust(HEAD_SIZE - 1) + b"\n"
        if len(data) != HEAD_SIZE or os.pwrite(self.head_fd, data, 0) != HEAD_SIZE:
            raise OSError(f"the head could not be written to {self.path}")
        return data

    def read_head(self) -> bytes:
        assert self.head_fd is not None
        return os.pread(self.head_fd, HEAD_SIZE, 0)

    def head(self) -> Head | None:
        """The journal's head (None: there is none, or it is not one)."""
        return parse_head(self.read_head())

    def sync(self) -> None:
        """The journal on disk."""
        if self.fd is not None:
            os.fsync(self.fd)


def parse_line(text: str, before: int) -> Line:
    """One journal line; ``before``: the seq of the line before it."""
    parts = text.split(" ", 3)
    while len(parts) < 4:
        parts.insert(0, "")
    seq_text, prev_hash, hash_, body = parts
    try:
        seq = int(seq_text)
    except ValueError:
        seq = 0
    if not 0 < seq < MOST_SEQ or not seq_text.isdigit():
        seq = before + 1
    return seq, prev_hash, hash_, body


def parse_head(data: bytes) -> Head | None:
    """A head as :meth:`Journal.write_head` wrote it, or None."""
    parts = data.decode("ascii", "replace").split()
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    try:
        return int(parts[0]), parts[1], float(parts[2]), parts[3]
    except ValueError:
        return None
