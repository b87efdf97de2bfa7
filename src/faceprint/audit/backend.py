"""Which audit log a home has: the embedded one (``HOME/audit/audit.db``), or, where the store is
PostgreSQL, the one in that database that every node shares (``faceprint.audit.pglog``); and
moving a home's embedded log into PostgreSQL with its hashes and signed heads intact."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceprint.audit.log import AuditLog
    from faceprint.audit.pglog import PgAuditLog


def open_audit_log(home: Path, store_url: str | None = None, *, clock: Callable[[], float] = time.time,
                   durable: bool = True) -> AuditLog | PgAuditLog:
    """The audit log of ``home`` with the store ``store_url`` (None: ``FACEPRINT_STORE``, as
    ``Faceprint`` reads it): PostgreSQL's when that names PostgreSQL, else ``HOME/audit/audit.db``.
    Nothing is opened until first used."""
    from faceprint.backends import STORE_ENV
    from faceprint.store.pgshared import is_postgres

    url = store_url if store_url is not None else os.environ.get(STORE_ENV) or None
    folder = Path(home) / "audit"
    if url is not None and is_postgres(url):
        from faceprint.audit.pglog import PgAuditLog

        return PgAuditLog(url, folder, clock, durable=durable)
    from faceprint.audit.log import AuditLog

    return AuditLog(folder, clock, durable=durable)


def copy_log(source: AuditLog, target: PgAuditLog) -> dict[str, Any]:
    """Copy the embedded log ``source`` (entries with their bodies and hashes as stored, signed
    heads, and its online key, which signed them) into ``target``, an empty PostgreSQL log, in one
    transaction, so that ``faceprint audit verify`` finds the same chain there. Refuses
    (``InvalidParameterException``) a target that holds entries, heads or another online key.
    The filter columns are taken from the entries' bodies, as appends write them. The counts copied."""
    from faceprint.audit.columns import of_body
    from faceprint.audit.pglog import CHAIN_LOCK, PUT_HEAD, _cells, _insert
    from faceprint.audit.pgsigning import MAKE, ONLINE, READ
    from faceprint.audit.records import as_text
    from faceprint.errors import InvalidParameterException

    pem = source.signer.path.read_text("ascii") if source.signer.existing_public() else None
    with source.snapshot(), target._part().tx() as db:  # the source as of one moment  # noqa: SLF001
        heads = source.signed_heads()
        db.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
        stored = db.execute(READ, (ONLINE,)).fetchone()
        held = db.execute("SELECT (SELECT count(*) FROM audit_entries) + (SELECT count(*) FROM audit_heads)")
        if held.fetchone()[0] or (stored is not None and stored[0] != pem):
            raise InvalidParameterException("The PostgreSQL audit log is not empty: it is not overwritten.")
        if pem is not None and stored is None:
            db.execute(MAKE, (ONLINE, pem, float(source.clock())))
        count = 0
        with db.cursor() as cursor:
            page: list[tuple] = []
            for seq, body, prev_hash, hash_, *_ in source.rows():
                body = as_text(body)
                page.append((seq, body, as_text(prev_hash), as_text(hash_), *_cells(of_body(body))))
                if len(page) >= 1000:
                    cursor.executemany(_insert(1), page)
                    count, page = count + len(page), []
            cursor.executemany(_insert(1), page)
            count += len(page)
            cursor.executemany(PUT_HEAD, [(h.seq, h.hash, h.time, h.signature) for h in heads])
    target.signer = type(target.signer)(target._part, target.clock)  # noqa: SLF001 - read the key copied
    return {"Entries": count, "SignedHeads": len(heads), "OnlineKey": pem is not None}
