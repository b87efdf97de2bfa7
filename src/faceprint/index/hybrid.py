"""The collection index: exact while that is fast, then quantized candidates re-ranked exactly.

Below ``exact_below`` faces every search scans all vectors (the reference). From there on a
product-quantized copy of the vectors (faiss ``IndexPQFastScan``: 4 bits for every 4
dimensions, 1/32 of the float32 size) is scanned in full, which is a few times faster than the
exact scan and never depends on a graph being navigable, and the best ``rerank`` candidates are
then scored exactly against the float32 vectors. Faces added since the quantized copy was last
extended (at most ``tail_limit``) are scanned exactly. So every returned score is exact; only
the candidate list is approximate (benchmarks/search_scale.py measures its recall).

Concurrency: one writer at a time (``add``/``remove`` hold a lock); searches take no lock. A
search reads one immutable ``_State``; an add writes only past that state's rows, a remove
clears flags in ``alive`` before it returns, so a deleted face is gone from every search that
starts afterwards, and a compaction builds new arrays.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

EXACT_BELOW = 50_000
"""Collections smaller than this are searched exactly (about 1 ms a query here)."""
TAIL_LIMIT = 10_000
"""New faces are scanned exactly until this many wait, then quantized in one step."""
RERANK = 1000
"""Quantized candidates scored exactly per search (at least twice the faces asked for)."""


@dataclass(frozen=True)
class _State:
    vectors: np.ndarray  # float32 buffer, rows [0, count) used
    alive: np.ndarray  # bool buffer: False once a face is removed
    ids: list[str]
    count: int
    dead: int = 0
    coded: Any = None  # faiss index over rows [0, coded_count), or None while exact
    coded_count: int = 0


class CollectionIndex:
    """A collection's faces for inner-product search (see the module's docstring)."""

    def __init__(self, dim: int, *, exact_below: int = EXACT_BELOW, tail_limit: int = TAIL_LIMIT,
                 rerank: int = RERANK) -> None:
        self.dim = dim
        self.exact_below, self.tail_limit, self.rerank = exact_below, tail_limit, rerank
        self._state = _State(np.zeros((0, dim), np.float32), np.zeros(0, bool), [], 0)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        state = self._state
        return state.count - state.dead

    @property
    def quantized(self) -> bool:
        return self._state.coded is not None

    # -- writes ------------------------------------------------------------------------------
    def add(self, ids: list[str], vectors: np.ndarray) -> None:
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
            buffer[state.count:end] = vectors
            alive[state.count:end] = True
            state.ids.extend(ids)  # readers only look at the first ``count`` ids
            self._state = self._quantize(replace(state, vectors=buffer, alive=alive, count=end))

    def remove(self, ids: list[str]) -> None:
        gone = set(ids)
        with self._lock:
            state = self._state
            rows = [i for i, face_id in enumerate(state.ids[: state.count]) if face_id in gone and state.alive[i]]
            if not rows:
                return
            state.alive[rows] = False  # every search from now on skips them
            state = replace(state, dead=state.dead + len(rows))
            if state.coded is None or state.dead > state.count // 10:
                state = self._compact(state)
            self._state = state

    def _quantize(self, state: _State) -> _State:
        """Quantize new rows once the collection is large or enough rows wait in the tail."""
        if state.coded is None:
            if state.count - state.dead < self.exact_below:
                return state
            coded = self._train(state.vectors[: state.count][state.alive[: state.count]])
        elif state.count - state.coded_count >= self.tail_limit:
            import faiss

            coded = faiss.clone_index(state.coded)  # running searches keep the old one
        else:
            return state
        coded.add(np.ascontiguousarray(state.vectors[coded.ntotal: state.count]))
        return replace(state, coded=coded, coded_count=state.count)

    def _train(self, sample: np.ndarray) -> Any:
        import faiss

        coded = faiss.IndexPQFastScan(self.dim, self.dim // 4, 4, faiss.METRIC_INNER_PRODUCT)
        pick = np.random.default_rng(0).permutation(len(sample))[:100_000]
        coded.train(np.ascontiguousarray(sample[np.sort(pick)]))
        return coded

    def _compact(self, state: _State) -> _State:
        """New arrays without the removed rows; the quantizer keeps its trained codebooks."""
        keep = np.flatnonzero(state.alive[: state.count])
        vectors = state.vectors[keep]
        fresh = _State(vectors, np.ones(len(keep), bool), [state.ids[i] for i in keep], len(keep))
        if state.coded is None:
            return fresh
        import faiss

        coded = faiss.clone_index(state.coded)
        coded.reset()
        coded.add(np.ascontiguousarray(vectors))
        return replace(fresh, coded=coded, coded_count=len(keep))

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
        if state.coded is None:
            return None
        wanted = max(self.rerank, 2 * k) * state.count // (state.count - state.dead)  # dead rows take slots
        wanted = min(wanted, state.coded_count)
        _, found = state.coded.search(query[None], wanted)
        found = found[0]
        return np.concatenate([found[found >= 0], np.arange(state.coded_count, state.count)])

    def memory_bytes(self) -> int:
        """Bytes held for the faces: vectors, flags, ids and the quantized codes."""
        state = self._state
        ids = sys.getsizeof(state.ids) + sum(sys.getsizeof(i) for i in state.ids[: state.count])
        codes = state.coded.codes.size() if state.coded is not None else 0
        return state.vectors.nbytes + state.alive.nbytes + ids + codes

    # -- persistence -------------------------------------------------------------------------
    def frozen(self) -> _State:
        """The current state, unaffected by later removes (for saving while searches go on)."""
        state = self._state
        return replace(state, alive=state.alive[: state.count].copy())

    @staticmethod
    def arrays(state: _State) -> dict[str, np.ndarray]:
        """A state as plain arrays (for ``index.files``)."""
        out = {"vectors": state.vectors[: state.count], "alive": state.alive[: state.count],
               "ids": np.array(state.ids[: state.count], dtype="S36"),
               "coded_count": np.array(state.coded_count)}
        if state.coded is not None:
            import faiss

            out["coded"] = faiss.serialize_index(state.coded)
        return out

    @classmethod
    def from_arrays(cls, dim: int, arrays: dict[str, np.ndarray], **settings: int) -> CollectionIndex:
        index = cls(dim, **settings)
        vectors = np.ascontiguousarray(arrays["vectors"], np.float32).reshape(-1, dim)
        alive = np.asarray(arrays["alive"], bool).copy()
        ids = [i.decode() for i in arrays["ids"].tolist()]
        if not len(vectors) == len(alive) == len(ids):
            raise ValueError("index arrays disagree in length")
        coded, coded_count = None, int(arrays["coded_count"])
        if "coded" in arrays:
            import faiss

            coded = faiss.deserialize_index(np.asarray(arrays["coded"], np.uint8))
            if coded.ntotal != coded_count or coded.d != dim:
                raise ValueError("quantized index does not match its vectors")
        index._state = _State(vectors, alive, ids, len(ids), int((~alive).sum()), coded, coded_count)
        return index

    def keep_only(self, live: set[str]) -> None:
        """Remove every face not in ``live`` (after deletes made while the index was not loaded)."""
        state = self._state
        self.remove([face_id for face_id in state.ids[: state.count] if face_id not in live])


def _grown(buffer: np.ndarray, used: int, size: int) -> np.ndarray:
    grown = np.zeros((size, *buffer.shape[1:]), buffer.dtype)
    grown[:used] = buffer[:used]
    return grown
