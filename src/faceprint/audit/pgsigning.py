"""The online key of an audit log kept in PostgreSQL: one key for every node, stored in the
database (``audit_keys``), so that a head MAC'd or signed by one node verifies on every other.

It is made by the first node that needs it (``INSERT ... ON CONFLICT DO NOTHING``: nodes that
race all end up with the one that was stored first) and read once per process. Like the file
``HOME/audit/online-ed25519.pem`` of the embedded log, it sits beside the chain: whoever can
write the database's audit tables and read this one can sign what they like, and only the
operator's offline seals (``faceprint audit seal``), kept off the machines, show that.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from faceprint.audit.signing import OnlineSigner, private_pem, public_hex
from faceprint.errors import AuditUnavailable

UNREADABLE = "The audit record could not be read."

ONLINE = "online"
"""The key's name in ``audit_keys``."""

READ = "SELECT pem FROM audit_keys WHERE name = %s"
MAKE = "INSERT INTO audit_keys (name, pem, created) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING"


def parse_pem(pem: str | bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key a PEM text holds (ValueError for anything else)."""
    data = pem.encode("ascii") if isinstance(pem, str) else bytes(pem)
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the audit log's online key is not an Ed25519 private key")
    return key


class PgSigner(OnlineSigner):
    """:class:`OnlineSigner` whose key lives in PostgreSQL. ``part`` gives the log's
    :class:`~faceprint.store.pgshared.PgPart` (opened on first use); ``clock`` dates a new key."""

    def __init__(self, part: Callable[[], Any], clock: Callable[[], float]) -> None:
        super().__init__(Path("audit_keys"))  # no file: the path only names where the key is
        self._part_of = part
        self._clock = clock

    @property
    def key(self) -> Ed25519PrivateKey:
        """The shared key, made and stored now if there is none (AuditUnavailable when it cannot be)."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._load(make=True)
        return self._key

    def existing_public(self) -> str | None:
        """The public key (hex) if the key exists, without making one."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._load(make=False)
        return None if self._key is None else public_hex(self._key.public_key())

    def _load(self, make: bool) -> Ed25519PrivateKey | None:
        import psycopg

        try:
            part = self._part_of()
            found = part.one(READ, (ONLINE,))
            if found is None and make:
                part.execute(MAKE, (ONLINE, private_pem(Ed25519PrivateKey.generate()).decode("ascii"),
                                    float(self._clock())))
                found = part.one(READ, (ONLINE,))
            return None if found is None else parse_pem(found[0])
        except (psycopg.Error, ValueError) as exc:
            raise AuditUnavailable(UNREADABLE) from exc
