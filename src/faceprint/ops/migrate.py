"""``faceprint migrate --from sqlite:///PATH --to postgresql://...``: an embedded deployment moved to
PostgreSQL without embedding a face again.

Moving is a list of *movers*, one per part of the deployment: the face store first
(``faceprint.ops.store_mover``), then each part of the home that has a PostgreSQL twin
(``faceprint.ops.part_movers``), then the face crops and stored probes
(``faceprint.ops.blob_movers``). For each mover:

- the target is empty: everything is copied (each mover in one PostgreSQL transaction: all of that
  part or nothing), then the target is read back and its counts and digest must equal the source's;
- the target holds exactly what the source holds (same counts and digest): left as it is ("already
  moved"; so a migration cut short is finished by running it again);
- the target holds something else: refused (``ResourceInUseException``), nothing written.

The source is only read (its schema is brought to the latest version first, as any open does).
Stop the nodes that write to it first: what they write after a part's snapshot is not moved.
Afterwards the index is brought up to date from the new store (``rebuild_indexes``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from faceprint.backends import STORE_SCHEMES, sqlite_path, url_scheme
from faceprint.errors import FaceprintError, InvalidParameterException
from faceprint.ops import is_postgres
from faceprint.ops.digest import Tally
from faceprint.ops.tables import NothingToMove


class TargetNotEmpty(FaceprintError):
    """The target already holds something other than what the source holds."""

    code = "ResourceInUseException"


class CopyMismatch(FaceprintError):
    """What was read back from the target is not what was copied (counts or digest differ)."""

    code = "InternalServerError"


class Mover(Protocol):
    name: str

    def source_tally(self) -> Tally: ...
    def target_tally(self) -> Tally: ...
    def target_empty(self) -> bool: ...
    def copy(self) -> Tally: ...
    def close(self) -> None: ...


@dataclass
class Moved:
    part: str
    outcome: str
    """``moved``, ``already moved`` (the target held the same), ``nothing to move`` (the home never
    used that part) or ``not moved: ...`` (no PostgreSQL twin for it)."""
    counts: dict[str, int]
    digest: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"Part": self.part, "Outcome": self.outcome, "Counts": self.counts, "Digest": self.digest,
                "Seconds": round(self.seconds, 3)}


def source_store(home: Path, url: str | None) -> Path:
    """The SQLite store to move: ``url`` (``sqlite:///PATH``) or the home's ``faceprint.db``."""
    if not url:
        path = home / "faceprint.db"
    elif url_scheme(url, STORE_SCHEMES, "source store") != "sqlite":
        raise InvalidParameterException("--from must name the embedded store (sqlite:///PATH, or left out for "
                                        "the home's); to copy a PostgreSQL store use faceprint backup / restore.")
    else:
        path = sqlite_path(url)
    if not path.is_file():
        raise InvalidParameterException(f"There is no SQLite store at {path}.")
    return path


def target_url(url: str | None) -> str:
    if not url or not is_postgres(url):
        raise InvalidParameterException("--to must be a PostgreSQL URL (postgresql://...); credentials come from "
                                        "libpq's environment (PGPASSWORD, ~/.pgpass), not the URL.")
    return url


def movers(home: Path, source: Path, target: str, force: bool = False) -> list[Callable[[], Mover]]:
    """The face store's mover first, then the home's parts', then its crops and stored probes (each made
    when its turn comes)."""
    from faceprint.ops.blob_movers import blob_movers
    from faceprint.ops.part_movers import part_movers
    from faceprint.ops.store_mover import StoreMover

    return [lambda: StoreMover(source, target), *part_movers(home, target, force), *blob_movers(home, source, target)]


def migrate(home: Path, source_url: str | None, target: str | None,
            log: Callable[[str], None] = lambda line: None, force: bool = False) -> list[Moved]:
    """Move the deployment in ``home`` (store at ``source_url``) to the PostgreSQL database ``target``.
    Video jobs queued or running refuse the move before anything is written (``InvalidParameterException``),
    unless ``force``: then they move as FAILED (``faceprint.ops.part_movers.VideoMover``)."""
    from faceprint.ops.part_movers import video_in_progress

    source, target = source_store(home, source_url), target_url(target)
    why = None if force else video_in_progress(home)
    if why:
        raise InvalidParameterException(f"video: {why}")
    return [move(make(), log) for make in movers(home, source, target, force)]


def move(mover: Mover, log: Callable[[str], None]) -> Moved:
    start = time.monotonic()
    try:
        if isinstance(mover, NothingToMove):
            if mover.outcome != "nothing to move":
                log(f"{mover.name}: {mover.outcome}")
            return Moved(mover.name, mover.outcome, {}, Tally().digest(), 0.0)
        if mover.target_empty():
            log(f"{mover.name}: copying")
            copied, outcome = mover.copy(), "moved"
            found = mover.target_tally()
            if not found.same(copied):
                raise CopyMismatch(f"{mover.name}: the target does not hold what was copied (read back "
                                   f"{found.counts}, copied {copied.counts}); nothing else was moved.")
        else:
            copied, found, outcome = mover.source_tally(), mover.target_tally(), "already moved"
            if not found.same(copied):
                raise TargetNotEmpty(f"{mover.name}: the target database already holds other data ({found.counts}"
                                     f"; the source has {copied.counts}): migrate into an empty database.")
        log(f"{mover.name}: {outcome} {copied.counts}")
        return Moved(mover.name, outcome, copied.counts, copied.digest(), time.monotonic() - start)
    finally:
        mover.close()


def rebuild_indexes(home: Path, store_url: str, index_url: str | None) -> dict[str, int]:
    """Bring the index (``index_url``; None: the embedded one in ``HOME/indexes``) up to date with the
    PostgreSQL store and save it: the collections' face counts indexed."""
    from faceprint.backends import open_indexes, open_store

    store = open_store(store_url, home)
    counts: dict[str, int] = {}
    try:
        rows, after = [], None
        while page := store.list_collections(after, 1000):
            rows += page
            after = page[-1].collection_id
        by_dim: dict[int, Any] = {}
        for row in rows:
            if row.dim not in by_dim:
                by_dim[row.dim] = open_indexes(index_url, store, home, row.dim)
            counts[row.collection_id] = len(by_dim[row.dim].get(row))
        for indexes in by_dim.values():
            indexes.save_all()
            getattr(indexes, "close", lambda: None)()
    finally:
        getattr(store, "close", lambda: None)()
    return counts
