"""The faceprint home is private: its folders 0700, faceprint's files in it 0600.

The home holds face vectors (``faceprint.db`` and its WAL), index files and access keys, so no
other local user may read it, whatever the process's umask (which is left alone). A home made
by an older faceprint with open modes is tightened when it is opened. Folders created on the
way to the home (its parents) keep the umask's modes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077
"""Group and other permission bits: never set on what faceprint keeps in its home."""

log = logging.getLogger(__name__)


def private_folder(path: Path) -> Path:
    """``path`` as a folder only its owner can use: created 0700, or an existing one tightened."""
    try:
        path.mkdir(mode=FOLDER_MODE, parents=True)
    except FileExistsError:
        tighten(path)
    else:
        os.chmod(path, FOLDER_MODE)  # a strict umask may have taken the owner's bits too
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read: created empty 0600 (so that what opens it next,
    e.g. SQLite, keeps that mode), or an existing one tightened; never truncated."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    except FileExistsError:
        tighten(path)
    else:
        os.close(fd)
    return path


def create_private(path: Path) -> int:
    """A new file opened for writing, 0600 whatever the umask (for a temporary file: it must not exist)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: Path, write: Callable[[BinaryIO], Any], tmp_name: str | None = None) -> None:
    """Write a private file (0600) atomically: ``write(out)`` fills a temporary file beside ``path``
    (``tmp_name``, default ``.NAME.PID-THREAD.tmp``), which is flushed, fsynced and renamed over
    ``path``, so a crash leaves the old file or the new one, never a torn one."""
    tmp = path.with_name(tmp_name or f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a writer of this pid and thread that died
    try:
        with os.fdopen(create_private(tmp), "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def tighten(path: Path) -> None:
    """Take group and other permissions off ``path`` if it has any (a missing path is left alone;
    one that cannot be changed, someone else's or on a read-only file system, is logged, not
    fatal: its owner decides)."""
    with contextlib.suppress(FileNotFoundError):
        current = stat.S_IMODE(os.stat(path).st_mode)
        if current & _OTHERS:
            try:
                os.chmod(path, current & ~_OTHERS)
            except OSError as exc:
                log.warning("%s is open to other users (%s) and cannot be made private: %s", path,
                            oct(current), exc.strerror)


class FileLock:
    """An exclusive ``flock`` on ``path`` (a private file, created on first use), released by the
    kernel when its holder dies: one process of several runs something for a home (the video
    runner, the stream host). Locks of separate opens conflict, in one process too."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if no one holds it (never waits)."""
        if self._fd is not None:
            return True
        private_folder(self.path.parent)
        fd = os.open(private_file(self.path), os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_held(path: Path) -> bool:
    """True when some process holds the :class:`FileLock` on ``path`` now (creates nothing: tries a
    non-blocking lock and lets it go at once; a holder starting in that instant finds it taken)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor releases a lock taken on it
    return False
