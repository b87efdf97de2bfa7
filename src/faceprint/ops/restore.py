"""``faceprint restore SRC``: a backup (``faceprint.ops.backup``) put back into a home and its store.

Every file's SHA-256 is checked against the manifest before anything is written. A target that
already holds a deployment (any file in the home outside ``models/``; a PostgreSQL database with
tables) is refused unless ``force``; with ``force`` the backup's files replace the home's, and the
PostgreSQL database's tables (every table of its schema) are dropped before ``pg_restore``.
SQLite databases are written through SQLite's backup API (so a connection still open on one sees the
restored content, never a torn file); the index files are removed (they are rebuilt from the
restored store: one saved after the backup could hold faces the restored store does not).
Stop the nodes before restoring: a node that keeps running keeps what it holds in memory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from faceprint.errors import InvalidParameterException
from faceprint.home import private_file, private_folder
from faceprint.models.store import sha256_of
from faceprint.ops import is_postgres
from faceprint.ops.backup import EXTERNAL_STORE, FORMAT, MANIFEST, PG_DUMP, SKIPPED_FOLDERS, copy_database


class TargetInUse(InvalidParameterException):
    """The home or database restored into already holds a deployment (``--force`` replaces it)."""

    code = "ResourceInUseException"


def restore(source: Path, home: Path, store_url: str | None, force: bool = False) -> dict[str, Any]:
    """Put the backup in ``source`` back into ``home`` and the store ``store_url`` names."""
    manifest = read_manifest(source)
    kind = manifest["Store"]["Kind"]
    if kind == "postgresql" and not is_postgres(store_url):
        raise InvalidParameterException("This backup's store is PostgreSQL: name the database to restore into "
                                        "with --store postgresql://... (or FACEPRINT_STORE).")
    if kind == "sqlite" and is_postgres(store_url):
        raise InvalidParameterException("This backup's store is SQLite: to move it to PostgreSQL, restore it, "
                                        "then run faceprint migrate.")
    if not force and _home_in_use(home):
        raise TargetInUse(f"The home {home} already holds a deployment: restore into an empty one, or add --force "
                          "to replace it.")
    external = _external_store(store_url, manifest) if kind == "sqlite" and manifest["Store"].get("Path") else None
    if not force and external is not None and external.is_file() and external.stat().st_size:
        raise TargetInUse(f"The SQLite store {external} exists: restore into a new path (--store sqlite:///PATH), "
                          "or add --force to replace it.")
    if kind == "postgresql" and store_url:
        _pg_restore(source / PG_DUMP, store_url, force)
    private_folder(home)
    for entry in manifest["Files"]:
        if entry["Path"].startswith("home/"):
            _put(source / entry["Path"], home / entry["Path"][len("home/"):], entry["Kind"])
        elif entry["Path"] == EXTERNAL_STORE and external is not None:
            _put(source / EXTERNAL_STORE, external, "sqlite")
    _drop_index_files(home)
    return {"Restored": len(manifest["Files"]), "Store": kind, "Home": str(home)}


def read_manifest(source: Path) -> dict[str, Any]:
    """The backup's manifest, each file it lists checked (present, same SHA-256)."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise InvalidParameterException(f"{source} is not a faceprint backup ({MANIFEST}: {e}).") from None
    if manifest.get("Format") != FORMAT:
        raise InvalidParameterException(f"{source}: backup format {manifest.get('Format')!r} is not {FORMAT}.")
    try:
        for entry in manifest["Files"]:
            rel = Path(entry["Path"])
            if rel.is_absolute() or ".." in rel.parts or not (rel.parts[0] == "home" or entry["Path"] in (
                    EXTERNAL_STORE, PG_DUMP)):
                raise InvalidParameterException(f"The backup's manifest names a path outside it: {entry['Path']!r}.")
            path = source / rel
            if not path.is_file() or path.is_symlink() or sha256_of(path) != entry["SHA256"]:
                raise InvalidParameterException(f"The backup is damaged: {entry['Path']} is missing or changed "
                                                "(its SHA-256 is not the manifest's); nothing was restored.")
        if manifest["Store"]["Kind"] not in ("sqlite", "postgresql"):
            raise InvalidParameterException(f"{source}: the backup's store kind {manifest['Store']['Kind']!r} is "
                                            "not sqlite or postgresql.")
    except (KeyError, TypeError, IndexError) as e:
        raise InvalidParameterException(f"{source}: the backup's manifest is malformed ({type(e).__name__}: {e}).") \
            from None
    return manifest


def _home_in_use(home: Path) -> bool:
    if not home.is_dir():
        return False
    return any(p.name not in SKIPPED_FOLDERS or not p.is_dir() for p in home.iterdir())


def _put(source: Path, target: Path, kind: str) -> None:
    private_folder(target.parent)
    if kind == "sqlite":
        copy_database(source, target)
    else:
        tmp = target.with_name(f".{target.name}.restore.tmp")
        shutil.copyfile(source, private_file(tmp))
        tmp.replace(target)


def _external_store(store_url: str | None, manifest: dict[str, Any]) -> Path:
    from faceprint.backends import sqlite_path

    return sqlite_path(store_url) if store_url else Path(manifest["Store"]["Path"])


def _drop_index_files(home: Path) -> None:
    folder = home / "indexes"
    if folder.is_dir():
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                path.unlink()


def _pg_restore(dump: Path, url: str, force: bool) -> None:
    import psycopg
    from psycopg import sql

    from faceprint.ops.pgtools import run_tool

    with psycopg.connect(url) as db:
        tables = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        if tables and not force:
            raise TargetInUse(f"The PostgreSQL database already has {len(tables)} tables: restore into an empty "
                              "database, or add --force to drop them first.")
        for table in tables:
            db.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
        for (sequence,) in db.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
                                      ).fetchall():
            db.execute(sql.SQL("DROP SEQUENCE IF EXISTS {} CASCADE").format(sql.Identifier(sequence)))
    run_tool("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                            f"--dbname={_dbname(url)}", str(dump)], url)


def _dbname(url: str) -> str:
    """The database's name alone (the rest of the URL reaches pg_restore through libpq's environment)."""
    from faceprint.ops.pgtools import libpq_env

    return libpq_env(url).get("PGDATABASE") or libpq_env(url).get("PGUSER") or "postgres"
