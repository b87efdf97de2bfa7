"""Vector indexes: derived from the store, rebuildable, behind a small interface."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from faceprint.store import CollectionRow


class VectorIndex(Protocol):
    def add(self, ids: list[str], vectors: np.ndarray) -> None: ...
    def remove(self, ids: list[str]) -> None: ...
    def search(self, query: np.ndarray, k: int, min_score: float) -> list[tuple[str, float]]: ...
    def __len__(self) -> int: ...


class Indexes(Protocol):
    """Every collection's index, kept up to date with the store (``faceprint.index.cache``);
    another implementation (e.g. a distributed engine) can be passed to ``Faceprint``."""

    def get(self, row: CollectionRow) -> VectorIndex: ...
    def removed(self, collection_id: str, face_ids: list[str]) -> None: ...
    def drop(self, collection_id: str) -> None: ...
    def save_all(self, min_faces: int = 0, grown_only: bool = False) -> None: ...


class ExactIndex:
    """Exact inner-product search over all vectors (the reference every other index meets).

    Vectors live in a buffer that grows by doubling, so adding faces to a large collection
    costs only the new rows. A search works on a snapshot (buffer, ids, count) taken under the
    lock: an add writes only past the snapshot's rows and a remove builds new arrays, so a
    running search is never disturbed and a removed id is gone from every search that starts
    after ``remove`` returns.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._buffer = np.zeros((0, dim), np.float32)
        self._count = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    @property
    def _matrix(self) -> np.ndarray:
        return self._buffer[: self._count]

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dim)
        with self._lock:
            end = self._count + len(ids)
            if end > len(self._buffer):
                grown = np.zeros((max(end, 2 * len(self._buffer), 1024), self.dim), np.float32)
                grown[: self._count] = self._buffer[: self._count]
                self._buffer = grown
            self._buffer[self._count:end] = vectors
            self._ids.extend(ids)
            self._count = end

    def remove(self, ids: list[str]) -> None:
        gone = set(ids)
        with self._lock:
            keep = [i for i, face_id in enumerate(self._ids[: self._count]) if face_id not in gone]
            if len(keep) == self._count:
                return
            self._ids = [self._ids[i] for i in keep]  # new objects: running searches keep theirs
            self._buffer = self._buffer[keep]
            self._count = len(keep)

    def search(self, query: np.ndarray, k: int, min_score: float) -> list[tuple[str, float]]:
        with self._lock:
            ids, matrix = self._ids, self._buffer[: self._count]
        if not len(matrix) or k <= 0:
            return []
        scores = matrix @ np.asarray(query, np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(ids[i], float(scores[i])) for i in top if scores[i] >= min_score]
