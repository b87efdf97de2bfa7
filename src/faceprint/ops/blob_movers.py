"""The movers of the home's files that have a PostgreSQL twin (see ``faceprint.ops.migrate``): face
crops (``HOME/crops`` into ``crops_faces``) and stored probes (``HOME/audit/probes`` into
``probes_stored``), each file's bytes as they are, in one transaction a part, checked by counts and
digest like every other part.

A crop's folder is named by its collection id's SHA-256: the ids come from the source store's
collections, and a folder that matches none (a collection gone without its crops) is not moved.
A crop's file time becomes its ``created``, a probe's its time of last use (retention counts from it).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg

from faceprint.audit.probe_store import EXTENSIONS, SHA256
from faceprint.crops import FACE_ID
from faceprint.ops.digest import Tally
from faceprint.ops.tables import NothingToMove

Row = tuple[tuple[Any, ...], Path]
"""The columns a file is tallied by (its bytes last, read when needed) and the file."""


class FilesMover:
    """Files of the home into one twin's table: ``files()`` lists them (sorted as the table's
    ``ORDER BY`` sorts), ``columns`` names the table's columns, the bytes' column last but one and
    the file's time last."""

    name = ""
    table = ""
    columns: tuple[str, ...] = ()

    def __init__(self, url: str, part: str, migrations: Any) -> None:
        from faceprint.store.pgshared import PgPart

        self.url = url
        PgPart(url, part, migrations, pool_size=1).close()  # the twin's tables, by its own migrations

    def files(self) -> list[Row]:
        raise NotImplementedError

    def _tally(self, rows: Iterator[tuple]) -> Tally:
        found = Tally()
        found.add(self.table, rows)
        return found

    def source_tally(self) -> Tally:
        return self._tally(key + (path.read_bytes(),) for key, path in self.files())

    def target_tally(self) -> Tally:
        names = ", ".join(self.columns[:-1])
        with psycopg.connect(self.url) as db, db.cursor(name=f"tally_{self.table}") as cursor:
            cursor.itersize = 64  # a few rows of bytes in memory at a time
            cursor.execute(f"SELECT {names} FROM {self.table} ORDER BY {', '.join(self.columns[:-2])}")
            return self._tally(tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cursor)

    def target_empty(self) -> bool:
        with psycopg.connect(self.url) as db:
            return not db.execute(f"SELECT EXISTS (SELECT 1 FROM {self.table})").fetchone()[0]

    def copy(self) -> Tally:
        read = Tally()
        read.counts[self.table] = 0
        with psycopg.connect(self.url) as db, db.cursor() as cursor, cursor.copy(
                f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN") as out:
            for key, path in self.files():
                data = path.read_bytes()
                out.write_row((*key, data, path.stat().st_mtime))
                read.add(self.table, [(*key, data)])
        return read

    def close(self) -> None:
        pass


def _by_bytes(rows: list[Row]) -> list[Row]:
    """Sorted as PostgreSQL sorts ``COLLATE "C"`` text: by the UTF-8 bytes."""
    return sorted(rows, key=lambda r: tuple(str(v).encode() for v in r[0]))


class CropsMover(FilesMover):
    name, table = "crops", "crops_faces"
    columns = ("collection_id", "face_id", "jpeg", "created")

    def __init__(self, home: Path, source: Path, url: str) -> None:
        from faceprint.store.pgblobs import CROPS_MIGRATIONS

        self.folder = home / "crops"
        with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as db:
            ids = [r[0] for r in db.execute("SELECT collection_id FROM collections")]
        self.collections = {hashlib.sha256(cid.encode()).hexdigest(): cid for cid in ids}
        super().__init__(url, "crops", CROPS_MIGRATIONS)

    def files(self) -> list[Row]:
        rows = []
        for folder in self.folder.iterdir():
            cid = self.collections.get(folder.name)
            if cid is not None and folder.is_dir():
                rows += [((cid, p.stem), p) for p in folder.glob("*.jpg") if FACE_ID.fullmatch(p.stem)]
        return _by_bytes(rows)


class ProbesMover(FilesMover):
    name, table = "probes", "probes_stored"
    columns = ("sha256", "ext", "data", "used")

    def __init__(self, home: Path, url: str) -> None:
        from faceprint.store.pgblobs import PROBES_MIGRATIONS

        self.folder = home / "audit" / "probes"
        super().__init__(url, "probes", PROBES_MIGRATIONS)

    def files(self) -> list[Row]:
        rows = []
        for path in self.folder.iterdir():
            sha, _, ext = path.name.partition(".")
            if SHA256.fullmatch(sha) and ext in EXTENSIONS and path.is_file():
                rows.append(((sha, ext), path))
        return _by_bytes(rows)


def blob_movers(home: Path, source: Path, target: str) -> list[Callable[[], Any]]:
    """The crops' and the stored probes' movers (each made when its turn comes)."""
    def crops() -> Any:
        return CropsMover(home, source, target) if (home / "crops").is_dir() else NothingToMove("crops")

    def probes() -> Any:
        return ProbesMover(home, target) if (home / "audit" / "probes").is_dir() else NothingToMove("probes")
    return [crops, probes]
