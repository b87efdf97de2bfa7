"""The quantized copy of a large collection's vectors, in shards scanned in parallel.

Each shard is a faiss ``IndexPQFastScan`` (4 bits for every 4 dimensions) over some of the
collection's rows. A scan runs every shard at once (one in the caller's thread, the others in a
small pool; faiss releases the GIL), so one query uses all cores, and merges the shards'
candidates by their approximate scores: the result is the same candidate list one big index
would give, in about half the time on two cores. Everything here is immutable: growing makes a
new shard object (``faiss.clone_index`` + add) and leaves the old one to running searches.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

TRAIN_SAMPLE = 100_000


def default_shards() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Shard:
    index: Any  # faiss.IndexPQFastScan
    rows: np.ndarray  # int64: the collection row of each code


@dataclass(frozen=True)
class Quantized:
    shards: tuple[Shard, ...]
    count: int  # rows [0, count) are quantized
    trained_on: int  # how many faces the collection had when the codebooks were trained


def train(dim: int, sample: np.ndarray) -> Any:
    """An empty, trained quantizer (the codebooks come from at most 100k sample rows)."""
    import faiss

    index = faiss.IndexPQFastScan(dim, dim // 4, 4, faiss.METRIC_INNER_PRODUCT)
    pick = np.sort(np.random.default_rng(0).permutation(len(sample))[:TRAIN_SAMPLE])
    index.train(np.ascontiguousarray(sample[pick], np.float32))
    return index


def build(template: Any, vectors: np.ndarray, rows: np.ndarray, shards: int, trained_on: int) -> Quantized:
    """``vectors`` (of collection ``rows``) split into ``shards`` equal shards."""
    import faiss

    out = []
    for part in np.array_split(np.arange(len(rows)), max(1, min(shards, len(rows)))):
        index = faiss.clone_index(template)
        index.reset()
        index.add(np.ascontiguousarray(vectors[part], np.float32))
        out.append(Shard(index, np.asarray(rows[part], np.int64)))
    return Quantized(tuple(out), int(rows[-1]) + 1 if len(rows) else 0, trained_on)


def extend(quantized: Quantized, vectors: np.ndarray) -> Quantized:
    """Rows ``[quantized.count, quantized.count + len(vectors))`` added to the smallest shard."""
    import faiss

    which = min(range(len(quantized.shards)), key=lambda i: len(quantized.shards[i].rows))
    old = quantized.shards[which]
    index = faiss.clone_index(old.index)  # running searches keep the old shard
    index.add(np.ascontiguousarray(vectors, np.float32))
    rows = np.concatenate([old.rows, np.arange(quantized.count, quantized.count + len(vectors))])
    shards = quantized.shards[:which] + (Shard(index, rows),) + quantized.shards[which + 1:]
    return Quantized(shards, quantized.count + len(vectors), quantized.trained_on)


def scan(quantized: Quantized, query: np.ndarray, wanted: int, pool: ThreadPoolExecutor | None) -> np.ndarray:
    """The collection rows of the ``wanted`` best candidates by approximate score."""
    query = query[None]

    def one(shard: Shard) -> tuple[np.ndarray, np.ndarray]:
        scores, found = shard.index.search(query, min(wanted, len(shard.rows)))
        keep = found[0] >= 0
        return scores[0][keep], shard.rows[found[0][keep]]

    shards = quantized.shards
    if pool is None or len(shards) == 1:
        parts = [one(s) for s in shards]
    else:
        futures = [pool.submit(one, s) for s in shards[1:]]
        parts = [one(shards[0])] + [f.result() for f in futures]
    if len(parts) == 1:
        return parts[0][1]
    scores, rows = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if len(rows) > wanted:
        rows = rows[np.argpartition(-scores, wanted - 1)[:wanted]]
    return rows


def nbytes(quantized: Quantized) -> int:
    return sum(s.index.codes.size() + s.rows.nbytes for s in quantized.shards)


def to_arrays(quantized: Quantized) -> dict[str, np.ndarray]:
    import faiss

    out = {"quantized_count": np.array(quantized.count), "shards": np.array(len(quantized.shards)),
           "trained_on": np.array(quantized.trained_on)}
    for i, shard in enumerate(quantized.shards):
        out[f"shard_{i}"], out[f"shard_rows_{i}"] = faiss.serialize_index(shard.index), shard.rows
    return out


def from_arrays(arrays: dict[str, np.ndarray], dim: int) -> Quantized | None:
    if "shards" not in arrays:
        return None
    import faiss

    shards = []
    for i in range(int(arrays["shards"])):
        index = faiss.deserialize_index(np.asarray(arrays[f"shard_{i}"], np.uint8))
        rows = np.asarray(arrays[f"shard_rows_{i}"], np.int64)
        if index.d != dim or index.ntotal != len(rows):
            raise ValueError("quantized shard does not match its rows")
        shards.append(Shard(index, rows))
    return Quantized(tuple(shards), int(arrays["quantized_count"]), int(arrays["trained_on"]))
