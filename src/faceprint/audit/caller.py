"""Who asks, and why: the :class:`Caller` every audited operation records.

The server makes one from the access key that signed the request (its name, purpose and case
headers), the console from the signed-in console user, and the Python API and CLI from the OS
user (:func:`os_caller`), with the ``purpose`` and ``case`` the call gives.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import os
import re
from dataclasses import dataclass

from faceprint.errors import AccessDeniedException, InvalidParameterException

KINDS = ("key", "console", "os", "system")
MAX_PURPOSE = 500
MAX_CASE = 200
UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
"""What a purpose or case may not hold: controls (C0, DEL, C1), line and paragraph separators,
bidirectional embeddings, overrides and isolates, surrogates. (The marks LRM, RLM and ALM, which
right-to-left text needs, and joiners such as Persian's ZWNJ are kept.)"""


@dataclass(frozen=True)
class Caller:
    """The person or process behind a call.

    ``actor`` is an access key's name (``kind="key"``), a console user (``"console"``), the OS
    user (``"os"``) or a component such as ``stream-processor:NAME`` (``"system"``);
    ``key_id`` the access key id when there is one. ``purpose`` and ``case`` are what the call
    declares (or the key's purpose); ``require_case`` makes a search without a case
    ``AccessDeniedException``; ``refuse_low_quality`` makes a search whose probe falls under
    the quality floor ``InvalidParameterException``."""

    actor: str
    kind: str = "os"
    key_id: str | None = None
    purpose: str | None = None
    case: str | None = None
    require_case: bool = False
    refuse_low_quality: bool = False

    def with_declared(self, purpose: str | None = None, case: str | None = None) -> Caller:
        """This caller with the call's own purpose and case where it gives them."""
        changes = {k: v for k, v in (("purpose", purpose), ("case", case)) if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def checked(self) -> Caller:
        """This caller, once its purpose and case are of a sane size and printable (see :func:`printable`)
        and a required case is given."""
        for name, value, most in (("Purpose", self.purpose, MAX_PURPOSE), ("Case reference", self.case, MAX_CASE)):
            if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > most
                                      or not printable(value)):
                raise InvalidParameterException(f"{name} must be 1 to {most} printable characters.")
        if self.require_case and not self.case:
            raise AccessDeniedException(f"{self.actor} must give a case reference for this operation "
                                        "(X-Faceprint-Case, --case, or case=).")
        return self

    def to_json(self) -> dict[str, str | None]:
        return {"Actor": self.actor, "Kind": self.kind, "KeyId": self.key_id, "Purpose": self.purpose,
                "Case": self.case}


def printable(text: str) -> bool:
    """Whether ``text`` shows as what it is wherever an audit entry is read (console, CSV, terminal):
    nothing of :data:`UNSHOWN` (a bidirectional override makes ``"CASE-\u202e1234"`` show as
    ``CASE-4321``)."""
    return UNSHOWN.search(text) is None


def os_user() -> str:
    """The OS user running this process (``uid:N`` when the name cannot be found): as
    ``getpass.getuser`` finds it, looked up once for each uid and environment it depends on
    (``getpass`` reads the password database each time: microseconds a search)."""
    environ = os.environ
    return _user(os.getuid(), *(environ.get(name) for name in USER_VARIABLES))


USER_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")
"""The environment variables ``getpass.getuser`` reads, in its order."""


@functools.lru_cache(maxsize=8)
def _user(uid: int, *variables: str | None) -> str:
    """The user name ``getpass.getuser`` gives for ``uid`` and the values of :data:`USER_VARIABLES`."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{uid}"


def os_caller(purpose: str | None = None, case: str | None = None) -> Caller:
    """The caller of the Python API and the CLI: the OS user."""
    return Caller(os_user(), "os", purpose=purpose, case=case)


def resolve(caller: Caller | None, purpose: str | None = None, case: str | None = None) -> Caller:
    """The caller of one call: ``caller`` (default: the OS user) with the call's purpose and case, checked."""
    return (caller or os_caller()).with_declared(purpose, case).checked()
