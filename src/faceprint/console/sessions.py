"""Console sessions: a signed cookie naming a session kept in ``users.db``.

The cookie holds a random session id and its HMAC-SHA256 under the console's secret
(``HOME/console/secret``, 32 random bytes made on first use, 0600; in the store's database when it
is PostgreSQL: :func:`faceprint.console.pgusers.signing_secret`): a cookie that was not made
here, or was edited, is refused before the database is asked. The session itself (who, since
when, last use) stays on the server, so that signing out, a password change or deleting the user
ends it for good. A session ends after ``idle`` seconds without a request and, whatever its use,
``lifetime`` seconds after sign-in. The cookie is ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no other site's page sends it), ``Path=/console`` and ``Secure`` when the
console is served over TLS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from faceprint.console.users import ConsoleUser, ConsoleUsers
from faceprint.home import create_private, private_folder

COOKIE = "faceprint_console"
IDLE_SECONDS = 30 * 60
LIFETIME_SECONDS = 12 * 3600
TOUCH_EVERY = 30.0
"""A session's last use is written at most this often (not at every request)."""


def load_secret(folder: Path) -> bytes:
    """The console's signing secret, made on first use (0600)."""
    path = private_folder(Path(folder)) / "secret"
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        secret = os.urandom(32)
        tmp = path.with_name(f"secret.{os.getpid()}.tmp")
        fd = create_private(tmp)
        try:
            os.write(fd, secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # two processes starting at once: the first one's secret wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        secret = path.read_bytes()
    if len(secret) < 32:
        raise ValueError(f"{path} is damaged (under 32 bytes); delete it to make a new one (signs everyone out).")
    return secret


@dataclass(frozen=True)
class Session:
    sid: str
    user: ConsoleUser
    created: float
    seen: float


class Sessions:
    def __init__(self, users: ConsoleUsers, secret: bytes, idle: float = IDLE_SECONDS,
                 lifetime: float = LIFETIME_SECONDS) -> None:
        self.users = users
        self.secret = secret
        self.idle = idle
        self.lifetime = lifetime

    def sign(self, purpose: str, value: str) -> str:
        mac = hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def cookie_value(self, sid: str) -> str:
        return f"{sid}.{self.sign('session', sid)}"

    def open(self, user: ConsoleUser) -> str:
        """A new session for ``user``: the cookie value to set."""
        return self.cookie_value(self.users.open_session(user.name))

    def find(self, cookie: str | None) -> Session | None:
        """The live session a cookie names, or None (no cookie, a bad signature, ended or expired)."""
        sid = self.verified_sid(cookie)
        if sid is None:
            return None
        found = self.users.session(sid)
        if found is None:
            return None
        user, created, seen = found
        now = self.users.clock()
        if now - seen > self.idle or now - created > self.lifetime:
            self.users.close_session(sid)
            return None
        if now - seen > TOUCH_EVERY:
            self.users.touch_session(sid)
        return Session(sid, user, created, seen)

    def verified_sid(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 200 or "." not in cookie:
            return None
        sid, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac.encode(), self.sign("session", sid).encode()):
            return None
        return sid

    def close(self, cookie: str | None) -> None:
        sid = self.verified_sid(cookie)
        if sid is not None:
            self.users.close_session(sid)
