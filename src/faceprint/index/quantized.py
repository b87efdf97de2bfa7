"""The quantized copy of a large collection's vectors: an inverted file over 4-bit PQ codes.

Each shard is a faiss ``IndexIVFPQFastScan``: the vectors are split among ``lists`` cells by the
nearest of as many centroids (spherical k-means, about ``LIST_SIZE`` faces a cell, at most
``MAX_LISTS`` cells), and each is kept as a product-quantized code (4 bits for every 4 dimensions,
1/32 of the float32 size) in its cell's list. A scan looks at the ``probes`` cells whose centroids
are nearest the query (by default a share of them: ``probes_for``), not at every code. Faces' vectors are
not clustered tightly enough for a few cells to hold a probe's mate (a mate at similarity 0.7 is
often in another cell than its probe): measured on synthetic mates, 3% of 1,000 cells find 0.87
of the mates exact search finds, 37% of 256 cells 0.997; so a scan still reads a large share of
the codes, and the gain over reading all of them is bounded (docs/benchmarks.md). The faiss ids of
the codes are the collection's rows. The shards share their centroids and codebooks (copies of one
trained index); a scan runs every shard at once (one in the caller's thread, the others in a small
pool; faiss releases the GIL; each with faiss's own OpenMP threads, which measured faster on a loaded
machine than one thread a shard: docs/benchmarks.md) and merges their candidates by approximate
score: the same candidate list one big index would give. Everything here is immutable: growing makes a new shard object
(``faiss.clone_index`` + add) and leaves the old one to running searches.

Index files of the previous layout (one flat ``IndexPQFastScan`` a shard, scanning every code) are
not read back as such: ``from_arrays`` answers None and the collection index quantizes again.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

TRAIN_SAMPLE = 100_000
"""The codebooks are trained on at most this many rows, and the centroids on at most
``TRAIN_PER_LIST`` a cell (faiss samples 256 a cell anyway)."""
TRAIN_PER_LIST = 64
LIST_SIZE = 4_000
"""Faces a cell holds on average when the centroids are trained (so a centroid is the mean of
thousands of faces: see ``hybrid.ERASE_RETRAIN_BELOW``)."""
MAX_LISTS = 512
"""At most this many cells: every added face is compared with every centroid (at 5M faces and
512 cells, minutes on two cores), and a larger share of fewer, larger cells is scanned."""
PROBE_SHARE = 0.5
"""The share of the cells scanned by default (``probes=0``) at ``MAX_LISTS`` cells; see the module's
docstring. Fewer, larger cells hold a probe's mate less often in the same share (search_scale.py's
synthetic mates at 30,000 faces: 4 of 7 cells found 0.973 of the mates exact search finds, 6 of 7
0.998), so the share rises to every cell at ``ALL_CELLS_UP_TO`` cells and below."""
ALL_CELLS_UP_TO = 128
"""Up to this many cells (512,000 faces) every cell is scanned: the flat scan of the codes, about a
millisecond on a quiet machine."""
TIES = 64
"""Candidates asked of each shard beyond those wanted, so that ties at the cut (fast-scan scores are
coarse) are settled the same way however the rows are sharded."""
ADD_BLOCK = 65_536
"""Rows encoded at a time (bounded memory while quantizing millions of faces)."""


def default_shards() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def lists_for(count: int) -> int:
    return int(min(MAX_LISTS, max(1, count // LIST_SIZE)))


def probes_for(lists: int, probes: int = 0) -> int:
    """Cells a scan reads: ``probes`` (at most all), or by default a share of them that falls from
    all at ``ALL_CELLS_UP_TO`` cells to ``PROBE_SHARE`` at ``MAX_LISTS``."""
    if probes > 0:
        return min(lists, probes)
    fewer = min(1.0, max(0.0, (MAX_LISTS - lists) / (MAX_LISTS - ALL_CELLS_UP_TO)))
    return max(1, int(np.ceil(lists * (PROBE_SHARE + (1 - PROBE_SHARE) * fewer))))


@dataclass(frozen=True)
class Shard:
    index: Any  # faiss.IndexIVFPQFastScan; its ids are collection rows


@dataclass(frozen=True)
class Quantized:
    shards: tuple[Shard, ...]
    count: int  # rows [0, count) are quantized
    trained_on: int  # how many faces the collection had when the codebooks were trained


def train(dim: int, sample: np.ndarray, lists: int | None = None) -> Any:
    """An empty, trained quantizer: ``lists`` cells (by default one a ``LIST_SIZE`` sample rows),
    centroids and codebooks from at most ``max(TRAIN_SAMPLE, TRAIN_PER_LIST * lists)`` sample rows."""
    import faiss

    lists = lists or lists_for(len(sample))
    index = faiss.index_factory(dim, f"IVF{lists},PQ{dim // 4}x4fs", faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical, index.cp.niter = True, 10  # unit vectors; 10 rounds are plenty for cells
    take = max(TRAIN_SAMPLE, TRAIN_PER_LIST * lists)
    pick = np.sort(np.random.default_rng(0).permutation(len(sample))[:take])
    index.train(np.ascontiguousarray(sample[pick], np.float32))
    return index


def _filled(template: Any, vectors: np.ndarray, first: int, rows: np.ndarray | None = None) -> Any:
    """A copy of ``template`` (codes dropped) holding ``vectors`` as rows ``first...`` (or ``rows``)."""
    import faiss

    index = faiss.clone_index(template)
    index.reset()
    _add(index, vectors, first, rows)
    return index


def _add(index: Any, vectors: np.ndarray, first: int, rows: np.ndarray | None = None) -> None:
    for start in range(0, len(vectors), ADD_BLOCK):
        block = np.ascontiguousarray(vectors[start:start + ADD_BLOCK], np.float32)
        ids = (np.arange(first + start, first + start + len(block), dtype=np.int64) if rows is None
               else np.ascontiguousarray(rows[start:start + ADD_BLOCK], np.int64))
        index.add_with_ids(block, ids)


def build(template: Any, vectors: np.ndarray, shards: int, trained_on: int) -> Quantized:
    """Rows ``[0, len(vectors))`` split into ``shards`` shards of consecutive rows."""
    out = []
    for part in np.array_split(np.arange(len(vectors)), max(1, min(shards, len(vectors)))):
        first = int(part[0]) if len(part) else 0
        out.append(Shard(_filled(template, vectors[first:first + len(part)], first)))
    return Quantized(tuple(out), len(vectors), trained_on)


def extend(quantized: Quantized, vectors: np.ndarray) -> Quantized:
    """Rows ``[quantized.count, quantized.count + len(vectors))`` added to the smallest shard."""
    import faiss

    shards = quantized.shards
    which = min(range(len(shards)), key=lambda i: shards[i].index.ntotal)
    index = faiss.clone_index(shards[which].index)  # running searches keep the old shard
    _add(index, vectors, quantized.count)
    return Quantized(shards[:which] + (Shard(index),) + shards[which + 1:], quantized.count + len(vectors),
                     quantized.trained_on)


def scan(quantized: Quantized, query: np.ndarray, wanted: int, pool: ThreadPoolExecutor | None,
         probes: int = 0) -> np.ndarray:
    """The collection rows of the ``wanted`` best candidates by approximate score among the codes
    of the ``probes`` cells nearest ``query`` (0: the default share); of candidates tied at the cut, the lowest rows (so
    that the shards' merged candidates are one index's, whatever order faiss found ties in)."""
    import faiss

    query = query[None]

    def one(shard: Shard) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersIVF(nprobe=probes_for(shard.index.nlist, probes))
        take = max(1, min(wanted + TIES, shard.index.ntotal))
        scores, found = shard.index.search(query, take, params=params)
        keep = found[0] >= 0
        return scores[0][keep], found[0][keep]

    shards = quantized.shards
    if pool is None or len(shards) == 1:
        parts = [one(s) for s in shards]
    else:
        futures = [pool.submit(one, s) for s in shards[1:]]
        parts = [one(shards[0])] + [f.result() for f in futures]
    scores, rows = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _best(scores, rows, wanted)


def _best(scores: np.ndarray, rows: np.ndarray, wanted: int) -> np.ndarray:
    """``rows`` of the ``wanted`` highest ``scores``; of those tied at the cut, the lowest rows."""
    if len(rows) <= wanted:
        return rows
    cut = -np.partition(-scores, wanted - 1)[wanted - 1]
    above = scores > cut
    tied = np.flatnonzero(scores == cut)
    tied = tied[np.argsort(rows[tied], kind="stable")[: wanted - int(above.sum())]]
    return np.concatenate([rows[above], rows[tied]])


def nbytes(quantized: Quantized) -> int:
    """Bytes of the codes (in faiss's blocks of 32), their ids and each shard's centroids."""
    total = 0
    for shard in quantized.shards:
        index = shard.index
        lists = index.invlists
        blocks = sum(-(-lists.list_size(i) // index.bbs) for i in range(index.nlist))
        total += blocks * index.bbs * index.code_size + index.ntotal * 8 + index.nlist * index.d * 4
    return total


def to_arrays(quantized: Quantized) -> dict[str, np.ndarray]:
    import faiss

    out = {"quantized_count": np.array(quantized.count), "ivf_shards": np.array(len(quantized.shards)),
           "trained_on": np.array(quantized.trained_on)}
    for i, shard in enumerate(quantized.shards):
        out[f"shard_{i}"] = faiss.serialize_index(shard.index)
    return out


def from_arrays(arrays: dict[str, np.ndarray], dim: int) -> Quantized | None:
    """The quantized copy a file holds; None if it holds none, or one of the previous (flat) layout."""
    if "ivf_shards" not in arrays:
        return None
    import faiss

    shards, count = [], int(arrays["quantized_count"])
    for i in range(int(arrays["ivf_shards"])):
        index = faiss.deserialize_index(np.asarray(arrays[f"shard_{i}"], np.uint8))
        if not isinstance(index, faiss.IndexIVFPQFastScan) or index.d != dim:
            raise ValueError("quantized shard of another kind")
        shards.append(Shard(index))
    if sum(s.index.ntotal for s in shards) != count:
        raise ValueError("quantized shards do not hold their rows")
    return Quantized(tuple(shards), count, int(arrays["trained_on"]))
