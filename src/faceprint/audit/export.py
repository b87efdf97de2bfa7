"""Export of the audit log: JSON lines (one ``Record.to_json()`` a line, everything) or CSV (one
row an entry; candidates, probe quality and details as JSON in their cells).

CSV cells that a spreadsheet would read as a formula (text whose first character, after any
spaces, is ``=``, ``+``, ``-``, ``@`` or their full-width forms, or that starts with a tab, a
carriage return or a line feed: actors, purposes and case references are what callers typed)
get a leading ``'``; JSON lines are exact.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, TextIO

from faceprint.audit.log import AuditFilter, AuditLog, Record
from faceprint.errors import InvalidParameterException

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("Seq", "Started", "Ended", "Operation", "Actor", "ActorKind", "KeyId", "Purpose", "Case",
               "CollectionId", "CollectionSize", "Threshold", "FalseMatchRate", "ProbeSha256", "LowQuality",
               "CandidateCount", "Candidates", "ProbeQuality", "Details", "PrevHash", "Hash")
PAGE = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\t", "\r", "\n")
SPACES = " \u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
"""Spaces a spreadsheet may skip before it reads a formula."""


def matching(log: AuditLog, filters: AuditFilter | None = None) -> Iterator[Record]:
    """Every record that matches ``filters``, in seq order, a page at a time."""
    after = 0
    while True:
        page = log.query(filters or AuditFilter(), after=after, limit=PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].seq


def export(log: AuditLog, out: TextIO, fmt: str = "jsonl", filters: AuditFilter | None = None) -> int:
    """Write the matching records to ``out`` as ``fmt`` (``jsonl`` or ``csv``); returns how many."""
    if fmt not in FORMATS:
        raise InvalidParameterException(f"The export format must be one of {', '.join(FORMATS)}.")
    count = 0
    if fmt == "jsonl":
        for record in matching(log, filters):
            out.write(json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
        return count
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for record in matching(log, filters):
        writer.writerow(csv_row(record))
        count += 1
    return count


def csv_row(record: Record) -> list[Any]:
    """One record as the CSV columns."""
    data = record.to_json()
    data["CandidateCount"] = len(record.entry.candidates)
    for name in ("Candidates", "ProbeQuality", "Details"):
        data[name] = "" if data[name] in (None, [], {}) else json.dumps(data[name], ensure_ascii=False,
                                                                         separators=(",", ":"), sort_keys=True)
    return [cell(data[name]) for name in CSV_COLUMNS]


def cell(value: Any) -> Any:
    """A value for a CSV cell: None empty, text that looks like a formula quoted with ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value.lstrip(SPACES).startswith(FORMULA_STARTS):
        return "'" + value
    return value
