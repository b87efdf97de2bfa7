"""Retention of the audit log: entries are kept at least ``AuditSettings.retention_days`` (six
months by default), then may be pruned.

:func:`prune` removes the oldest entries (a run from the start of the log, up to the first entry
that is not old enough) after appending a ``Prune`` entry that names the range removed and the
hash of its last entry, signed with the online key: the chain goes on from that hash, and
``faceprint.audit.verify`` accepts a log that starts where a signed marker says it was cut.
"""

from __future__ import annotations

from typing import Any

from faceprint.audit.caller import Caller, os_caller
from faceprint.audit.config import DEFAULT_RETENTION_DAYS
from faceprint.audit.log import AuditLog, Entry, iso
from faceprint.audit.signing import prune_message
from faceprint.errors import InvalidParameterException

DAY = 86400.0


def prune(log: AuditLog, older_than_days: float, now: float | None = None, *,
          minimum_days: float = DEFAULT_RETENTION_DAYS, caller: Caller | None = None,
          details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Remove the entries that started more than ``older_than_days`` before ``now`` (refused under
    ``minimum_days``, the configured retention); returns what was removed and the marker's seq.
    ``details`` go into the marker beside the range (``faceprint.service`` says there whether the
    log verified)."""
    if not isinstance(older_than_days, (int, float)) or older_than_days != older_than_days:
        raise InvalidParameterException("The age to prune from must be a number of days.")
    if older_than_days < minimum_days:
        raise InvalidParameterException(f"Audit entries are kept at least {minimum_days:g} days; "
                                        f"{older_than_days:g} is less.")
    now = log.clock() if now is None else now
    cutoff = now - older_than_days * DAY
    first, last = _range(log, cutoff)
    if last is None or first is None or last < first:
        return {"Pruned": 0, "Cutoff": iso(cutoff)}
    cut = log.get(last)
    if cut is None:  # pruned meanwhile by another process
        return {"Pruned": 0, "Cutoff": iso(cutoff)}
    details = {**(details or {}), "FirstSeq": first, "LastSeq": last, "LastHash": cut.hash,
               "Count": log.count_through(last), "OlderThanDays": older_than_days, "Cutoff": iso(cutoff),
               "Signature": log.signer.sign(prune_message(first, last, cut.hash))}
    started = log.clock()
    marker = log.append(Entry("Prune", caller or os_caller(), started, log.clock(), details=details))
    log.delete_through(last)
    return {"Pruned": details["Count"], "FirstSeq": first, "LastSeq": last, "Cutoff": iso(cutoff),
            "MarkerSeq": marker.seq}


def _range(log: AuditLog, cutoff: float) -> tuple[int | None, int | None]:
    """The first seq and the last seq to prune: everything before the first entry started at or after ``cutoff``."""
    first = log.first_seq()
    if first is None:
        return None, None
    keep = log.first_started_since(cutoff)
    last = log.head()[0] if keep is None else log.last_before(keep)
    return first, last
