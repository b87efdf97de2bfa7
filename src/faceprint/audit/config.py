"""The accountability settings of one ``Faceprint`` (``Faceprint(audit=AuditSettings(...))``)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RETENTION_DAYS = 183
"""Audit entries are kept at least this long (six months, the EU AI Act's minimum, Art. 19(1)/26(6))."""
DEFAULT_QUALITY_FLOOR = 90.0
"""A probe whose measured rank-1 at its quality is under this (percent) is flagged low quality."""


@dataclass(frozen=True)
class AuditSettings:
    """``enabled``: record every identification (off only for measurements: a search then says
    nothing of who ran it). ``store_probes``: keep each probe image (under ``HOME/audit/probes``)
    beside its digest. ``retention_days``: how long entries are kept at least before
    ``faceprint audit prune`` may remove them (``probe_retention_days`` for stored probes,
    None: as long as the entries). ``quality_floor``: the measured rank-1 (percent) under which a
    probe is low quality. ``two_person_default``: the two-person rule of new collections (the
    server turns it on). ``durable``: see below."""

    enabled: bool = True
    store_probes: bool = False
    retention_days: int = DEFAULT_RETENTION_DAYS
    probe_retention_days: int | None = None
    quality_floor: float = DEFAULT_QUALITY_FLOOR
    two_person_default: bool = False
    durable: bool = False
    """Flush every entry to disk before the result is returned (SQLite ``synchronous=FULL``). Off (the
    default, ``NORMAL`` in WAL mode): an entry is committed before the result is returned and survives a
    crash of the process; a power cut may lose the last entries, never break the chain."""
