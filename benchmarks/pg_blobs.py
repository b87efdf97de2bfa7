"""Face crops in PostgreSQL (``faceprint.store.pgblobs``) against the home's files, in the same run.

Run: python benchmarks/pg_blobs.py [--crops 20000] [--size 6000]

A throw-away PostgreSQL server is started as the tests start theirs (``tests/pg.py``, over a unix
socket) but durable (``fsync``, ``synchronous_commit`` and ``full_page_writes`` on); the file store
is a temporary folder. Per store: ``save`` of one crop (p50 / p95 over 300 calls), ``get`` (300),
``delete`` of one crop (200; PostgreSQL without the rewrite), then, for PostgreSQL, the table filled
to ``--crops`` crops of ``--size`` random bytes (a 160-pixel JPEG face crop is 5-8 kB) and the
rewrite that erases deleted crops' bytes (``VACUUM FULL``): of the one partition a delete's rewrite
locks, and of all 16 (``compact()``), with its time per GB of crops. Prints the machine's load
average before and after (the figures are the machine's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from faceprint.crops import CropStore  # noqa: E402


def timed(calls: int, one: Callable[[int], Any]) -> tuple[float, float]:
    """p50 and p95 of ``one(i)`` over ``calls`` calls, in milliseconds."""
    took = []
    for i in range(calls):
        start = time.perf_counter()
        one(i)
        took.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(took, n=20)
    return statistics.median(took), cuts[18]


def per_call(store: Any, size: int) -> dict[str, tuple[float, float]]:
    ids = [str(uuid.uuid4()) for _ in range(300)]
    data = [os.urandom(size) for _ in range(300)]
    return {"save": timed(300, lambda i: store.save("bench", ids[i], data[i])),
            "get": timed(300, lambda i: store.get("bench", ids[i])),
            "delete": timed(200, lambda i: store.delete("bench", [ids[i]]))}


def rewrite(store: Any, total: int, size: int) -> tuple[float, float, float]:
    """Fill to ``total`` crops, delete one, rewrite its partition, then every partition: (seconds for
    the one, seconds for all, GB of crops)."""
    from faceprint.store.pgblobs import CROPS_TABLE

    with store.blobs.part.tx() as db, db.cursor() as cursor, cursor.copy(
            f"COPY {CROPS_TABLE} (collection_id, face_id, jpeg, created) FROM STDIN") as out:
        for _ in range(total):
            out.write_row(("fill", str(uuid.uuid4()), os.urandom(size), time.time()))
    victim = next(iter(store.face_ids("fill")))
    (partition,) = store.blobs.rows(f"SELECT tableoid::regclass::text FROM {CROPS_TABLE} WHERE face_id = %s",
                                    (victim,))[0]
    store.delete("fill", [victim])
    start = time.perf_counter()
    store.blobs.compact([partition])
    one = time.perf_counter() - start
    start = time.perf_counter()
    store.compact()
    return one, time.perf_counter() - start, total * size / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=20000)
    parser.add_argument("--size", type=int, default=6000)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as folder:
        files = per_call(CropStore(Path(folder) / "crops"), args.size)
    pg, one, seconds, gb = postgres_run(args)
    print(f"{'':10}{'files p50/p95 ms':>20}{'PostgreSQL p50/p95 ms':>24}")
    for name in files:
        print(f"{name:10}{files[name][0]:10.2f}{files[name][1]:10.2f}{pg[name][0]:12.2f}{pg[name][1]:12.2f}")
    print(f"rewrite (VACUUM FULL) of {args.crops:,} crops ({gb:.3f} GB): one partition {one:.2f} s, "
          f"all {seconds:.2f} s ({seconds / gb:.1f} s a GB)")
    print(f"load average after: {os.getloadavg()}")


def postgres_run(args: argparse.Namespace) -> tuple[dict[str, tuple[float, float]], float, float, float]:
    from faceprint.store.pgblobs import PgCropStore
    from pg import DURABLE, temporary_server

    with temporary_server(DURABLE) as server:
        store = PgCropStore(server.database(), compact_share=1e9)  # no rewrite in the per-call deletes
        found = per_call(store, args.size)
        one, seconds, gb = rewrite(store, args.crops, args.size)
        store.close()
        return found, one, seconds, gb


if __name__ == "__main__":
    main()
