"""What moving and backing up a deployment cost, against the PostgreSQL store's own bulk write in
the same run.

Run: python benchmarks/migrate.py [--faces 100000] [--dim 256]

An embedded store (SQLite, ``synchronous=FULL``) is filled with ``--faces`` random unit vectors in one
collection; a throw-away durable PostgreSQL server is started from Debian's packages (as
``benchmarks/store_backends.py`` does: ``fsync``, ``synchronous_commit``, ``full_page_writes`` on). Then:

- baseline: the same faces written into one PostgreSQL database through ``PostgresStore.add_faces``,
  1,000 a call (the fastest way the store itself takes faces);
- ``faceprint migrate``'s store mover into another database: the copy (one transaction, COPY), the
  read-back check (counts and SHA-256 over every row), and the source's tally (a rerun's check);
- ``faceprint backup`` of the embedded home (SQLite's online backup) and of the PostgreSQL store
  (``pg_dump -Fc``, uncompressed), and ``restore`` of the latter into an empty database (``pg_restore``);
every figure in faces a second and as a ratio of the baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from faceprint.store import CollectionRow  # noqa: E402
from store_backends import faces  # noqa: E402

BULK = 1000


def fill(store, total: int, dim: int) -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    store.create_collection(CollectionRow("bench", "arn", "bench", dim, 1.0))
    for start in range(0, total, BULK):
        store.add_faces(faces(start, min(BULK, total - start), dim, rng))


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def run(server, home: Path, total: int, dim: int) -> dict[str, float]:
    from faceprint.ops.backup import backup
    from faceprint.ops.restore import restore
    from faceprint.ops.store_mover import StoreMover
    from faceprint.store.postgres import PostgresStore
    from faceprint.store.sqlite import SQLiteStore

    fill(SQLiteStore(home / "faceprint.db"), total, dim)
    seconds: dict[str, float] = {}
    baseline = PostgresStore(server.database())
    seconds["baseline: PostgresStore.add_faces, 1,000 a call"] = timed(lambda: fill(baseline, total, dim))
    baseline.close()
    url = server.database()
    mover = StoreMover(home / "faceprint.db", url)
    seconds["migrate: copy (one transaction)"] = timed(mover.copy)
    seconds["migrate: read-back check (counts, SHA-256)"] = timed(mover.target_tally)
    seconds["migrate: the source's tally"] = timed(mover.source_tally)
    backups = home.parent / "backups"
    seconds["backup: embedded home (SQLite online backup)"] = timed(lambda: backup(home, None, backups / "sqlite"))
    seconds["backup: PostgreSQL store (pg_dump -Fc -Z0)"] = timed(lambda: backup(home, url, backups / "pg"))
    target = server.database()
    seconds["restore: PostgreSQL store (pg_restore) and home"] = timed(
        lambda: restore(backups / "pg", home.parent / "restored", target))
    return seconds


def main() -> None:
    from pg import DURABLE, temporary_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    args = parser.parse_args()
    with temporary_server(DURABLE) as server, tempfile.TemporaryDirectory(prefix="fp-bench-") as work:
        (Path(work) / "home").mkdir()
        seconds = run(server, Path(work) / "home", args.faces, args.dim)
        version = server.bin.parent.name
    base = next(iter(seconds.values()))
    print(f"{args.faces:,} faces of {args.dim} dimensions; PostgreSQL {version}, unix socket, fsync on")
    print(f"{'':52}{'seconds':>9}{'faces/s':>11}{'x baseline':>12}")
    for name, took in seconds.items():
        print(f"{name:52}{took:9.2f}{args.faces / took:11,.0f}{base / took:12.2f}")


if __name__ == "__main__":
    main()
