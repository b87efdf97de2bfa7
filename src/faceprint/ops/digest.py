"""Counts and digests of table rows, the same whichever database they were read from: a row's
values are written in a canonical form (type-tagged; floats exactly, by their hex form; bytes as
they are) into a SHA-256, so that a copy that changed one bit of one vector, or one float, differs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    """Rows counted and hashed, table by table."""

    counts: dict[str, int] = field(default_factory=dict)
    _hashes: dict[str, Any] = field(default_factory=dict)

    def add(self, table: str, rows: Iterable[tuple]) -> None:
        digest = self._hashes.setdefault(table, hashlib.sha256())
        self.counts.setdefault(table, 0)
        for row in rows:
            digest.update(canonical(row))
            self.counts[table] += 1

    def digests(self) -> dict[str, str]:
        return {table: digest.hexdigest() for table, digest in self._hashes.items()}

    def digest(self) -> str:
        """One SHA-256 over every table's count and digest."""
        total = hashlib.sha256()
        for table, value in sorted(self.digests().items()):
            total.update(f"{table}:{self.counts[table]}:{value};".encode())
        return total.hexdigest()

    def same(self, other: Tally) -> bool:
        return self.counts == other.counts and self.digests() == other.digests()


def canonical(row: tuple) -> bytes:
    """A row's bytes: each value tagged with its type (a bool as the integer SQLite stores), its length
    where it has one."""
    out = bytearray()
    for value in row:
        if value is None:
            out += b"N;"
        elif isinstance(value, int):  # bools too: SQLite keeps them as 0 / 1
            out += b"I%d;" % value
        elif isinstance(value, float):
            out += b"F" + value.hex().encode() + b";"
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            out += b"X%d:" % len(data) + data
        else:
            text = str(value).encode()
            out += b"S%d:" % len(text) + text
    return bytes(out) + b"\n"


def sort_key(row: tuple) -> tuple:
    """Orders rows the same way from both databases (None first; text by its UTF-8 bytes)."""
    return tuple((0, b"") if v is None else (1, v.encode() if isinstance(v, str) else v) for v in row)
