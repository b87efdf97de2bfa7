"""CSRF protection: every POST form carries a token bound to the session.

The token is the HMAC-SHA256 of the session id under the console's secret (see
:mod:`faceprint.console.sessions`): another site cannot read it (the page is same-origin) and
cannot make it (it lacks the secret), and it changes with each session. It is checked in
constant time before any POST is acted on; the sign-in form, which has no session yet, carries
a token bound to a short-lived pre-session cookie instead. ``SameSite=Strict`` cookies are the
second line: a cross-site POST does not carry the session at all.
"""

from __future__ import annotations

import hmac
import os

from faceprint.console.sessions import Sessions

PRE_COOKIE = "faceprint_console_pre"


def token(sessions: Sessions, sid: str) -> str:
    return sessions.sign("csrf", sid)


def valid(sessions: Sessions, sid: str | None, given: object) -> bool:
    if sid is None or not isinstance(given, str) or not given or len(given) > 200:
        return False
    return hmac.compare_digest(given.encode(), token(sessions, sid).encode())


def new_pre_session() -> str:
    """A random id for the sign-in form's token (set in :data:`PRE_COOKIE`)."""
    return os.urandom(16).hex()
