"""Versioned schema migrations of the face stores (SQLite: ``sqlite.py``; PostgreSQL: ``postgres.py``).

Each store's database records the migrations applied to it in ``schema_migrations`` (version,
description, when); opening a store applies the ones it lacks, in order, each in its own
transaction, so that a crash between two leaves the database at the last one finished. Version 1
is the schema faceprint had before migrations were versioned: a SQLite home written then (it has a
``faces`` table but no ``schema_migrations``) is brought to it and stamped version 1. A database
stamped with a version newer than this faceprint knows is refused (``SchemaTooNew``) rather than
written by code that does not know its schema.

Add a migration by appending a :class:`Migration` with the next version to the list of each
store it concerns; never change one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from faceprint.errors import FaceprintError

TABLE = "schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Any, Callable[[], float]], None]
    """Called with the open connection, inside the migration's transaction, and the store's clock."""


class SchemaTooNew(FaceprintError):
    """The database was migrated by a newer faceprint than this one."""


def latest(migrations: Sequence[Migration]) -> int:
    return migrations[-1].version if migrations else 0


def check_sequence(migrations: Sequence[Migration]) -> None:
    """Versions are 1, 2, 3, ... with no gap (a programming error otherwise)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..n in order: {versions}")


def pending(migrations: Sequence[Migration], current: int, what: str) -> list[Migration]:
    """The migrations after ``current``; SchemaTooNew if ``current`` is past the last one known."""
    check_sequence(migrations)
    if current > latest(migrations):
        raise SchemaTooNew(f"The {what} database has schema version {current}; this faceprint knows versions up "
                           f"to {latest(migrations)}: upgrade faceprint to use it.")
    return [m for m in migrations if m.version > current]
