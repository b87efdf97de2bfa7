"""The quantized copy of a large collection's vectors: an inverted file over 4-bit PQ codes.

Each shard is a faiss ``IndexIVFPQFastScan``: the vectors are split among ``lists`` cells by the
nearest of as many centroids (spherical k-means; about ``LIST_SIZE`` faces a cell, at most
``COARSE_LISTS`` cells, and from ``FINE_FROM`` faces finer cells of about ``FINE_LIST_SIZE``, at
most ``MAX_LISTS``), and each is kept as a product-quantized code (4 bits for every 4 dimensions,
1/32 of the float32 size) in its cell's list. A scan looks at the ``probes`` cells whose centroids
are nearest the query (by default a share of them: ``probes_for``), not at every code. Faces' vectors are
not clustered tightly enough for a few cells to hold a probe's mate (a mate at similarity 0.7 is
often in another cell than its probe): measured on synthetic mates, 3% of 1,000 cells find 0.87
of the mates exact search finds, 37% of 256 cells 0.997; so a scan still reads a large share of
the codes, and the gain over reading all of them is bounded (docs/benchmarks.md). Finer cells need
a smaller share for the same recall, which is what makes millions of faces fast.

The centroids (trained in two levels when there are many: ``_centroids``) are held in a small HNSW
graph, the shard's coarse quantizer: adding a face finds its cell through the graph (comparing
millions of faces with thousands of centroids one by one is what kept the cells few before). A
scan does not use the graph: it compares the query with every centroid (``Quantized.centroids``,
one product), takes the nearest cells exactly and hands them to every shard (faiss's
``search_preassigned``). The faiss ids of the codes are the collection's rows. The shards share
their centroids and codebooks (copies of one trained index); a scan runs every shard at once (one
in the caller's thread, the others in a small pool; faiss releases the GIL; each with faiss's own
OpenMP threads, which measured faster on a loaded machine than one thread a shard:
docs/benchmarks.md) and merges their candidates by approximate score: the same candidate list one
big index would give. Everything here is immutable: growing makes a new shard object
(``faiss.clone_index`` + add) and leaves the old one to running searches.

Index files of a previous layout (one flat ``IndexPQFastScan`` a shard, scanning every code; or an
inverted file over a flat list of centroids, before ``LAYOUT`` 2) are not read back as such:
``from_arrays`` answers None and the collection index quantizes again.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

TRAIN_SAMPLE = 100_000
"""The codebooks are trained on at most this many rows, and the centroids on at most
``TRAIN_PER_LIST`` a cell."""
TRAIN_PER_LIST = 64
LIST_SIZE = 4_000
"""Faces a cell holds on average when the centroids are trained (so a centroid is the mean of
thousands of faces: see ``hybrid.ERASE_RETRAIN_BELOW``), up to ``FINE_FROM`` faces."""
FINE_FROM = 2_000_000
"""From this many faces the cells are finer: one a ``FINE_LIST_SIZE`` faces. A share of fine cells
holds a probe's mate more often than the same share of coarse ones (docs/benchmarks.md)."""
FINE_LIST_SIZE = 1_200
COARSE_LISTS = 512
"""At most this many cells of ``LIST_SIZE`` faces (below ``FINE_FROM`` faces)."""
MAX_LISTS = 4_096
"""At most this many cells: a query is compared with every centroid (4 MB of them at 256-d)."""
FINE_SHARE = 0.33
"""The share of fine cells (more than ``COARSE_LISTS``) scanned by default."""
TOP_LISTS = 64
MIN_PER_CELL = 8
"""Above this many cells the centroids are trained in two levels: ``TOP_LISTS`` coarse cells, each
split in proportion to its share of the sample (k-means of thousands of cells at once is hours
on two cores; this, seconds)."""
HNSW_LINKS = 32
HNSW_SEARCH = 128
"""An added face goes to its nearest centroid as a small graph (HNSW) over the centroids finds it
(every face against every centroid is minutes at millions of faces); a query's cells are found
exactly (``scan``)."""
LAYOUT = 2
"""2: the centroids are held in an HNSW graph (``HNSW_LINKS``) and a scan is given its cells.
1 (no ``ivf_layout`` in a file): a flat list of centroids; read as None (quantized again)."""
PROBE_SHARE = 0.5
"""The share of the cells scanned by default (``probes=0``) at ``COARSE_LISTS`` cells; see the module's
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
    if count >= FINE_FROM:
        return int(min(MAX_LISTS, count // FINE_LIST_SIZE))
    return int(min(COARSE_LISTS, max(1, count // LIST_SIZE)))


def probes_for(lists: int, probes: int = 0) -> int:
    """Cells a scan reads: ``probes`` (at most all), or by default a share of them that falls from
    all at ``ALL_CELLS_UP_TO`` cells to ``PROBE_SHARE`` at ``COARSE_LISTS``, and ``FINE_SHARE`` of
    fine cells."""
    if probes > 0:
        return min(lists, probes)
    if lists > COARSE_LISTS:
        return int(np.ceil(lists * FINE_SHARE))
    fewer = min(1.0, max(0.0, (COARSE_LISTS - lists) / (COARSE_LISTS - ALL_CELLS_UP_TO)))
    return max(1, int(np.ceil(lists * (PROBE_SHARE + (1 - PROBE_SHARE) * fewer))))


@dataclass(frozen=True)
class Shard:
    index: Any  # faiss.IndexIVFPQFastScan; its ids are collection rows


@dataclass(frozen=True)
class Quantized:
    shards: tuple[Shard, ...]
    count: int  # rows [0, count) are quantized
    trained_on: int  # how many faces the collection had when the codebooks were trained
    centroids: np.ndarray  # the shards' (shared) cell centroids, float32 (lists, dim)


def train(dim: int, sample: np.ndarray, lists: int | None = None) -> Any:
    """An empty, trained quantizer: ``lists`` cells (by default ``lists_for`` the sample's size),
    centroids from at most ``TRAIN_PER_LIST * lists`` sample rows and codebooks (of the vectors'
    differences from their centroids) from at most ``TRAIN_SAMPLE``."""
    import faiss

    lists = lists or lists_for(len(sample))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.permutation(len(sample))[: max(lists, TRAIN_PER_LIST * lists)])
    centroids = _centroids(np.ascontiguousarray(sample[pick], np.float32), lists)
    index = faiss.index_factory(dim, f"IVF{len(centroids)}_HNSW{HNSW_LINKS},PQ{dim // 4}x4fs",
                                faiss.METRIC_INNER_PRODUCT)
    index.quantizer.add(centroids)
    _searching(index)
    pick = np.sort(rng.permutation(len(sample))[:TRAIN_SAMPLE])
    index.train(np.ascontiguousarray(sample[pick], np.float32))  # the codebooks: the centroids are set
    return index


def _centroids(sample: np.ndarray, lists: int) -> np.ndarray:
    """``lists`` unit centroids of ``sample`` (spherical k-means; in two levels above ``TOP_LISTS``,
    each coarse cell split into at most one cell a ``MIN_PER_CELL`` of its sample rows, so that no
    centroid is one face's vector: there may then be fewer than ``lists``)."""
    if lists <= TOP_LISTS:
        return _kmeans(sample, lists)
    top = _kmeans(sample, TOP_LISTS)
    cell = np.argmax(sample @ top.T, axis=1)
    split = _apportion(np.bincount(cell, minlength=len(top)) // MIN_PER_CELL, lists)
    return np.concatenate([_kmeans(sample[cell == c], int(split[c])) for c in range(len(top)) if split[c]])


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """``total`` (at most ``counts.sum()``) split in proportion to ``counts`` (largest remainders),
    none above its count."""
    total = min(total, int(counts.sum()))
    if total <= 0:
        return np.zeros_like(counts)
    share = counts * total / counts.sum()
    out = np.minimum(np.floor(share).astype(np.int64), counts)
    for c in np.argsort(-(share - out), kind="stable"):
        if out.sum() >= total:
            break
        if out[c] < counts[c]:
            out[c] += 1
    while out.sum() < total:  # rounding met a cell's count: the rest to the largest with room
        out[np.argmax(np.where(out < counts, counts - out, -1))] += 1
    return out


def _kmeans(sample: np.ndarray, k: int) -> np.ndarray:
    import faiss

    kmeans = faiss.Kmeans(sample.shape[1], k, niter=10, spherical=True, seed=1, max_points_per_centroid=256,
                          min_points_per_centroid=1)  # unit vectors; 10 rounds are plenty for cells
    kmeans.train(np.ascontiguousarray(sample, np.float32))
    return kmeans.centroids


def _searching(index: Any) -> Any:
    import faiss

    faiss.downcast_index(index.quantizer).hnsw.efSearch = HNSW_SEARCH
    return index


def _centroids_of(index: Any) -> np.ndarray:
    return np.ascontiguousarray(index.quantizer.reconstruct_n(0, index.nlist), np.float32)


def _filled(template: Any, vectors: np.ndarray, first: int, rows: np.ndarray | None = None) -> Any:
    """A copy of ``template`` (codes dropped) holding ``vectors`` as rows ``first...`` (or ``rows``)."""
    import faiss

    index = _searching(faiss.clone_index(template))
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
    return Quantized(tuple(out), len(vectors), trained_on, _centroids_of(template))


def extend(quantized: Quantized, vectors: np.ndarray) -> Quantized:
    """Rows ``[quantized.count, quantized.count + len(vectors))`` added to the smallest shard."""
    import faiss

    shards = quantized.shards
    which = min(range(len(shards)), key=lambda i: shards[i].index.ntotal)
    index = _searching(faiss.clone_index(shards[which].index))  # running searches keep the old shard
    _add(index, vectors, quantized.count)
    return Quantized(shards[:which] + (Shard(index),) + shards[which + 1:], quantized.count + len(vectors),
                     quantized.trained_on, quantized.centroids)


def scan(quantized: Quantized, query: np.ndarray, wanted: int, pool: ThreadPoolExecutor | None,
         probes: int = 0) -> np.ndarray:
    """The collection rows of the ``wanted`` best candidates by approximate score among the codes
    of the ``probes`` cells nearest ``query`` (0: the default share); of candidates tied at the cut, the lowest rows (so
    that the shards' merged candidates are one index's, whatever order faiss found ties in)."""
    import faiss

    cells, near = _cells(quantized.centroids, query, probes_for(len(quantized.centroids), probes))
    params = faiss.SearchParametersIVF(nprobe=cells.shape[1])
    query = query[None]

    def one(shard: Shard) -> tuple[np.ndarray, np.ndarray]:
        take = max(1, min(wanted + TIES, shard.index.ntotal))
        scores, found = np.empty((1, take), np.float32), np.empty((1, take), np.int64)
        shard.index.search_preassigned_c(1, faiss.swig_ptr(query), take, faiss.swig_ptr(cells),
                                         faiss.swig_ptr(near), faiss.swig_ptr(scores), faiss.swig_ptr(found),
                                         False, params)
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


def _cells(centroids: np.ndarray, query: np.ndarray, probes: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``probes`` cells whose centroids are nearest ``query`` (exactly) and their similarities."""
    near = centroids @ query
    cells = np.argpartition(-near, probes - 1)[:probes] if probes < len(near) else np.arange(len(near))
    return np.ascontiguousarray(cells[None], np.int64), np.ascontiguousarray(near[cells][None], np.float32)


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
    """Bytes of the codes (in faiss's blocks of 32), their ids, each shard's centroids and their
    graph, and the scan's copy of the centroids."""
    total = quantized.centroids.nbytes
    for shard in quantized.shards:
        index = shard.index
        lists = index.invlists
        blocks = sum(-(-lists.list_size(i) // index.bbs) for i in range(index.nlist))
        graph = index.nlist * (index.d * 4 + 2 * HNSW_LINKS * 4 + 16)  # vectors, level-0 links, levels
        total += blocks * index.bbs * index.code_size + index.ntotal * 8 + graph
    return total


def to_arrays(quantized: Quantized) -> dict[str, np.ndarray]:
    import faiss

    out = {"quantized_count": np.array(quantized.count), "ivf_shards": np.array(len(quantized.shards)),
           "trained_on": np.array(quantized.trained_on), "ivf_layout": np.array(LAYOUT)}
    for i, shard in enumerate(quantized.shards):
        out[f"shard_{i}"] = faiss.serialize_index(shard.index)
    return out


def from_arrays(arrays: dict[str, np.ndarray], dim: int) -> Quantized | None:
    """The quantized copy a file holds; None if it holds none, or one of a previous layout (flat
    shards; cells of a flat list of centroids): the caller quantizes the vectors again."""
    if "ivf_shards" not in arrays or int(arrays.get("ivf_layout", 1)) != LAYOUT:
        return None
    import faiss

    shards, count = [], int(arrays["quantized_count"])
    for i in range(int(arrays["ivf_shards"])):
        index = faiss.deserialize_index(np.asarray(arrays[f"shard_{i}"], np.uint8))
        if not isinstance(index, faiss.IndexIVFPQFastScan) or index.d != dim or not isinstance(
                faiss.downcast_index(index.quantizer), faiss.IndexHNSWFlat):
            raise ValueError("quantized shard of another kind")
        shards.append(Shard(_searching(index)))
    if not shards or sum(s.index.ntotal for s in shards) != count:
        raise ValueError("quantized shards do not hold their rows")
    centroids = _centroids_of(shards[0].index)
    if any(not np.array_equal(_centroids_of(s.index), centroids) for s in shards[1:]):
        raise ValueError("quantized shards of different cells")
    return Quantized(tuple(shards), count, int(arrays["trained_on"]), centroids)
