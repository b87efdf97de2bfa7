"""``faceprint doctor``: a deployment checked, one line a finding: the store (reachable, schema
version against this faceprint's: migrations pending, or a newer faceprint's), each part of the
home kept in PostgreSQL (its version), the home's SQLite databases (``quick_check``), the index
(reachable; per collection, whether its saved state matches the store's), the profile's model
files (present, SHA-256), free disk space and the home's file modes.

Each finding is ``ok``, ``warn`` (works, but look: e.g. an index file missing or behind, rebuilt
from the store when opened) or ``fail`` (broken: unreachable, newer schema, a model file whose
digest is wrong, files other users can read). Exit status: 0 all ok, 2 warnings only, 1 a failure.
"""

from __future__ import annotations

import importlib
import shutil
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from faceprint.ops import is_postgres
from faceprint.ops.doctor_index import check_index
from faceprint.ops.findings import CONNECT_TIMEOUT, FAIL, OK, WARN, Deployment, Finding
from faceprint.store.migrations import Migration

DISK_FAIL_BYTES = 256 * 2**20
DISK_WARN_BYTES = 2 * 2**30
DISK_WARN_SHARE = 0.05

PARTS = {  # the home's parts kept in PostgreSQL: where their migrations are
    "account": ("faceprint.store.pgshared", "ACCOUNT"),
    "keys": ("faceprint.server.pgkeys", "MIGRATIONS"),
    "console": ("faceprint.console.pgusers", "MIGRATIONS"),
    "settings": ("faceprint.audit.pgparts", "SETTINGS_MIGRATIONS"),
    "review": ("faceprint.audit.pgparts", "REVIEW_MIGRATIONS"),
    "audit": ("faceprint.audit.pglog", "migrations"),
    "video": ("faceprint.video.store_pg", "MIGRATIONS"),
    "streams": ("faceprint.streams.store_pg", "MIGRATIONS"),
    "crops": ("faceprint.store.pgblobs", "CROPS_MIGRATIONS"),
    "probes": ("faceprint.store.pgblobs", "PROBES_MIGRATIONS"),
}


def doctor(d: Deployment) -> list[Finding]:
    from faceprint import __version__

    found = [Finding("faceprint", OK, f"version {__version__}, home {d.home}, profile {d.profile}")]
    store_ok = _run(found, "store", lambda: check_store(d))
    if is_postgres(d.store_url) and store_ok:
        _run(found, "parts", lambda: check_parts(d.store_url or ""))
    _run(found, "databases", lambda: check_databases(d.home))
    if store_ok and all(f.status == OK for f in found if f.check.startswith("store")):
        _run(found, "index", lambda: check_index(d))  # opening a store migrates it: only a current one
    elif store_ok:
        found.append(Finding("index", WARN, "not checked: the store is missing or its schema is not current "
                                            "(opening it would make or migrate it)"))
    _run(found, "models", lambda: check_models(d))
    _run(found, "disk", lambda: check_disk(d.home))
    _run(found, "modes", lambda: check_modes(d.home))
    return found


def exit_status(found: list[Finding]) -> int:
    statuses = {f.status for f in found}
    return 1 if FAIL in statuses else 2 if WARN in statuses else 0


def table(found: list[Finding]) -> str:
    width = max([len(f.check) for f in found] + [5])
    lines = [f"{'CHECK':<{width}}  STATUS  DETAIL"]
    lines += [f"{f.check:<{width}}  {f.status.upper():<6}  {f.detail}" for f in found]
    return "\n".join(lines)


def _run(found: list[Finding], name: str, check: Callable[[], Iterator[Finding]]) -> bool:
    """Add the check's findings (an unexpected error is a failure of that check); True if none failed."""
    try:
        new = list(check())
    except Exception as e:  # noqa: BLE001 - doctor reports whatever breaks, and goes on
        new = [Finding(name, FAIL, f"{type(e).__name__}: {e}")]
    found += new
    return all(f.status != FAIL for f in new)


# -- the store and the parts ---------------------------------------------------------------------------
def check_store(d: Deployment) -> Iterator[Finding]:
    from faceprint.store.migrations import latest

    if is_postgres(d.store_url):
        import psycopg

        from faceprint.store.migrations import postgres

        try:
            with psycopg.connect(d.store_url or "", connect_timeout=CONNECT_TIMEOUT) as db:
                current = postgres.version(db)
                server = db.info.parameter_status("server_version")
        except psycopg.Error as e:
            yield Finding("store", FAIL, f"cannot connect to the PostgreSQL store: {str(e).strip()}")
            return
        yield Finding("store", OK, f"PostgreSQL {server}, reachable")
        yield _version("store schema", current, latest(postgres.MIGRATIONS))
        return
    from faceprint.backends import sqlite_path
    from faceprint.store.migrations import sqlite

    path = sqlite_path(d.store_url) if d.store_url else d.home / "faceprint.db"
    if not path.is_file():
        yield Finding("store", WARN, f"no SQLite store at {path} yet (made on first use)")
        return
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        current = sqlite.version(db)
    yield Finding("store", OK, f"SQLite {path}")
    yield _version("store schema", current, latest(sqlite.MIGRATIONS))


def _version(name: str, current: int, known: int) -> Finding:
    if current > known:
        return Finding(name, FAIL, f"version {current} is newer than this faceprint knows ({known}): upgrade faceprint")
    if current < known:
        return Finding(name, WARN, f"version {current}, migrations pending to {known} (applied when a node opens it)")
    return Finding(name, OK, f"version {current} (current)")


def check_parts(url: str) -> Iterator[Finding]:
    import psycopg

    from faceprint.store.migrations import latest

    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as db:
        if db.execute("SELECT to_regclass('faceprint_parts')").fetchone()[0] is None:
            versions: dict[str, int] = {}
        else:
            versions = dict(db.execute("SELECT part, MAX(version) FROM faceprint_parts GROUP BY part").fetchall())
    for part in sorted(set(PARTS) | set(versions)):
        known = _part_migrations(part)
        if part not in versions:
            yield Finding(f"part {part}", OK, "not made yet (made by the first node that uses it)")
        elif known is None and part in PARTS:  # its module does not publish its migrations
            yield Finding(f"part {part}", OK, f"version {versions[part]}")
        elif known is None:
            yield Finding(f"part {part}", WARN, f"version {versions[part]}; a part this faceprint does not know")
        else:
            yield _version(f"part {part}", int(versions[part]), latest(known))


def _part_migrations(part: str) -> Any:
    if part not in PARTS:
        return None
    module, name = PARTS[part]
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    found = found() if callable(found) else found
    return [found] if isinstance(found, Migration) else found


def check_databases(home: Path) -> Iterator[Finding]:
    """Every SQLite database of the home: ``PRAGMA quick_check`` (read only)."""
    from faceprint.ops.backup import home_files, is_sqlite

    for rel in home_files(home) if home.is_dir() else ():
        path = home / rel
        if not is_sqlite(path):
            continue
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
        yield Finding(f"db {rel}", OK if result == "ok" else FAIL, "quick_check ok" if result == "ok" else result)


# -- models, disk, modes ---------------------------------------------------------------------------------
def check_models(d: Deployment) -> Iterator[Finding]:
    from faceprint.models.profiles import get_profile
    from faceprint.models.store import sha256_of

    for spec in get_profile(d.profile, d.home).model_files():
        path = d.models_dir / spec.name
        if not path.is_file():
            yield Finding(f"model {spec.name}", WARN, f"missing in {d.models_dir} (fetched on first use; "
                                                      "`faceprint models pull` fetches it now)")
            continue
        digest = sha256_of(path)
        good = digest == spec.sha256
        yield Finding(f"model {spec.name}", OK if good else FAIL,
                      f"sha256 {digest}" + ("" if good else f", pinned {spec.sha256}: replace the file"))


def check_disk(home: Path) -> Iterator[Finding]:
    where = home if home.exists() else next(p for p in home.parents if p.exists())
    usage = shutil.disk_usage(where)
    detail = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB"
    if usage.free < DISK_FAIL_BYTES:
        yield Finding("disk", FAIL, detail + ": writes will fail")
    elif usage.free < DISK_WARN_BYTES or usage.free < DISK_WARN_SHARE * usage.total:
        yield Finding("disk", WARN, detail)
    else:
        yield Finding("disk", OK, detail)


def check_modes(home: Path) -> Iterator[Finding]:
    """The home holds face vectors and keys: nothing in it (but the model files) open to other users."""
    from faceprint.ops.backup import SKIPPED_FOLDERS

    if not home.is_dir():
        yield Finding("modes", WARN, f"no home at {home}")
        return
    open_ = [(home, stat.S_IMODE(home.stat().st_mode))]
    for path in home.rglob("*"):
        if path.relative_to(home).parts[0] == SKIPPED_FOLDERS[0] or path.is_symlink():
            continue
        try:
            open_.append((path, stat.S_IMODE(path.lstat().st_mode)))
        except FileNotFoundError:  # gone since listed (an SQLite -shm/-wal whose last connection closed)
            continue
    open_ = [(path, mode) for path, mode in open_ if mode & 0o077]
    if open_:
        shown = ", ".join(f"{p} ({oct(mode)})" for p, mode in open_[:5])
        yield Finding("modes", FAIL, f"{len(open_)} open to other users: {shown} (chmod go-rwx)")
    else:
        yield Finding("modes", OK, "home private (0700 folders, 0600 files)")
