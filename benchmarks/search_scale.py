"""1:N search at scale: collections of 10k / 100k / 1M faces, and bulk import throughput.

Run: python benchmarks/search_scale.py [--sizes 10000,100000,1000000] [--people 300]

Real vectors: the default (accurate) profile's vectors of LFW View 1 people with two or more
images: the first image of each enrolled, the second used as the probe. Distractors fill the
collection to each size: mixtures of two real vectors of other LFW people (never the enrolled
ones) plus noise, re-normalised, so that they look like strangers' faces to the index (random
vectors would be trivially far away). For each size:
time to open (build the index from SQLite in a fresh Faceprint), search latency of the index
step (p50 / p99), identity recall against exact search (the mate found at rank 1), memory per
face of the index, beside plain numpy brute force over the same matrix in the same run. Then
end-to-end ``search_faces_by_image`` latency, and bulk import images/s with both cores against
one worker process.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tracemalloc
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


def distractors(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((count, real.shape[1]), np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        a, b = real[rng.integers(0, len(real), n)], real[rng.integers(0, len(real), n)]
        mix = rng.uniform(0.3, 0.7, (n, 1)).astype(np.float32)
        block = mix * a + (1 - mix) * b + 0.35 * rng.standard_normal(a.shape).astype(np.float32) / np.sqrt(a.shape[1])
        out[start:start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def fill(fp, collection: str, gallery: dict[str, np.ndarray], extra: np.ndarray) -> None:
    from faceprint.store import FaceRow

    image_id = str(uuid.uuid4())
    rows = [FaceRow(str(uuid.uuid4()), collection, image_id, name, (0.4, 0.5, 0.3, 0.2), 99.0, vec)
            for name, vec in gallery.items()]
    fp.store.add_faces(rows)
    for start in range(0, len(extra), 20_000):
        fp.store.add_faces([FaceRow(str(uuid.uuid4()), collection, image_id, None, (0.4, 0.5, 0.3, 0.2), 99.0, v)
                            for v in extra[start:start + 20_000]])


def measure(home: Path, collection: str, probes: dict[str, np.ndarray]) -> dict[str, float]:
    fp = make(home)
    tracemalloc.start()
    start = time.perf_counter()
    index = fp._index(collection)  # built from SQLite: the open cost
    opened = time.perf_counter() - start
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    matrix = index._matrix
    names = fp.store.list_faces(collection, 0, len(probes) + 10)  # the enrolled people come first
    name_of = {f.face_id: f.external_image_id for f in names}
    ours, base, hits, same = [], [], 0, 0
    for name, query in probes.items():
        t0 = time.perf_counter()
        found = index.search(query, 10, -1.0)
        t1 = time.perf_counter()
        scores = matrix @ query
        top = np.argpartition(-scores, 10)[:10]
        top = top[np.argsort(-scores[top])]
        t2 = time.perf_counter()
        same += found[0][0] == index._ids[int(top[0])]
        ours.append(t1 - t0)
        base.append(t2 - t1)
        hits += name_of.get(found[0][0]) == name
    return {"open_s": opened, "p50_ms": 1e3 * float(np.median(ours)), "p99_ms": 1e3 * float(np.percentile(ours, 99)),
            "numpy_p50_ms": 1e3 * float(np.median(base)), "numpy_p99_ms": 1e3 * float(np.percentile(base, 99)),
            "rank1": hits / len(probes), "vs_exact": same / len(probes), "bytes_per_face": memory / len(index)}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--people", type=int, default=300)
    args = parser.parse_args()
    people = real_people(args.people)
    others = strangers({name for name, _, _ in people}, 2 * args.people)
    vectors = map_images(centre_face_vector, "accurate", [p for _, a, b in people for p in (a, b)] + others)
    base = np.stack([vectors[p] for p in others if vectors[p] is not None])
    people = [p for p in people if vectors[p[1]] is not None and vectors[p[2]] is not None]
    gallery = {name: vectors[a] for name, a, _ in people}
    probes = {name: vectors[b] for name, _, b in people}
    rng = np.random.default_rng(0)
    print(f"# 1:N search benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{len(people)} LFW people enrolled and probed, 256-d accurate-profile vectors\n")
    print("| faces | open (build index from SQLite) | index p50 / p99 ms | numpy brute force p50 / p99 ms "
          "| ratio p50 | top-1 agrees with exact | mate at rank 1 | index bytes / face |")
    print("|---|---|---|---|---|---|---|---|")
    e2e: tuple[Path, int] | None = None
    for size in (int(s) for s in args.sizes.split(",")):
        home = Path(tempfile.mkdtemp(prefix=f"fp-scale-{size}-"))
        fp = make(home)
        fp.create_collection("scale")
        fill(fp, "scale", gallery, distractors(base, size - len(gallery), rng))
        r = measure(home, "scale", probes)
        print(f"| {size:,} | {r['open_s']:.1f} s | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} "
              f"| {r['numpy_p50_ms']:.2f} / {r['numpy_p99_ms']:.2f} | {r['p50_ms'] / r['numpy_p50_ms']:.2f} "
              f"| {r['vs_exact']:.3f} | {r['rank1']:.3f} | {r['bytes_per_face']:.0f} |", flush=True)
        if size == 100_000 or e2e is None:
            e2e = (home, size)
    assert e2e is not None
    print(f"\nsearch_faces_by_image end to end (decode, detect, embed, search; {e2e[1]:,} faces): "
          f"p50 {end_to_end(e2e[0], 'scale', people):.0f} ms")
    rates = bulk_rates([p for _, a, _ in people[:200] for p in (a,)])
    print(f"bulk import, accurate profile, 200 LFW images: 1 worker {rates[1]:.1f} images/s, "
          f"2 workers {rates[2]:.1f} images/s (ratio {rates[2] / rates[1]:.2f})")


if __name__ == "__main__":
    main()
