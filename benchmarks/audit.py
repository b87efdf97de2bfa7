"""The cost of the audit record: SearchFaces by FaceId with the record on against off, and the
time to verify a long log.

Run: python benchmarks/audit.py [--faces 1000000] [--entries 1000000] [--queries 2000]

- Search: a collection of ``--faces`` random unit vectors of the profile's dimension (added
  straight through the store in batches, as ``search_scale.py`` fills its collections), with
  ``--mates`` planted near-copies of each probe face so that every search returns candidates
  (the entry then holds them, as a real one would). Four ``Faceprint`` share the store and
  the index, each with its own home (so its own audit log): ``AuditSettings(enabled=False)``
  (off); the record on as it ships (``AuditSettings()``: each search's entry appended to
  ``HOME/audit/audit.journal`` with one ``write``, its latest head MAC'd at the journal's start,
  the journal moved into ``audit.db`` every 128 entries and the WAL checkpointed, both on threads
  of their own, whose CPU is printed after the table: see ``faceprint.audit.log``); on
  with the journal off (``AuditLog.journaled = False``: every search appended to ``audit.db`` in
  one write transaction, ``synchronous=NORMAL``, as before the journal); and on with
  ``durable=True`` (``synchronous=FULL``: one fsync of the WAL a search). Each face id is
  searched by the four in turn (the order rotating), so drift in the machine's load falls on
  all; the ratios of medians and of means to off are printed (goal: at most 1.05), and the
  median of the paired differences (what the record adds to one search), in wall time and in
  the searching thread's CPU time (which a loaded machine disturbs less).
- The log alone: one ``append`` (p50 / p99, durable and not; wall and CPU time), the latest
  head's MAC against an Ed25519 signature, and ``append_many`` in batches of 1000.
- Verify: ``--entries`` entries like a search's (5 candidates, probe digest, purpose and case)
  appended with ``append_many``, then ``faceprint.audit.verify.verify`` timed (chain, columns,
  signed heads), and the export of all of them as JSON lines.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np


def make(home: Path, enabled: bool, share=None, durable: bool = False):
    """A Faceprint on ``home`` with the record on or off (sharing ``share``'s store and index);
    ``durable`` False: its log appends with ``synchronous=NORMAL`` (no fsync an entry)."""
    from faceprint.audit.config import AuditSettings
    from faceprint.service import Faceprint, default_home, default_models_dir

    kwargs = {"store": share.store, "indexes": share.index_cache} if share is not None else {}
    return Faceprint(home, models_dir=default_models_dir(default_home()),
                     audit=AuditSettings(enabled=enabled, durable=durable), **kwargs)


def fill(fp, collection: str, gallery: dict[str, np.ndarray], extra: np.ndarray) -> None:
    """The named gallery faces, then ``extra`` unnamed ones, straight into the store 20,000 at a time."""
    from faceprint.store import FaceRow

    image_id = str(uuid.uuid4())
    fp.store.add_faces([FaceRow(str(uuid.uuid4()), collection, image_id, name, (0.4, 0.5, 0.3, 0.2), 99.0, vec)
                        for name, vec in gallery.items()])
    for start in range(0, len(extra), 20_000):
        fp.store.add_faces([FaceRow(str(uuid.uuid4()), collection, image_id, None, (0.4, 0.5, 0.3, 0.2), 99.0, v)
                            for v in extra[start:start + 20_000]])


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def build(home: Path, faces: int, probes: int, mates: int, rng: np.random.Generator):
    """The collection ``bench`` and the face ids to search with."""
    fp = make(home, enabled=False)
    fp.create_collection("bench")
    dim = fp.profile.dim
    base = unit(rng.standard_normal((probes, dim)))
    gallery = {f"probe-{i}": v for i, v in enumerate(base)}
    near = unit(np.repeat(base, mates, axis=0) + 0.02 * rng.standard_normal((probes * mates, dim)))
    start = time.perf_counter()
    extra_count = faces - probes - len(near)
    chunks = [near] + [unit(rng.standard_normal((min(100_000, extra_count - i), dim)))
                       for i in range(0, extra_count, 100_000)]
    fill(fp, "bench", gallery, np.concatenate(chunks))
    filled = time.perf_counter() - start
    ids = {row.external_image_id: row.face_id for row in fp.store.list_faces("bench", 0, probes + 10)
           if row.external_image_id}
    start = time.perf_counter()
    fp.collections.index("bench")
    indexed = time.perf_counter() - start
    return [ids[f"probe-{i}"] for i in range(probes)], filled, indexed


def search_rounds(fps: dict, face_ids: list[str], cpu: dict[str, list[float]] | None = None
                  ) -> dict[str, list[float]]:
    """Per-call seconds for each Faceprint: each face id searched by all of them in turn, the
    order rotating from one face id to the next, so that drift in the machine's load falls on all;
    ``cpu`` gets each call's CPU seconds of this thread."""
    times: dict[str, list[float]] = {name: [] for name in fps}
    names = list(fps)
    for i, face_id in enumerate(face_ids):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start, started_cpu = time.perf_counter(), time.thread_time()
            result = fps[name].search_faces("bench", face_id, max_faces=80, face_match_threshold=80.0)
            times[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.thread_time() - started_cpu)
            assert result.face_matches, "every probe has planted mates"
    return times


def search_entry(n: int, started: float):
    """An entry like a search's: five candidates, a probe digest, purpose and case."""
    from faceprint.audit.caller import Caller
    from faceprint.audit.log import Entry

    candidates = tuple({"FaceId": f"{n:08x}-0000-4000-8000-{k:012x}", "Similarity": 99.0 - k,
                        "ExternalImageId": f"person-{n % 5000}"} for k in range(5))
    return Entry("SearchFaces", Caller(f"analyst-{n % 20}", "key", "AKIAEXAMPLE", purpose="investigation",
                                       case=f"CASE-{n // 100}"), started, started + 0.004, "bench", 1_000_000, 80.0,
                 1e-6, f"{n:064x}", None, False, candidates, {"FaceId": f"{n:032x}", "MaxFaces": 80})


def log_costs(folder: Path, entries: int) -> dict[str, float]:
    from faceprint.audit.export import export
    from faceprint.audit.log import AuditLog
    from faceprint.audit.verify import verify

    relaxed = AuditLog(folder, durable=False)
    fast, cpu = [], []
    for n in range(2000):
        entry = search_entry(n, time.time())
        start, started_cpu = time.perf_counter(), time.thread_time()
        relaxed.append_seq(entry)
        cpu.append(time.thread_time() - started_cpu)
        fast.append(time.perf_counter() - start)
    unjournaled = AuditLog(folder.with_name("unjournaled"), durable=False, journaled=False)
    sqlite_cpu = []
    for n in range(2000):
        entry = search_entry(n, time.time())
        started_cpu = time.thread_time()
        unjournaled.append_seq(entry)
        sqlite_cpu.append(time.thread_time() - started_cpu)
    log = AuditLog(folder)
    singles = []
    for n in range(2000, 2200):
        entry = search_entry(n, time.time())
        start = time.perf_counter()
        log.append_seq(entry)
        singles.append(time.perf_counter() - start)
    signing, macs = [], []
    for n in range(200):
        start = time.perf_counter()
        log.signer.sign_head(n, "ab" * 32, 1.0)
        signing.append(time.perf_counter() - start)
        start = time.perf_counter()
        log.signer.mac_head(n, "ab" * 32, 1.0)
        macs.append(time.perf_counter() - start)
    start = time.perf_counter()
    t0 = time.time()
    for first in range(2200, entries, 1000):
        log.append_many(search_entry(n, t0 + n * 0.01) for n in range(first, min(first + 1000, entries)))
    appended = time.perf_counter() - start
    start = time.perf_counter()
    report = verify(log)
    verified = time.perf_counter() - start
    assert report.ok and report.entries == entries, report.to_json()
    start = time.perf_counter()
    count = export(log, io.StringIO(), "jsonl")
    exported = time.perf_counter() - start
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {"append_p50_ms": 1000 * statistics.median(singles), "append_p99_ms": 1000 * quantile(singles, 0.99),
            "sign_p50_ms": 1000 * statistics.median(signing), "mac_p50_ms": 1000 * statistics.median(macs),
            "batch_rate": (entries - 2200) / appended, "normal_p50_ms": 1000 * statistics.median(fast),
            "normal_p99_ms": 1000 * quantile(fast, 0.99), "normal_mean_ms": 1000 * statistics.fmean(fast),
            "cpu_p50_us": 1e6 * statistics.median(cpu), "cpu_mean_us": 1e6 * statistics.fmean(cpu),
            "sqlite_cpu_p50_us": 1e6 * statistics.median(sqlite_cpu),
            "sqlite_cpu_mean_us": 1e6 * statistics.fmean(sqlite_cpu),
            "verify_s": verified, "export_s": exported, "exported": count, "bytes_per_entry": size / entries,
            "heads": report.heads_checked}


def row(name: str, times: dict[str, list[float]], cpu: dict[str, list[float]]) -> str:
    """One table row: ``name``'s latencies against ``off``'s in the same rounds."""
    wall, base = times[name], times["off"]
    med, off_med = statistics.median(wall), statistics.median(base)
    mean, off_mean = statistics.fmean(wall), statistics.fmean(base)
    added = statistics.median(np.subtract(wall, base))
    added_cpu = statistics.median(np.subtract(cpu[name], cpu["off"]))
    return (f"| {name} | {1000 * med:.2f} | {1000 * mean:.2f} | {1000 * quantile(wall, 0.99):.2f} "
            f"| {med / off_med:.3f} / {mean / off_mean:.3f} | {1000 * added:.3f} "
            f"| {1000 * statistics.median(cpu[name]):.2f} | {1e6 * added_cpu:.0f} |")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000, help="searches with the record on (as many off)")
    parser.add_argument("--probes", type=int, default=500, help="distinct faces searched for")
    parser.add_argument("--mates", type=int, default=4, help="planted near-copies of each probe face")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp(prefix="fp-audit-bench-"))
    try:
        run(args, root, rng)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path, rng: np.random.Generator) -> None:
    print(f"# audit record benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}\n")
    face_ids, filled, indexed = build(root / "home", args.faces, args.probes, args.mates, rng)
    off = make(root / "home", enabled=False)
    sqlite_path = make(root / "sqlite", enabled=True, share=off)
    sqlite_path.audit_log.journaled = False
    fps = {"off": off, "on (default: the journal)": make(root / "journal", enabled=True, share=off),
           "on, journal off (each entry an audit.db transaction, synchronous=NORMAL)": sqlite_path}
    durable = {"off": off, "on, durable=True (synchronous=FULL)": make(root / "durable", enabled=True, share=off,
                                                                        durable=True)}
    queries = (face_ids * (args.queries // len(face_ids) + 1))[:args.queries]
    search_rounds({**fps, **durable}, face_ids[:50])  # warm them all (and make the online keys)
    print(f"SearchFaces by FaceId, {args.faces:,} faces ({off.profile.name} profile, {off.profile.dim}-d; filled "
          f"in {filled:.0f} s, index built in {indexed:.0f} s), {args.queries:,} searches each, "
          "taking turns (durable=True in rounds of its own, after: its fsyncs would stall the others' writes):\n")
    print("| record | p50 ms | mean ms | p99 ms | ratio to off: p50 / mean (goal <= 1.05) "
          "| added, median of pairs ms | CPU p50 ms | added CPU, median of pairs us |\n"
          "|---|---|---|---|---|---|---|---|")
    for group, count in ((fps, args.queries), (durable, max(len(face_ids), args.queries // 3))):
        cpu: dict[str, list[float]] = {}
        times = search_rounds(group, queries[:count], cpu)
        for name in group if group is fps else list(group)[1:]:
            print(row(name, times, cpu))
    load = os.getloadavg()
    print(f"\nload average after the searches: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    written = {name: fp.audit_log.count() for name, fp in {**fps, **durable}.items() if name != "off"}
    print(f"\nentries written: {', '.join(f'{n:,}' for n in written.values())}")
    for name, fp in fps.items():  # CPU the searching thread does not count: the journal's moves, the checkpoints
        log = fp.audit_log
        if name != "off":
            cpu = log.mover.cpu + log.checkpoint_cpu
            print(f"{name}: on threads of their own, {log.mover.runs} moves of the journal and {log.checkpoints} WAL "
                  f"checkpoints, {1000 * cpu:.0f} ms of CPU ({1e6 * cpu / max(1, written[name]):.1f} us an entry: "
                  "the searching thread's added CPU above leaves it out)")
    print(flush=True)
    costs = log_costs(root / "log" / "audit", args.entries)
    print(f"The log alone: append p50 {costs['append_p50_ms']:.2f} ms, p99 {costs['append_p99_ms']:.2f} ms durable; "
          f"p50 {costs['normal_p50_ms']:.3f} ms, mean {costs['normal_mean_ms']:.3f} ms, p99 "
          f"{costs['normal_p99_ms']:.2f} ms relaxed, through the journal (this thread's CPU time: p50 "
          f"{costs['cpu_p50_us']:.0f} us, mean {costs['cpu_mean_us']:.0f} us; with the journal off p50 "
          f"{costs['sqlite_cpu_p50_us']:.0f} us, mean {costs['sqlite_cpu_mean_us']:.0f} us; the latest head's MAC "
          f"{1000 * costs['mac_p50_ms']:.1f} us of it, where an Ed25519 signature takes "
          f"{1000 * costs['sign_p50_ms']:.0f} us); append_many {costs['batch_rate']:,.0f} entries/s; "
          f"{costs['bytes_per_entry']:.0f} bytes/entry on disk")
    print(f"verify {args.entries:,} entries: {costs['verify_s']:.1f} s ({args.entries / costs['verify_s']:,.0f} "
          f"entries/s, {costs['heads']} signed heads); export as JSON lines {costs['export_s']:.1f} s")


if __name__ == "__main__":
    main()
