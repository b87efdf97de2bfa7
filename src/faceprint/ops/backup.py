"""``faceprint backup DEST``: a consistent copy of a deployment, taken while it runs.

- Every SQLite database of the home (the store ``faceprint.db``, the audit log, video jobs, stream
  processors, console users, settings, reviews, ...: any file that starts as an SQLite database
  does) through SQLite's online backup API, one read snapshot each (writers go on meanwhile).
- The audit chain's files (``audit/``: its database, journal, head and signing key) together, no
  entry written meanwhile (the journal's lock, held for the copy).
- The home's other files as they are (access keys ``auth/keys.json``,
  the console's session secret, ``account-id``, operator profiles, crops, stored probes, ...):
  faceprint replaces them atomically, so each is copied whole.
- Left out: ``models/`` (pinned files, fetched again and checked by SHA-256), ``indexes/``
  (derived from the store, rebuilt from it), SQLite's ``-wal``/``-shm``/``-journal`` (the backup
  API copies their content), lock files and temporary files.
- A store elsewhere: an SQLite store outside the home (``sqlite:///PATH``) likewise, as
  ``store/faceprint.db``; a PostgreSQL store (and with it every part of the home kept there) with
  ``pg_dump -Fc -Z0`` as ``store.pgdump`` (one snapshot of the database; uncompressed: face vectors
  hardly compress, and compressing cost pg_dump 7 times the time in benchmarks/migrate.py).

``manifest.json`` lists every file with its size and SHA-256; ``restore`` checks them first.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from faceprint.errors import InvalidParameterException
from faceprint.home import private_file, private_folder
from faceprint.models.store import sha256_of
from faceprint.ops import is_postgres

MANIFEST = "manifest.json"
FORMAT = 1
SKIPPED_FOLDERS = ("models", "indexes")
SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".lock", ".tmp")
SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP = "store.pgdump"
EXTERNAL_STORE = "store/faceprint.db"
AUDIT = "audit"


def backup(home: Path, store_url: str | None, dest: Path) -> dict[str, Any]:
    """Back the deployment up into ``dest`` (a new or empty folder); the manifest written."""
    from faceprint import __version__
    from faceprint.backends import STORE_SCHEMES, sqlite_path, url_scheme

    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidParameterException(f"The backup folder {dest} exists and is not empty: name a new one.")
    if not home.is_dir():
        raise InvalidParameterException(f"There is no faceprint home at {home}.")
    private_folder(dest)
    rels = list(home_files(home))
    chain = [rel for rel in rels if Path(rel).parent == Path(AUDIT)]
    files = [_copy(home / rel, dest / "home" / rel, rel) for rel in rels if rel not in chain]
    with _audit_quiet(home / AUDIT / "audit.journal"):  # the chain's database, journal and head as one
        files += [_copy(home / rel, dest / "home" / rel, rel) for rel in chain]
    store: dict[str, Any] = {"Kind": "sqlite", "Path": None}
    if store_url and is_postgres(store_url):
        store = {"Kind": "postgresql"}
        files.append(_pg_dump(store_url, dest / PG_DUMP))
    elif store_url and url_scheme(store_url, STORE_SCHEMES, "store") == "sqlite":
        path = sqlite_path(store_url)
        if not path.is_file():
            raise InvalidParameterException(f"There is no SQLite store at {path}.")
        if not path.resolve().is_relative_to(home.resolve()):  # one in the home is among its files
            store = {"Kind": "sqlite", "Path": str(path)}
            files.append(_copy(path, dest / EXTERNAL_STORE, EXTERNAL_STORE, in_home=False))
    manifest = {"Format": FORMAT, "Faceprint": __version__, "Created": time.time(), "Store": store,
                "Files": files}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2))
    os.chmod(dest / MANIFEST, 0o600)
    return manifest


def home_files(home: Path) -> Iterator[str]:
    """The home's files that a backup holds, relative to it, in order."""
    for folder, subfolders, names in os.walk(home):
        rel_folder = Path(folder).relative_to(home)
        if rel_folder == Path("."):
            subfolders[:] = [s for s in subfolders if s not in SKIPPED_FOLDERS]
        subfolders.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if name.endswith(SKIPPED_SUFFIXES) or ".tmp" in name or not path.is_file() or path.is_symlink():
                continue
            yield str(rel_folder / name)


@contextmanager
def _audit_quiet(journal: Path) -> Iterator[None]:
    """No audit entry written inside (a shared ``flock`` of the journal, whose exclusive lock every
    writer of the log takes: a search waits the few milliseconds the copy takes)."""
    try:
        fd = os.open(journal, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # the lock goes with it


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def _copy(source: Path, target: Path, rel: str, in_home: bool = True) -> dict[str, Any]:
    """One file into the backup: an SQLite database through the backup API, others as they are."""
    private_folder(target.parent)
    kind = "sqlite" if is_sqlite(source) else "file"
    if kind == "sqlite":
        copy_database(source, target)
    else:
        shutil.copyfile(source, private_file(target))
    return {"Path": ("home/" if in_home else "") + rel, "Kind": kind, "Bytes": target.stat().st_size,
            "SHA256": sha256_of(target)}


def copy_database(source: Path, target: Path) -> None:
    """``source`` into ``target`` with SQLite's online backup (one read snapshot of ``source``;
    ``target``'s other connections see the copy once it is done)."""
    private_file(target)
    with closing(sqlite3.connect(source, timeout=30.0)) as src, closing(sqlite3.connect(target, timeout=30.0)) as dst:
        src.backup(dst)


def _pg_dump(url: str, target: Path) -> dict[str, Any]:
    from faceprint.ops.pgtools import run_tool

    private_file(target)
    run_tool("pg_dump", ["--format=custom", "--compress=0", "--no-owner", "--no-privileges", f"--file={target}"], url)
    return {"Path": PG_DUMP, "Kind": "pg_dump", "Bytes": target.stat().st_size, "SHA256": sha256_of(target)}
