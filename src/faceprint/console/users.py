"""Console users: who may sign in to ``/console``, with which role.

Not Rekognition's "users" (the faces of one person in a collection): these are the people who
use the console. They live in ``HOME/console/users.db`` (private, 0600), or in the store's database
when it is PostgreSQL (:func:`faceprint.console.pgusers.open_console_users`). A password is kept only
as its scrypt digest (n=2**15, r=8, p=1: 32 MiB and about 0.1 s per try, so that a stolen file
is slow to attack), with a random 16-byte salt per user, and compared in constant time. After
``MAX_FAILURES`` wrong passwords in a row an account is locked for ``LOCK_SECONDS``; a right
password while locked is refused too. A sign-in for a name that does not exist costs the same
scrypt as one that does, so that timing does not tell which names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.errors import (
    InvalidParameterException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from faceprint.home import private_folder
from faceprint.store.database import Database

ROLES = ("investigator", "reviewer", "auditor", "admin")
"""investigator: searches and sends candidates to review; reviewer: decides on candidates; auditor:
reads the audit record (read-only); admin: everything, deleting faces and managing users included."""
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
"""hashlib.scrypt's parameters: 128 * r * n = 32 MiB of memory per hash (maxmem leaves room)."""
HASH_SLOTS = 2
"""Password hashes computed at once, all sign-ins and changes of this process together (each holds
32 MiB and a core for about 0.1 s): a flood of sign-ins queues rather than exhausting memory."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    salt BLOB NOT NULL,
    digest BLOB NOT NULL,
    refuse_low_quality INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    changed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created REAL NOT NULL,
    seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_name ON sessions(name);
"""


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    role: str
    refuse_low_quality: bool = False
    failures: int = 0
    locked_until: float = 0.0
    created: float = 0.0

    def locked(self, now: float) -> bool:
        return self.locked_until > now

    def to_json(self, now: float) -> dict[str, object]:
        return {"Name": self.name, "Role": self.role, "RefuseLowQuality": self.refuse_low_quality,
                "FailedAttempts": self.failures, "Locked": self.locked(now),
                "LockedUntil": self.locked_until if self.locked(now) else None, "Created": self.created}


class SignInRefused(Exception):
    """A sign-in that failed: wrong name or password, or a locked account (the message says which
    only for a locked account, whose name the person gave)."""

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


class PasswordHasher:
    """scrypt with a per-user salt; at most ``slots`` hashes at once."""

    def __init__(self, slots: int = HASH_SLOTS, params: dict[str, int] | None = None) -> None:
        self.params = dict(params or SCRYPT)
        self._slots = threading.BoundedSemaphore(slots)

    def hash(self, password: str, salt: bytes) -> bytes:
        with self._slots:
            return hashlib.scrypt(password.encode("utf-8"), salt=salt, **self.params)

    def matches(self, password: str, salt: bytes, digest: bytes) -> bool:
        return hmac.compare_digest(self.hash(password, salt), digest)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidParameterException("A console user name is 1 to 64 letters, digits or . _ @ -, starting with a "
                                        "letter or digit.")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidParameterException(f"A console user's role is one of {', '.join(ROLES)}.")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidParameterException(f"A console password is {MIN_PASSWORD} to {MAX_PASSWORD} characters.")
    return password


class ConsoleUsers:
    """The console's users and sessions in ``folder/users.db`` (``folder`` = ``HOME/console``)."""

    def __init__(self, folder: Path | None, clock: Callable[[], float] = time.time,
                 hasher: PasswordHasher | None = None, *, database: Any = None) -> None:
        """``database``: one with :class:`Database`'s interface in place of ``folder/users.db`` (the shared
        PostgreSQL one, :func:`faceprint.console.pgusers.open_console_users`; ``folder`` is then None)."""
        self.folder = private_folder(Path(folder)) if folder is not None else None
        if database is None:
            if self.folder is None:
                raise TypeError("ConsoleUsers needs a folder or a database")
            database = Database(self.folder / "users.db", SCHEMA)
        self.db = database
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self._dummy_salt = os.urandom(16)

    # -- managing users -----------------------------------------------------------------------
    def add(self, name: str, role: str, password: str, refuse_low_quality: bool = False) -> ConsoleUser:
        check_name(name), check_role(role), check_password(password)
        salt = os.urandom(16)
        digest = self.hasher.hash(password, salt)
        now = self.clock()
        with self.db.tx() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ResourceAlreadyExistsException(f"Console user {name} already exists.")
            db.execute("INSERT INTO users (name, role, salt, digest, refuse_low_quality, created, changed) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (name, role, salt, digest, int(refuse_low_quality), now, now))
        return self.require(name)

    def get(self, name: str) -> ConsoleUser | None:
        row = self.db.db().execute("SELECT name, role, refuse_low_quality, failures, locked_until, created "
                                   "FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    def require(self, name: str) -> ConsoleUser:
        user = self.get(name)
        if user is None:
            raise ResourceNotFoundException(f"Console user {name} does not exist.")
        return user

    def list(self) -> list[ConsoleUser]:
        rows = self.db.db().execute("SELECT name, role, refuse_low_quality, failures, locked_until, created "
                                    "FROM users ORDER BY name").fetchall()
        return [_user(row) for row in rows]

    def delete(self, name: str) -> None:
        """Remove the user and end their sessions."""
        with self.db.tx() as db:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise ResourceNotFoundException(f"Console user {name} does not exist.")
        self.db.erase_wal()

    def set_password(self, name: str, password: str) -> ConsoleUser:
        """A new password (and salt); the user's sessions end and a lock-out is lifted."""
        check_password(password)
        self.require(name)
        salt = os.urandom(16)
        digest = self.hasher.hash(password, salt)
        with self.db.tx() as db:
            changed = db.execute("UPDATE users SET salt = ?, digest = ?, failures = 0, locked_until = 0, changed = ? "
                                 "WHERE name = ?", (salt, digest, self.clock(), name)).rowcount
            db.execute("DELETE FROM sessions WHERE name = ?", (name,))
        if not changed:
            raise ResourceNotFoundException(f"Console user {name} does not exist.")
        self.db.erase_wal()
        return self.require(name)

    def update(self, name: str, role: str | None = None, refuse_low_quality: bool | None = None) -> ConsoleUser:
        if role is not None:
            check_role(role)
        with self.db.tx() as db:
            row = db.execute("SELECT role, refuse_low_quality FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise ResourceNotFoundException(f"Console user {name} does not exist.")
            new_role = role if role is not None else row[0]
            refuse = int(refuse_low_quality) if refuse_low_quality is not None else row[1]
            db.execute("UPDATE users SET role = ?, refuse_low_quality = ?, changed = ? WHERE name = ?",
                       (new_role, refuse, self.clock(), name))
        return self.require(name)

    def unlock(self, name: str) -> ConsoleUser:
        with self.db.tx() as db:
            if db.execute("UPDATE users SET failures = 0, locked_until = 0 WHERE name = ?", (name,)).rowcount == 0:
                raise ResourceNotFoundException(f"Console user {name} does not exist.")
        return self.require(name)

    # -- signing in ---------------------------------------------------------------------------
    def authenticate(self, name: str, password: str) -> ConsoleUser:
        """The user, if ``password`` is theirs and the account is not locked; else :class:`SignInRefused`.
        Each wrong password counts; the ``MAX_FAILURES``-th in a row locks the account for ``LOCK_SECONDS``."""
        row = None
        if isinstance(name, str) and NAME.fullmatch(name):
            row = self.db.db().execute("SELECT salt, digest, locked_until FROM users WHERE name = ?",
                                       (name,)).fetchone()
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            password = ""
        if row is None:
            self.hasher.hash(password, self._dummy_salt)  # the same cost as a real user's try
            raise SignInRefused("Wrong user name or password.")
        salt, digest, locked_until = row
        now = self.clock()
        if locked_until > now:
            raise SignInRefused(_locked_message(locked_until, now), locked=True)
        if self.hasher.matches(password, salt, digest):
            with self.db.tx() as db:
                db.execute("UPDATE users SET failures = 0, locked_until = 0 WHERE name = ?", (name,))
            return self.require(name)
        return self._failed(name, now)

    def _failed(self, name: str, now: float) -> ConsoleUser:
        with self.db.tx() as db:
            row = db.execute("SELECT failures FROM users WHERE name = ?", (name,)).fetchone()
            failures = (row[0] if row else 0) + 1
            locked_until = now + LOCK_SECONDS if failures >= MAX_FAILURES else 0.0
            db.execute("UPDATE users SET failures = ?, locked_until = ? WHERE name = ?",
                       (0 if locked_until else failures, locked_until, name))
        if locked_until:
            raise SignInRefused(_locked_message(locked_until, now), locked=True)
        raise SignInRefused("Wrong user name or password.")

    # -- sessions (the cookie carries the signed id; see faceprint.console.sessions) -------------
    def open_session(self, name: str) -> str:
        sid = os.urandom(24).hex()
        now = self.clock()
        with self.db.tx() as db:
            db.execute("INSERT INTO sessions (sid, name, created, seen) VALUES (?, ?, ?, ?)", (sid, name, now, now))
            db.execute("DELETE FROM sessions WHERE seen < ?", (now - 7 * 24 * 3600,))  # long-dead ones
        return sid

    def session(self, sid: str) -> tuple[ConsoleUser, float, float] | None:
        """The session's user, its start and last use; None if it is unknown (ended, or its user gone)."""
        row = self.db.db().execute("SELECT name, created, seen FROM sessions WHERE sid = ?", (sid,)).fetchone()
        if row is None:
            return None
        user = self.get(row[0])
        return (user, row[1], row[2]) if user is not None else None

    def touch_session(self, sid: str) -> None:
        with self.db.tx() as db:
            db.execute("UPDATE sessions SET seen = ? WHERE sid = ?", (self.clock(), sid))

    def close_session(self, sid: str) -> None:
        with self.db.tx() as db:
            db.execute("DELETE FROM sessions WHERE sid = ?", (sid,))


def _user(row: tuple) -> ConsoleUser:
    return ConsoleUser(row[0], row[1], bool(row[2]), row[3], row[4], row[5])


def _locked_message(until: float, now: float) -> str:
    minutes = max(1, round((until - now) / 60))
    return (f"Too many wrong passwords: this account is locked for {minutes} more minute{'s' if minutes > 1 else ''} "
            "(an admin can unlock it: faceprint console-users unlock NAME).")
