"""The audit record's append in PostgreSQL (several nodes, one chain) against the embedded log, in
the same run.

Run: python benchmarks/audit_pg.py [--entries 1000] [--threads 4] [--store postgresql://...]

Without ``--store`` a throw-away PostgreSQL server is started from Debian's packages as the tests
start theirs (``tests/pg.py``, over a unix socket), durable (``fsync``, ``synchronous_commit`` and
``full_page_writes`` on); with ``--store`` the server given is used (an empty database). The
embedded log is a fresh ``audit.db`` in a temporary folder.

Measured, per log kind (embedded, PostgreSQL) and per mode (relaxed: the server's default;
durable: ``--durable-audit``):
- one append (``append_seq``, the audited operations' call), p50 and p95 over ``--entries``
  calls, the four logs taken in turn in blocks of 50 so that the machine's load drifts over all
  alike; PostgreSQL's figure as a ratio of the embedded one's;
- ``verify`` of what was appended (seconds);
- two nodes (two ``PgAuditLog`` on one database, ``--threads`` threads each) appending at once:
  appends a second, and whether the chain they made verifies (one unbroken order).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from faceprint.audit.caller import Caller  # noqa: E402
from faceprint.audit.log import AuditLog, Entry  # noqa: E402
from faceprint.audit.pglog import PgAuditLog  # noqa: E402
from faceprint.audit.verify import verify  # noqa: E402

BLOCK = 50


def entry(n: int) -> Entry:
    now = time.time()
    return Entry("SearchFaces", Caller(f"analyst{n % 7}", "key", "FPAK1", purpose="inquiry", case=f"K-{n % 50}"),
                 now, now, collection_id="mugshots", collection_size=1_000_000, threshold=80.0,
                 false_match_rate=1e-5, candidates=tuple({"FaceId": f"{n:08d}-face", "Similarity": 91.5}
                                                         for _ in range(3)), details={"FaceId": "f", "MaxFaces": 3})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--store", help="a PostgreSQL database URL (default: a throw-away server)")
    args = p.parse_args()
    if args.store:
        report(args.store, args, "the server given")
        return
    with Throwaway() as (url, what):
        report(url, args, what)


def report(url: str, args: argparse.Namespace, what: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fp-audit-"))
    logs: dict[str, Any] = {
        "embedded relaxed": AuditLog(folder / "relaxed", durable=False),
        "embedded durable": AuditLog(folder / "durable", durable=True),
        "postgresql relaxed": PgAuditLog(url, folder / "pg", durable=False),
        "postgresql durable": PgAuditLog(url, folder / "pg", durable=True),
    }
    times = appends(logs, args.entries)
    print(f"{args.entries:,} appends a log ({what}); milliseconds")
    print(f"{'':22}{'p50':>8}{'p95':>8}   PostgreSQL / embedded (p50)")
    for name, found in times.items():
        q = statistics.quantiles(found, n=20)
        base = "embedded " + name.split()[1]
        ratio = statistics.median(found) / statistics.median(times[base]) if name.startswith("postgresql") else None
        print(f"{name:22}{statistics.median(found) * 1e3:8.3f}{q[18] * 1e3:8.3f}"
              + (f"   {ratio:.2f}" if ratio else ""))
    for name in ("embedded relaxed", "postgresql relaxed"):
        start = time.perf_counter()
        ok, took = verify(logs[name]).ok, time.perf_counter() - start
        print(f"verify {name.split()[0]} ({logs[name].count():,} entries): {took:.2f} s, ok {ok}")
    nodes(url, folder, args.entries, args.threads)
    for log in logs.values():
        log.close()


def appends(logs: dict[str, Any], total: int) -> dict[str, list[float]]:
    """Per log, the seconds of each append, the logs taken in turn in blocks of :data:`BLOCK`."""
    times: dict[str, list[float]] = {name: [] for name in logs}
    for log in logs.values():
        log.append_seq(entry(0))  # opened, the key made
    for block in range(0, total, BLOCK):
        for name, log in logs.items():
            for n in range(block, min(total, block + BLOCK)):
                e = entry(n)
                start = time.perf_counter()
                log.append_seq(e)
                times[name].append(time.perf_counter() - start)
    return times


def nodes(url: str, folder: Path, total: int, threads: int) -> None:
    """Two nodes on one fresh chain (a new database where the URL allows), ``threads`` threads each."""
    pair = [PgAuditLog(url, folder / f"node{i}", durable=False, pool_size=threads) for i in (1, 2)]
    before = pair[0].count()
    each = max(1, total // (2 * threads))

    def work(log: PgAuditLog) -> None:
        for n in range(each):
            log.append_seq(entry(n))

    workers = [threading.Thread(target=work, args=(pair[i % 2],)) for i in range(2 * threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took = time.perf_counter() - start
    made = pair[1].count() - before
    print(f"two nodes x {threads} threads, relaxed: {made:,} appends in {took:.2f} s = {made / took:,.0f}/s; "
          f"chain verifies: {verify(pair[1]).ok}")
    for log in pair:
        log.close()


class Throwaway:
    """A durable PostgreSQL server for the run (``tests/pg.py``): (database URL, a line about it)."""

    def __enter__(self) -> tuple[str, str]:
        import os
        import pwd

        from pg import PgServer, pg_bin

        bin_dir = pg_bin()
        if bin_dir is None:
            raise SystemExit("PostgreSQL is not installed: run scripts/install-test-tools, or give --store")
        self.folder = Path(tempfile.mkdtemp(prefix="fp-pg-"))
        run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if run_as:
            os.chown(self.folder, run_as.pw_uid, run_as.pw_gid)
        self.server = PgServer(self.folder, bin_dir, run_as,
                               {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"})
        self.server.start()
        return self.server.database(), f"PostgreSQL {bin_dir.parent.name}, unix socket, fsync on"

    def __exit__(self, *exc: object) -> None:
        import shutil

        if (self.server.data / "postmaster.pid").exists():
            self.server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
