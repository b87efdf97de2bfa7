"""The store's own costs, SQLite against PostgreSQL, in the same run on the same faces.

Run: python benchmarks/store_backends.py [--faces 100000] [--dim 256] [--store postgresql://...]

Without ``--store`` a throw-away PostgreSQL server is started from Debian's packages as the tests
start theirs (``tests/pg.py``, over a unix socket) but durable as SQLite is (``fsync``,
``synchronous_commit`` and ``full_page_writes`` on); with ``--store`` the server given is used (an
empty database: the benchmark creates and deletes a collection ``bench``). The SQLite store is a
fresh file in a temporary folder (``synchronous=FULL``, as faceprint runs it).

Per store, on one collection of ``--faces`` random unit vectors:
- IndexFaces-like writes: ``add_faces`` of one face a call (p50, p95; 2,000 calls);
- bulk writes: ``add_faces`` of 1,000 faces a call (faces/s) to fill the collection;
- ``generation`` (every search asks it first) and ``get_faces`` of 80 ids (the exact re-rank's
  fetch), p50 / p95 over 500 calls;
- an index rebuild's read: ``faces_after`` in batches of 10,000 over the whole collection (faces/s);
- ``delete_faces`` of one face a call (p50, p95; 200 calls);
and PostgreSQL's figure as a ratio of SQLite's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from faceprint.backends import open_store  # noqa: E402
from faceprint.store import CollectionRow, FaceRow  # noqa: E402

SINGLE_WRITES, READS, DELETES, BULK, REBUILD_BATCH = 2000, 500, 200, 1000, 10_000


def faces(start: int, count: int, dim: int, rng: np.random.Generator) -> list[FaceRow]:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [FaceRow(f"face-{start + i:08d}", "bench", f"img-{start + i}", None, (0.5, 0.5, 0.25, 0.25), 99.9,
                    vectors[i]) for i in range(count)]


def timed(calls: int, call: Callable[[int], object]) -> tuple[float, float]:
    """p50, p95 in milliseconds."""
    took = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took), float(np.percentile(took, 95))


def measure(store, total: int, dim: int) -> dict[str, float]:
    rng = np.random.default_rng(7)
    store.create_collection(CollectionRow("bench", "arn", "bench", dim, time.time()))
    found: dict[str, float] = {}
    singles = faces(0, SINGLE_WRITES, dim, rng)
    found["add 1 p50 ms"], found["add 1 p95 ms"] = timed(SINGLE_WRITES, lambda i: store.add_faces([singles[i]]))
    started = time.perf_counter()
    for start in range(SINGLE_WRITES, total, BULK):
        store.add_faces(faces(start, min(BULK, total - start), dim, rng))
    found["bulk add faces/s"] = (total - SINGLE_WRITES) / (time.perf_counter() - started)
    found["generation p50 ms"], found["generation p95 ms"] = timed(READS, lambda i: store.generation("bench"))
    picks = [[f"face-{j:08d}" for j in rng.choice(total, 80, replace=False)] for _ in range(READS)]
    found["get 80 p50 ms"], found["get 80 p95 ms"] = timed(READS, lambda i: store.get_faces("bench", picks[i]))
    started, seq, read = time.perf_counter(), 0, 0
    while True:
        ids, _, seq = store.faces_after("bench", seq, REBUILD_BATCH)
        if not ids:
            break
        read += len(ids)
    found["rebuild read faces/s"] = read / (time.perf_counter() - started)
    doomed = [f"face-{j:08d}" for j in rng.choice(total, DELETES, replace=False)]
    found["delete 1 p50 ms"], found["delete 1 p95 ms"] = timed(DELETES, lambda i: store.delete_faces("bench",
                                                                                                      [doomed[i]]))
    store.delete_collection("bench")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--store", help="a PostgreSQL URL (default: start a throw-away server)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fp-bench-") as folder:
        results = {"sqlite": measure(open_store(f"sqlite://{folder}/faceprint.db", Path(folder)), args.faces,
                                     args.dim)}
        server = None
        if args.store is None:
            results["postgresql"], server = postgres_run(args.faces, args.dim)
        else:
            results["postgresql"] = measure(open_store(args.store, Path(folder)), args.faces, args.dim)
    print(f"{args.faces:,} faces of {args.dim} dimensions{' (throw-away server: ' + server + ')' if server else ''}")
    print(f"{'':24}{'SQLite':>12}{'PostgreSQL':>12}{'PG / SQLite':>13}")
    for name, value in results["sqlite"].items():
        other = results["postgresql"][name]
        print(f"{name:24}{value:12,.2f}{other:12,.2f}{other / value:13.2f}")


def postgres_run(total: int, dim: int) -> tuple[dict[str, float], str]:
    """``measure`` on a throw-away durable PostgreSQL server; its figures and a line about the server."""
    from pg import DURABLE, temporary_server

    with temporary_server(DURABLE) as server:
        store = open_store(server.database(), server.folder)
        found = measure(store, total, dim)
        store.close()
        return found, f"PostgreSQL {server.bin.parent.name}, unix socket, fsync on"


if __name__ == "__main__":
    main()
