"""Console user changes as audit entries (``ConsoleUserChanged``): who added, deleted, unlocked or
changed whom. Passwords never appear, not even as digests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from faceprint.audit.caller import Caller, os_caller

OPERATION = "ConsoleUserChanged"


def record_user_change(home: Path, change: str, name: str, details: dict[str, Any] | None = None,
                       caller: Caller | None = None, log: Any = None) -> int | None:
    """Append the entry to ``log`` (default: the home's audit log); its sequence number.
    Raises ``AuditUnavailable`` when it cannot be written."""
    from faceprint.audit.backend import open_audit_log
    from faceprint.audit.log import Entry

    now = time.time()
    log = log if log is not None else open_audit_log(Path(home))  # the store's where FACEPRINT_STORE names one
    record = log.append(Entry(operation=OPERATION, caller=caller or os_caller(), started=now, ended=now,
                              details={"ConsoleUser": name, "Change": change, **(details or {})}))
    return record.seq
