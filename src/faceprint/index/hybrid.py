"""The collection index: exact while that is fast, then quantized candidates re-ranked exactly.

Below ``exact_below`` faces every search scans all vectors (the reference). From there on a
product-quantized copy of the vectors (``index.quantized``: an inverted file over faiss
4-bit fast-scan PQ codes, 1/32 of the float32 size, in shards scanned on all cores) is scanned in
the ``probes`` cells nearest the query, which is many times faster than the exact scan, grows
with the size of a cell rather than of the collection, and never depends on a graph being
navigable; the best ``rerank`` candidates are then scored exactly against the float32
vectors. Faces added since the quantized copy was last
extended (at most ``tail_limit``) are scanned exactly. So every returned score is exact; only
the candidate list is approximate (benchmarks/search_scale.py measures its recall).

Concurrency: one writer at a time (``add``/``remove`` hold a lock); searches take no lock (but
once, to start the scan pool). A
search reads one immutable ``_State``; an add writes only past that state's rows, a remove
clears flags in ``alive`` before it returns, so a deleted face is gone from every search that
starts afterwards, and a compaction builds new arrays.
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from faceprint.index import quantized as pq

log = logging.getLogger(__name__)

EXACT_BELOW = 20_000
"""Collections smaller than this are searched exactly (under 1 ms a query here)."""
TAIL_LIMIT = 10_000
"""New faces are scanned exactly until this many wait, then quantized in one step."""
RETRAIN_GROWTH = 10
"""The codebooks are trained again once the collection is this many times the size they were
trained at (so a collection grown live is not left with codebooks of its first faces)."""
ERASE_RETRAIN_BELOW = EXACT_BELOW
"""Codebooks trained on fewer faces than this are trained again (on the kept faces only) when removed
faces are compacted away: with 16 centroids per 4 dimensions, a centroid trained on few faces can be
one face's piece. Trained on more, a centroid is the mean of over a thousand faces' pieces on average;
those codebooks are kept until the collection grows tenfold (``RETRAIN_GROWTH``)."""
RERANK = 1000
"""Quantized candidates scored exactly per search (at least twice the faces asked for). With half
the inverted file's cells scanned, 1000 finds the mate exact search finds for 0.9998 of probes at
5M faces (search_scale.py's synthetic mates; docs/benchmarks.md, "The embedded index at 5M faces")."""
PROBES = 0
"""Cells of the inverted file scanned a query; 0: ``quantized.probes_for``'s default share of them."""


@dataclass(frozen=True)
class _State:
    vectors: np.ndarray  # float32 buffer, rows [0, count) used
    alive: np.ndarray  # bool buffer: False once a face is removed
    ids: list[str]
    count: int
    dead: int = 0
    quantized: pq.Quantized | None = None  # rows [0, quantized.count), or None while exact


class CollectionIndex:
    """A collection's faces for inner-product search (see the module's docstring)."""

    def __init__(self, dim: int, *, exact_below: int = EXACT_BELOW, tail_limit: int = TAIL_LIMIT,
                 rerank: int = RERANK, shards: int = 0, probes: int = PROBES) -> None:
        self.dim = dim
        self.exact_below, self.tail_limit, self.rerank, self.probes = exact_below, tail_limit, rerank, probes
        self.shards = shards or pq.default_shards()
        self._state = _State(np.zeros((0, dim), np.float32), np.zeros(0, bool), [], 0)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        state = self._state
        return state.count - state.dead

    @property
    def quantized(self) -> bool:
        return self._state.quantized is not None

    # -- writes ------------------------------------------------------------------------------
    def add(self, ids: list[str], vectors: np.ndarray, quantize: bool = True) -> None:
        """Add faces: all of them, or (if this raises) none. ``quantize=False`` leaves them in
        the exact tail for a later ``quantize()`` (when a large catch-up comes in batches)."""
        if not ids:
            return
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dim)
        with self._lock:
            state = self._state
            end = state.count + len(ids)
            buffer, alive = state.vectors, state.alive
            if end > len(buffer):
                size = max(end, len(buffer) * 5 // 4, 1024)  # modest growth: a million rows is 1 GB
                buffer, alive = _grown(buffer, state.count, size), _grown(alive, state.count, size)
            buffer[state.count:end] = vectors  # past ``count``: no reader looks there yet
            alive[state.count:end] = True
            grown = replace(state, vectors=buffer, alive=alive, count=end)
            grown = self._quantize(grown) if quantize else grown
            state.ids.extend(ids)  # readers only look at the first ``count`` ids
            self._state = grown

    def reserve(self, more: int) -> None:
        """Room for ``more`` faces, so that adding them copies nothing."""
        with self._lock:
            state = self._state
            rows = state.count + more
            if rows > len(state.vectors):
                self._state = replace(state, vectors=_grown(state.vectors, state.count, rows),
                                      alive=_grown(state.alive, state.count, rows))

    def quantize(self) -> None:
        with self._lock:
            self._state = self._quantize(self._state)

    def remove(self, ids: list[str]) -> None:
        gone = set(ids)
        with self._lock:
            state = self._state
            rows = [i for i, face_id in enumerate(state.ids[: state.count]) if face_id in gone and state.alive[i]]
            if not rows:
                return
            state.alive[rows] = False  # every search from now on skips them
            state = replace(state, dead=state.dead + len(rows))
            if state.quantized is None or state.dead > state.count // 10:
                state = self._compact(state)
            self._state = state

    def _quantize(self, state: _State) -> _State:
        """Quantize new rows once the collection is large or enough rows wait in the tail; train
        the codebooks again when the collection has grown tenfold since they were trained. If
        quantizing fails (e.g. out of memory), the rows stay in the exact tail for now."""
        live = state.count - state.dead
        quantized = state.quantized
        try:
            if quantized is None and live >= self.exact_below or (
                    quantized is not None and live >= RETRAIN_GROWTH * quantized.trained_on):
                vectors = state.vectors[: state.count]
                template = pq.train(self.dim, vectors[state.alive[: state.count]] if state.dead else vectors)
                quantized = pq.build(template, vectors, self.shards, trained_on=live)
            elif quantized is not None and state.count - quantized.count >= self.tail_limit:
                quantized = pq.extend(quantized, state.vectors[quantized.count: state.count])
        except (MemoryError, RuntimeError) as error:
            log.warning("could not quantize %d faces (%s); they are searched exactly meanwhile", live, error)
        return replace(state, quantized=quantized)

    def _compact(self, state: _State) -> _State:
        """New arrays without the removed rows. Below ``exact_below`` faces the index is exact again
        (no codebooks); codebooks trained on fewer than ``ERASE_RETRAIN_BELOW`` faces are trained
        again on the kept faces (a centroid of so few may be a removed face's piece, or the mean of
        a handful); larger ones keep theirs."""
        keep = np.flatnonzero(state.alive[: state.count])
        vectors = state.vectors[keep]
        fresh = _State(vectors, np.ones(len(keep), bool), [state.ids[i] for i in keep], len(keep))
        if state.quantized is None or len(keep) < max(1, self.exact_below):
            return fresh
        template, trained_on = state.quantized.shards[0].index, state.quantized.trained_on
        if trained_on < ERASE_RETRAIN_BELOW:
            template, trained_on = pq.train(self.dim, vectors), len(keep)
        return replace(fresh, quantized=pq.build(template, vectors, self.shards, trained_on=trained_on))

    # -- reads -------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, min_score: float) -> list[tuple[str, float]]:
        state = self._state
        if state.count - state.dead <= 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query, np.float32).reshape(self.dim)
        rows = self._candidates(state, query, k)
        if rows is None:
            rows, scores = np.arange(state.count), state.vectors[: state.count] @ query
        else:
            scores = state.vectors[rows] @ query
        if state.dead:
            live = state.alive[rows]
            rows, scores = rows[live], scores[live]
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[scores[top] >= min_score]
        ids = state.ids
        return [(ids[row], score) for row, score in zip(rows[top].tolist(), scores[top].tolist(), strict=True)]

    def _candidates(self, state: _State, query: np.ndarray, k: int) -> np.ndarray | None:
        """Rows to score exactly, or None for all of them."""
        if state.quantized is None:
            return None
        wanted = max(self.rerank, 2 * k) * state.count // (state.count - state.dead)  # dead rows take slots
        if self._pool is None and len(state.quantized.shards) > 1:
            with self._lock:
                self._pool = self._pool or ThreadPoolExecutor(len(state.quantized.shards) - 1,
                                                              thread_name_prefix="fp-index-scan")
        found = pq.scan(state.quantized, query, wanted, self._pool, self.probes)
        return np.concatenate([found, np.arange(state.quantized.count, state.count)])

    def memory_bytes(self) -> int:
        """Bytes held for the faces: vectors, flags, ids and the quantized codes."""
        state = self._state
        ids = sys.getsizeof(state.ids) + sum(sys.getsizeof(i) for i in state.ids[: state.count])
        codes = pq.nbytes(state.quantized) if state.quantized is not None else 0
        return state.vectors.nbytes + state.alive.nbytes + ids + codes

    # -- persistence -------------------------------------------------------------------------
    def frozen(self) -> _State:
        """The current state, unaffected by later removes (for saving while searches go on)."""
        state = self._state
        return replace(state, alive=state.alive[: state.count].copy())

    def compacted(self, state: _State) -> _State:
        """``state`` (from ``frozen``) without the rows of removed faces, so that a file written
        from it holds no deleted face: new arrays, codes encoded again with the trained codebooks
        (seconds at 1M faces: call it outside any lock searches wait for). ``state`` if none."""
        return self._compact(state) if state.dead else state

    @staticmethod
    def arrays(state: _State) -> dict[str, np.ndarray]:
        """A state as plain arrays (for ``index.files``)."""
        out = {"vectors": state.vectors[: state.count], "alive": state.alive[: state.count],
               "ids": np.array(state.ids[: state.count], dtype="S")}  # as wide as the longest id
        if state.quantized is not None:
            out.update(pq.to_arrays(state.quantized))
        return out

    @classmethod
    def from_arrays(cls, dim: int, arrays: dict[str, np.ndarray], **settings: int) -> CollectionIndex:
        index = cls(dim, **settings)
        vectors = np.ascontiguousarray(arrays["vectors"], np.float32).reshape(-1, dim)
        alive = np.asarray(arrays["alive"], bool).copy()
        ids = [i.decode() for i in arrays["ids"].tolist()]
        if not len(vectors) == len(alive) == len(ids):
            raise ValueError("index arrays disagree in length")
        quantized = pq.from_arrays(arrays, dim)
        if quantized is not None and quantized.count > len(ids):
            raise ValueError("quantized rows past the vectors")
        index._state = _State(vectors, alive, ids, len(ids), int((~alive).sum()), quantized)
        if quantized is None:  # small, or a file of the flat layout: quantized (again) if large
            index.quantize()
        return index

    def keep_only(self, live: set[str]) -> None:
        """Remove every face not in ``live`` (after deletes made while the index was not loaded)."""
        state = self._state
        self.remove([face_id for face_id in state.ids[: state.count] if face_id not in live])


def _grown(buffer: np.ndarray, used: int, size: int) -> np.ndarray:
    grown = np.zeros((size, *buffer.shape[1:]), buffer.dtype)
    grown[:used] = buffer[:used]
    return grown
