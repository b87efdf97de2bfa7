"""1:N search at scale: collections of 10k / 100k / 1M faces, and bulk import throughput.

Run: python benchmarks/search_scale.py [--sizes 10000,100000,1000000] [--people 300] [--synthetic 10000]
     [--vectors-cache FILE.npz] [--index-only] [--workdir DIR] [--no-sweeps]
The 5M run of docs/benchmarks.md: ``--sizes 5000000 --synthetic 4000 --index-only --workdir /tmp/fp5m``.

``--workdir DIR`` keeps what is slow to make between runs: for each size (and --people,
--synthetic) the filled SQLite store with its index file, and each probe's exact best match (exact
search over millions of faces is the slowest part); the LFW vectors in ``DIR/lfw.npz``. A later run
with the same arguments fills nothing and computes no ground truth again: it opens the index (from
its file, which it writes first if missing or of an older layout) and searches. ``--no-sweeps``
leaves out the other settings (re-rank sizes, shares of cells) and times only the default and the
baselines.

Vectors are the default (accurate) profile's 256-d vectors.
- Real mates: LFW View 1 people with two or more images, the first image enrolled, the second
  the probe.
- Synthetic mates: for statistical power (a recall of 0.999 needs thousands of probes), more
  enrolled vectors drawn like the distractors, each with a probe placed at a similarity drawn
  from the real mates' similarities, in a direction drawn from the real mates' differences.
- Distractors fill the collection to each size: drawn from a Gaussian fitted (mean and
  covariance) to the vectors of LFW people who are not enrolled. Their similarities to each
  other and to real faces match those of real strangers (median 0.50, 99.9th percentile 0.65
  against 0.50 and 0.65 for real pairs), so they crowd the probes as strangers' faces would;
  random vectors would be trivially far away.

For each size: time to open (build the index from SQLite in a fresh Faceprint, then again
from the index file), latency of the index step (p50 / p99, 80 results as Rekognition's
default), identity recall against exact search (of the probes whose mate exact search ranks
first, the share the index also ranks first), top-1 agreement with exact search over all
probes, beside two baselines measured in the same run on the same index: the same quantized
codes scanned in full (every cell of the inverted file: what the index did before it had
cells) and plain numpy brute force over the same matrix. Then the bytes a face costs: in the
index's memory, in the index file and in the SQLite store (database and WAL files). Then
end-to-end ``search_faces_by_image`` latency, and bulk import images/s with both cores against
one worker process (``--index-only`` leaves those two out).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw_data import LFW, centre_face_vector, map_images  # noqa: E402


def make(home: Path | str):
    """A Faceprint with its own home but the usual model cache (no second download)."""
    from faceprint.service import Faceprint, default_home, default_models_dir

    return Faceprint(home, models_dir=default_models_dir(default_home()))


def strangers(enrolled: set[str], count: int) -> list[Path]:
    """Images of LFW people who are not enrolled, one per person."""
    out = []
    for folder in sorted((LFW / "images").iterdir(), reverse=True):
        if folder.name not in enrolled:
            out.append(sorted(folder.glob("*.jpg"))[0])
        if len(out) == count:
            break
    return out


def real_people(count: int) -> list[tuple[str, Path, Path]]:
    out = []
    for folder in sorted((LFW / "images").iterdir()):
        images = sorted(folder.glob("*.jpg"))
        if len(images) >= 2:
            out.append((folder.name, images[0], images[1]))
        if len(out) == count:
            break
    return out


RERANK_SWEEP = (500, 2000)
"""Other numbers of re-ranked candidates tried on the quantized collections (default: 1000)."""
PROBES_SWEEP = (0.25, 0.75)
"""Other shares of the cells scanned tried on the quantized collections (default: ``quantized.probes_for``)."""
BASELINE_PROBES = 300
"""Probes the full scan of the quantized codes times (a baseline)."""
NUMPY_PROBES = 50
"""Probes numpy brute force times (at 5M faces it reads 5 GB a probe)."""


def gaussian_like(base: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors from a Gaussian with ``base``'s mean and covariance."""
    mean, root = base.mean(0), np.linalg.cholesky(np.cov(base.T) + 1e-5 * np.eye(base.shape[1]))
    out = np.empty((count, base.shape[1]), np.float32)
    for start in range(0, count, 100_000):
        block = mean + rng.standard_normal((min(100_000, count - start), base.shape[1])) @ root.T
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_mates(base: np.ndarray, gallery: np.ndarray, probes: np.ndarray, count: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(enrolled, probe) vectors whose similarities and differences follow the real mates'."""
    enrolled = gaussian_like(base, count, rng)
    diffs = probes - gallery
    root = np.linalg.cholesky(np.cov(diffs.T) + 1e-5 * np.eye(base.shape[1]))
    direction = rng.standard_normal((count, base.shape[1])) @ root.T
    direction -= (direction * enrolled).sum(1, keepdims=True) * enrolled  # orthogonal to the mate
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    similarity = rng.choice((gallery * probes).sum(1), count)[:, None]
    return enrolled, (similarity * enrolled + np.sqrt(1 - similarity ** 2) * direction).astype(np.float32)


def fill(fp, collection: str, gallery: dict[str, np.ndarray], base: np.ndarray, extra: int,
         rng: np.random.Generator) -> None:
    """The gallery, then ``extra`` distractors drawn like ``base`` (made 20,000 at a time)."""
    from faceprint.store import FaceRow

    image_id = str(uuid.uuid4())
    rows = [FaceRow(str(uuid.uuid4()), collection, image_id, name, (0.4, 0.5, 0.3, 0.2), 99.0, vec)
            for name, vec in gallery.items()]
    fp.store.add_faces(rows)
    for start in range(0, extra, 20_000):
        fp.store.add_faces([FaceRow(str(uuid.uuid4()), collection, image_id, None, (0.4, 0.5, 0.3, 0.2), 99.0, v)
                            for v in gaussian_like(base, min(20_000, extra - start), rng)])


def exact_top1(matrix: np.ndarray, queries: np.ndarray, rows: int = 250_000) -> np.ndarray:
    """The row of each query's best match, ``rows`` rows of ``matrix`` at a time (bounded memory)."""
    best, where = np.full(len(queries), -np.inf, np.float32), np.zeros(len(queries), np.int64)
    for start in range(0, len(matrix), rows):
        block = matrix[start:start + rows]
        for i in range(0, len(queries), 512):
            scores = queries[i:i + 512] @ block.T
            top = np.argmax(scores, axis=1)
            value = scores[np.arange(len(top)), top]
            better = value > best[i:i + 512]
            best[i:i + 512][better], where[i:i + 512][better] = value[better], start + top[better]
    return where


def open_index(home: Path, collection: str, kept: bool):
    """(index, seconds to build it from SQLite or nan, seconds to open it from its file). ``kept``: a
    work folder's home, whose index file (if current) is opened without building from SQLite first."""
    built = float("nan")
    if not (kept and any((home / "indexes").glob("*.fpindex"))):
        fp = make(home)
        start = time.perf_counter()
        index = fp.collections.index(collection)  # built from SQLite: the first open
        built = time.perf_counter() - start
        fp.save_indexes()
        del fp, index
        gc.collect()  # the first index's memory back before the second opens
    fp = make(home)
    start = time.perf_counter()
    index = fp.collections.index(collection)  # from the index file, brought up to date from SQLite
    opened = time.perf_counter() - start
    fp.save_indexes()  # a no-op if the file is current; else (an older layout) written for the next run
    return index, built, opened


def ground_truth(index, queries: np.ndarray, cache: Path | None) -> np.ndarray:
    """Each query's exact best row, from ``cache`` if it holds it for these rows, else computed (and kept)."""
    state = index._state
    ids = state.ids
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            rows, names = data["rows"], data["ids"].tolist()
        if len(rows) == len(queries) and rows.max() < state.count and [ids[r] for r in rows.tolist()] == [
                n.decode() for n in names]:
            return rows
    truth = exact_top1(state.vectors[: state.count], queries)
    if cache is not None:
        np.savez(cache, rows=truth, ids=np.array([ids[r] for r in truth.tolist()], dtype="S"))
    return truth


def measure(home: Path, collection: str, names: list[str], queries: np.ndarray, kept: bool = False,
            sweeps: bool = True) -> dict[str, float]:
    index, built, opened = open_index(home, collection, kept)
    result = {"built_s": built, "open_s": opened, "quantized": index.quantized, **disk_bytes(home, len(index)),
              "bytes_per_face": index.memory_bytes() / len(index)}
    truth = ground_truth(index, queries, home.parent / "truth.npz" if kept else None)
    result.update(run_queries(index, names, queries, truth, True))
    if index.quantized:
        state = index._state
        result["cells"] = sum(s.index.nlist for s in state.quantized.shards) / len(state.quantized.shards)
        default, probes = index.rerank, index.probes
        for rerank in RERANK_SWEEP if sweeps else ():
            index.rerank = rerank
            result[f"rerank {rerank}"] = run_queries(index, names, queries, truth, False)  # type: ignore[assignment]
        index.rerank = default
        for share in PROBES_SWEEP if sweeps else ():
            index.probes = int(np.ceil(share * result["cells"]))
            result[f"probes {share}"] = run_queries(index, names, queries, truth, False)  # type: ignore[assignment]
        index.probes = int(result["cells"])  # every cell: the full scan of the quantized codes
        result["full scan"] = run_queries(index, names, queries[:: max(1, len(queries) // BASELINE_PROBES)],
                                          truth[:: max(1, len(queries) // BASELINE_PROBES)], False,
                                          mates=np.arange(0, len(queries), max(1, len(queries) // BASELINE_PROBES)))
        index.probes = probes
    return result


def disk_bytes(home: Path, faces: int) -> dict[str, float]:
    """Bytes a face of the SQLite store (database, WAL) and of the index files, after a save."""
    store = sum(p.stat().st_size for p in home.glob("faceprint.db*") if p.is_file())
    indexes = sum(p.stat().st_size for p in (home / "indexes").glob("*.fpindex"))
    return {"store_per_face": store / faces, "file_per_face": indexes / faces}


def run_queries(index, names: list[str], queries: np.ndarray, truth: np.ndarray, baseline: bool,
                mates: np.ndarray | None = None) -> dict[str, float]:
    """Latency of the index step and recall against exact search (and the numpy baseline, on at
    most ``BASELINE_PROBES`` probes); ``mates``: the row of each probe's mate (default: its own)."""
    state = index._state
    matrix, ids = state.vectors[: state.count], state.ids
    mate_row = {face_id: row for row, face_id in enumerate(ids[: len(names)])}  # enrolled first
    ours, base, found, agree = [], [], [], 0
    for i, query in enumerate(queries):
        t0 = time.perf_counter()
        hits = index.search(query, 80, -1.0)
        ours.append(time.perf_counter() - t0)
        found.append(mate_row.get(hits[0][0], -1) if hits else -1)
        agree += bool(hits) and hits[0][0] == ids[truth[i]]
    step = max(1, len(queries) // NUMPY_PROBES)
    for query in queries[::step] if baseline else ():  # after, not interleaved: a full scan evicts the caches
        t0 = time.perf_counter()
        scores = matrix @ query
        top = np.argpartition(-scores, 80)[:80]
        top = top[np.argsort(-scores[top])]
        base.append(time.perf_counter() - t0)
    found_arr, mates = np.array(found), np.arange(len(queries)) if mates is None else mates
    exact_hits = truth == mates
    return {"p50_ms": 1e3 * float(np.median(ours)), "p99_ms": 1e3 * float(np.percentile(ours, 99)),
            "numpy_p50_ms": 1e3 * float(np.median(base)) if base else float("nan"),
            "numpy_p99_ms": 1e3 * float(np.percentile(base, 99)) if base else float("nan"),
            "exact_rank1": float(exact_hits.mean()), "probes": float(exact_hits.sum()),
            "recall": float((found_arr[exact_hits] == mates[exact_hits]).mean()),
            "misses": float((found_arr[exact_hits] != mates[exact_hits]).sum()),
            "vs_exact": agree / len(queries)}


def end_to_end(home: Path, collection: str, people: list[tuple[str, Path, Path]]) -> float:
    fp = make(home)
    fp.search_faces_by_image(collection, people[0][2])  # warm: models and index
    times = []
    for _, _, probe in people[:30]:
        start = time.perf_counter()
        fp.search_faces_by_image(collection, probe, max_faces=10)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def bulk_rates(images: list[Path]) -> dict[int, float]:
    from faceprint.bulk import BulkImporter

    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            fp = make(tmp)
            fp.create_collection("bulk")
            summary = BulkImporter(fp, "bulk", workers=workers).run(images)
            rates[workers] = summary.to_dict()["ImagesPerSecond"]
    return rates


def lfw_vectors(people: list[tuple[str, Path, Path]], count: int, cache: Path | None
                ) -> tuple[list[tuple[str, Path, Path]], np.ndarray, np.ndarray, np.ndarray]:
    """(people with a face in both images, strangers' vectors, the people's enrolled and probe
    vectors), from ``cache`` if it holds them (made by an earlier run), else embedded now."""
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            kept = set(data["names"].tolist())
            return [p for p in people if p[0] in kept], data["base"], data["gallery"], data["probes"]
    others = strangers({name for name, _, _ in people}, 3 * count)
    vectors = map_images(centre_face_vector, "accurate", [p for _, a, b in people for p in (a, b)] + others)
    base = np.stack([vectors[p] for p in others if vectors[p] is not None])
    people = [p for p in people if vectors[p[1]] is not None and vectors[p[2]] is not None]
    gallery, probes = np.stack([vectors[a] for _, a, _ in people]), np.stack([vectors[b] for _, _, b in people])
    if cache is not None:
        np.savez(cache, base=base, gallery=gallery, probes=probes, names=np.array([n for n, _, _ in people]))
    return people, base, gallery, probes


def kept_home(workdir: Path, size: int, people: int, synthetic: int) -> Path:
    """The faceprint home a work folder keeps for these arguments (beside it: ``filled.json`` once
    the store is filled, ``truth.npz`` once the ground truth is computed)."""
    return workdir / f"{size}-faces-{people}-people-{synthetic}-synthetic" / "home"


def fresh_home(home: Path | None, size: int) -> Path:
    """An empty home: ``home`` emptied (a fill cut short leaves a partial store), or a temporary one."""
    if home is None:
        return Path(tempfile.mkdtemp(prefix=f"fp-scale-{size}-"))
    shutil.rmtree(home.parent, ignore_errors=True)
    home.mkdir(parents=True)
    return home


def print_size(size: int, r: dict) -> None:
    from faceprint.index import quantized as pq

    cells = int(r.get("cells", 0))
    kind = f"IVF, {pq.probes_for(cells)} of {cells:,} cells scanned" if r["quantized"] else "exact"
    built = "kept" if np.isnan(r["built_s"]) else f"{r['built_s']:.1f} s"  # a work folder's file: not built
    print(f"| {size:,} ({kind}) | {built} / {r['open_s']:.1f} s "
          f"| {r['p50_ms']:.2f} / {r['p99_ms']:.2f} "
          f"| {r['numpy_p50_ms']:.2f} / {r['numpy_p99_ms']:.2f} | {r['p50_ms'] / r['numpy_p50_ms']:.3f} "
          f"| {r['recall']:.4f} ({r['misses']:.0f} of {r['probes']:.0f}) | {r['vs_exact']:.4f} "
          f"| {r['exact_rank1']:.4f} | {r['bytes_per_face']:.0f} / {r['file_per_face']:.0f} "
          f"/ {r['store_per_face']:.0f} |", flush=True)
    rows = [(f"every cell scanned (the flat scan; {r['full scan']['probes']:.0f} probes)", "full scan")] if (
        r["quantized"]) else []
    rows += [(f"{n} candidates re-ranked", f"rerank {n}") for n in RERANK_SWEEP if f"rerank {n}" in r]
    rows += [(f"{n:.0%} of the cells scanned", f"probes {n}") for n in PROBES_SWEEP if f"probes {n}" in r]
    for label, key in rows:
        sweep = r[key]
        print(f"| {size:,}: {label} | | {sweep['p50_ms']:.2f} / {sweep['p99_ms']:.2f} "
              f"| | {r['p50_ms'] / sweep['p50_ms']:.3f} (default / this) "
              f"| {sweep['recall']:.4f} ({sweep['misses']:.0f} of {sweep['probes']:.0f}) "
              f"| {sweep['vs_exact']:.4f} | | |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--synthetic", type=int, default=10_000)
    parser.add_argument("--vectors-cache", type=Path, help="keep the LFW vectors here between runs (.npz)")
    parser.add_argument("--index-only", action="store_true", help="leave out end to end search and bulk import")
    parser.add_argument("--workdir", type=Path, help="keep the filled stores, index files and ground truth here")
    parser.add_argument("--no-sweeps", dest="sweeps", action="store_false",
                        help="time only the default settings and the baselines")
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        args.vectors_cache = args.vectors_cache or args.workdir / "lfw.npz"
    people, base, real_gallery, real_probes = lfw_vectors(real_people(args.people), args.people, args.vectors_cache)
    rng = np.random.default_rng(0)
    synth_gallery, synth_probes = synthetic_mates(base, real_gallery, real_probes, args.synthetic, rng)
    names = [name for name, _, _ in people] + [f"synthetic-{i}" for i in range(args.synthetic)]
    gallery = dict(zip(names, np.concatenate([real_gallery, synth_gallery]), strict=True))
    queries = np.concatenate([real_probes, synth_probes])
    print(f"# 1:N search benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; {len(people)} LFW people + {args.synthetic} synthetic mates enrolled "
          "and probed, 256-d accurate-profile vectors\n")
    print("| faces | open: from SQLite / from index file | index p50 / p99 ms | numpy brute force p50 / p99 ms "
          "| ratio p50 | identity recall vs exact (misses) | top-1 agrees with exact | mate at rank 1 (exact) "
          "| bytes / face: index RAM / index file / SQLite store |")
    print("|---|---|---|---|---|---|---|---|---|")
    e2e: tuple[Path, int] | None = None
    for size in (int(s) for s in args.sizes.split(",")):
        enrolled = min(len(names), size // 2)  # small collections take fewer synthetic mates
        home = kept_home(args.workdir, size, args.people, args.synthetic) if args.workdir else None
        if home is None or not (home.parent / "filled.json").is_file():
            home = fresh_home(home, size)
            fp = make(home)
            fp.create_collection("scale")
            fill(fp, "scale", {n: gallery[n] for n in names[:enrolled]}, base, size - enrolled, rng)
            del fp
            if args.workdir is not None:
                (home.parent / "filled.json").write_text(json.dumps({"size": size, "at": time.strftime("%H:%M")}))
            print(f"<!-- {size:,} faces filled {time.strftime('%H:%M')} -->", flush=True)
        print_size(size, measure(home, "scale", names[:enrolled], queries[:enrolled], args.workdir is not None,
                                 args.sweeps))
        print(f"\n{size:,} faces done {time.strftime('%H:%M')}: load average {os.getloadavg()[0]:.1f}, "
              f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB\n",
              flush=True)
        if args.workdir is not None:
            continue  # kept for the next run
        if not args.index_only and (size == 100_000 or e2e is None):
            if e2e is not None:
                shutil.rmtree(e2e[0])
            e2e = (home, size)
        else:
            shutil.rmtree(home)
    if e2e is None:
        return
    print(f"\nsearch_faces_by_image end to end (decode, detect, embed, search; {e2e[1]:,} faces): "
          f"p50 {end_to_end(e2e[0], 'scale', people):.0f} ms")
    shutil.rmtree(e2e[0])
    rates = bulk_rates([p for _, a, _ in people[:200] for p in (a,)])
    print(f"bulk import, accurate profile, 200 LFW images: 1 worker {rates[1]:.1f} images/s, "
          f"2 workers {rates[2]:.1f} images/s (ratio {rates[2] / rates[1]:.2f})")


if __name__ == "__main__":
    main()
