"""1:N search at 1M faces on Milvus against the embedded index, measured in the same run.

Run: python benchmarks/milvus_scale.py [--size 1000000] [--people 300] [--synthetic 3000]
     [--milvus milvus://HOST:PORT] [--vectors-cache FILE]

The collection is search_scale.py's: LFW people (first image enrolled, second the probe),
synthetic mates drawn like them (``synthetic_mates``) and Gaussian distractors fitted to LFW
strangers up to ``--size`` faces, 256-d accurate-profile vectors, in one SQLite store. Both
indexes search that store's collection:

- embedded: faceprint's own index (``faceprint.index.cache``), built from SQLite;
- Milvus: ``faceprint.index.milvus`` on a Milvus 2.3.5 standalone server this script starts (the
  ``milvus`` package, as tests/milvuskit.py does; or ``--milvus URL``), filled from the store,
  then flushed until every segment is sealed and searched through its IVF_SQ8 index.

For each: time to build or fill, search latency p50 / p95 for 80 results (Rekognition's default;
Milvus: re-ranked exactly against SQLite), identity recall against exact search (of the probes
whose mate exact search ranks first, the share the index ranks first), top-1 agreement with exact
search; for Milvus also the RPC alone, an ``nprobe`` sweep, the server's resident memory (VmRSS,
VmHWM) and its data folder on disk. Exact search is numpy over the store's vectors.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))
from search_scale import gaussian_like, make, real_people, strangers, synthetic_mates  # noqa: E402

K = 80
SWEEP = (128, 256, 1024)
"""nprobe values tried besides the default (512), on the first ``--sweep-probes`` probes."""


def vectors(people_count: int, synthetic: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(enrolled, probes, distractor base): LFW people and synthetic mates, as search_scale.py draws them."""
    if cache is not None and cache.exists():
        saved = np.load(cache)
        return saved["enrolled"], saved["probes"], saved["base"]
    from lfw_data import centre_face_vector, map_images

    people = real_people(people_count)
    others = strangers({name for name, _, _ in people}, 3 * people_count)
    found = map_images(centre_face_vector, "accurate", [p for _, a, b in people for p in (a, b)] + others)
    base = np.stack([found[p] for p in others if found[p] is not None])
    people = [p for p in people if found[p[1]] is not None and found[p[2]] is not None]
    gallery, probes = np.stack([found[a] for _, a, _ in people]), np.stack([found[b] for _, _, b in people])
    synth_gallery, synth_probes = synthetic_mates(base, gallery, probes, synthetic, np.random.default_rng(0))
    enrolled, queries = np.concatenate([gallery, synth_gallery]), np.concatenate([probes, synth_probes])
    if cache is not None:
        np.savez(cache, enrolled=enrolled, probes=queries, base=base)
    return enrolled, queries, base


def fill(store, collection: str, enrolled: np.ndarray, base: np.ndarray, size: int, rng: np.random.Generator) -> None:
    """The enrolled mates first (in order), then distractors drawn like ``base`` up to ``size`` faces."""
    from faceprint.store import FaceRow

    image_id = str(uuid.uuid4())

    def rows(vectors: np.ndarray) -> list[FaceRow]:
        return [FaceRow(str(uuid.uuid4()), collection, image_id, None, (0.4, 0.5, 0.3, 0.2), 99.0, v) for v in vectors]

    store.add_faces(rows(enrolled))
    for start in range(len(enrolled), size, 20_000):
        store.add_faces(rows(gaussian_like(base, min(20_000, size - start), rng)))


def run(index, queries: np.ndarray, mates: list[str], truth: list[str]) -> dict[str, float]:
    """Latency (ms) and recall of ``index.search`` over the queries."""
    times, found = [], []
    for query in queries:
        start = time.perf_counter()
        hits = index.search(query, K, -1.0)
        times.append(time.perf_counter() - start)
        found.append(hits[0][0] if hits else None)
    mated = [i for i in range(len(queries)) if truth[i] == mates[i]]
    misses = sum(found[i] != mates[i] for i in mated)
    return {"p50": 1e3 * float(np.median(times)), "p95": 1e3 * float(np.percentile(times, 95)),
            "recall": 1 - misses / len(mated), "misses": misses, "mated": len(mated),
            "agree": float(np.mean([f == t for f, t in zip(found, truth, strict=True)]))}


def rpc_only(index, queries: np.ndarray) -> tuple[float, float]:
    """Latency (ms) of the Milvus search call alone (the candidates, before the exact re-rank)."""
    s, times = index.owner.settings, []
    for query in queries:
        start = time.perf_counter()
        index.state.collection.search([query.tolist()], "vector", {"metric_type": "IP",
                                      "params": {"nprobe": s.nprobe}}, K * s.candidates,
                                      consistency_level=s.consistency)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times)), 1e3 * float(np.percentile(times, 95))


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in GiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) / 2 ** 20 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


def disk(folder: Path) -> float:
    """Size of a folder in GiB."""
    return int(subprocess.run(["du", "-sk", str(folder)], capture_output=True, text=True).stdout.split()[0]) / 2 ** 20


def line(label: str, r: dict[str, float], extra: str = "") -> str:
    return (f"| {label} | {r['p50']:.2f} / {r['p95']:.2f} | {r['recall']:.4f} ({r['misses']} of {r['mated']}) "
            f"| {r['agree']:.4f} | {extra} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--synthetic", type=int, default=3000)
    parser.add_argument("--sweep-probes", type=int, default=1000)
    parser.add_argument("--milvus", help="a running Milvus's milvus://HOST:PORT (default: start one here)")
    parser.add_argument("--vectors-cache", type=Path, help="an .npz file keeping the LFW vectors between runs")
    args = parser.parse_args()
    from faceprint.index.milvus import MilvusIndexes

    enrolled, queries, base = vectors(args.people, args.synthetic, args.vectors_cache)
    rng = np.random.default_rng(1)
    home = Path(tempfile.mkdtemp(prefix="fp-milvus-scale-"))
    print(f"# Milvus vs embedded index, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} "
          f"CPUs, load average {os.getloadavg()[0]:.1f}; {args.size:,} faces ({len(enrolled):,} mates enrolled, "
          f"{len(queries):,} probes), 256-d, {K} results a search\n", flush=True)
    fp = make(home)
    fp.create_collection("scale")
    start = time.perf_counter()
    fill(fp.store, "scale", enrolled, base, args.size, rng)
    print(f"SQLite store filled: {time.perf_counter() - start:.0f} s", flush=True)
    ids, matrix, _ = fp.store.faces_after("scale", 0)
    mates = ids[: len(enrolled)]  # stored first, in order
    truth = [ids[j] for start in range(0, len(queries), 256)
             for j in np.argmax(queries[start:start + 256] @ matrix.T, axis=1)]
    del matrix

    start = time.perf_counter()
    embedded = make(home).collections.index("scale")  # its own Faceprint: its memory goes with it
    built = time.perf_counter() - start
    results = {"embedded": run(embedded, queries, mates, truth)}
    print(f"embedded index built from SQLite: {built:.0f} s", flush=True)
    del embedded

    server, url = None, args.milvus
    if url is None:
        import milvuskit

        server = milvuskit.start(home / "milvus")
        url = f"milvus://127.0.0.1:{server.listen_port}"
    pid = server.server_proc.pid if server is not None else None
    idle = memory(pid) if pid else None
    try:
        indexes = MilvusIndexes(url, fp.store, 256)
        row = fp.store.get_collection("scale")
        assert row is not None
        start = time.perf_counter()
        index = indexes.get(row)
        filled = time.perf_counter() - start
        start = time.perf_counter()
        indexes.settle("scale", timeout=3600)
        settled = time.perf_counter() - start
        print(f"Milvus filled from SQLite: {filled:.0f} s ({args.size / filled:,.0f} faces/s); flushed, indexed "
              f"and loaded: {settled:.0f} s more", flush=True)
        results["milvus"] = run(index, queries, mates, truth)
        rpc = rpc_only(index, queries[: args.sweep_probes])
        default = indexes.settings.nprobe
        for nprobe in SWEEP:
            object.__setattr__(indexes.settings, "nprobe", nprobe)
            n = args.sweep_probes
            results[f"nprobe {nprobe}"] = run(index, queries[:n], mates[:n], truth[:n])
        object.__setattr__(indexes.settings, "nprobe", default)
        loaded = memory(pid) if pid else None
        data = disk(home / "milvus") if server is not None else float("nan")
    finally:
        if server is not None:
            server.stop()
    print("\n| index | search p50 / p95 ms | identity recall vs exact (misses) | top-1 agrees with exact | notes |")
    print("|---|---|---|---|---|")
    print(line("embedded (faceprint.index.cache)", results["embedded"], f"built from SQLite in {built:.0f} s"))
    print(line(f"Milvus IVF_SQ8, nlist 1024, nprobe {default}, {K * indexes.settings.candidates} candidates "
               "re-ranked exactly", results["milvus"],
               f"Milvus search call alone p50 / p95 {rpc[0]:.2f} / {rpc[1]:.2f} ms"))
    for nprobe in SWEEP:
        print(line(f"Milvus, nprobe {nprobe} (first {args.sweep_probes} probes)", results[f"nprobe {nprobe}"]))
    if idle and loaded:
        print(f"\nMilvus server memory: idle {idle[0]:.2f} GiB; with the collection loaded {loaded[0]:.2f} GiB "
              f"(peak {loaded[1]:.2f} GiB): {(loaded[0] - idle[0]) * 2 ** 30 / args.size:,.0f} bytes a face "
              f"resident; data folder {data:.2f} GiB ({data * 2 ** 30 / args.size:,.0f} bytes a face)")


if __name__ == "__main__":
    main()
