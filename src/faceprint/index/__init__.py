"""Vector indexes: derived from the store, rebuildable, behind a small interface."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    def add(self, ids: list[str], vectors: np.ndarray) -> None: ...
    def remove(self, ids: list[str]) -> None: ...
    def search(self, query: np.ndarray, k: int, min_score: float) -> list[tuple[str, float]]: ...
    def __len__(self) -> int: ...


class ExactIndex:
    """Exact inner-product search over all vectors (the reference every other index meets).

    Readers and the writer share one lock; a removed id is gone from every search that
    starts after ``remove`` returns.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._matrix = np.zeros((0, dim), np.float32)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dim)
        with self._lock:
            self._ids = self._ids + list(ids)
            self._matrix = np.concatenate([self._matrix, vectors])

    def remove(self, ids: list[str]) -> None:
        gone = set(ids)
        with self._lock:
            keep = [i for i, face_id in enumerate(self._ids) if face_id not in gone]
            self._ids = [self._ids[i] for i in keep]
            self._matrix = self._matrix[keep]

    def search(self, query: np.ndarray, k: int, min_score: float) -> list[tuple[str, float]]:
        with self._lock:
            ids, matrix = self._ids, self._matrix
        if not ids or k <= 0:
            return []
        scores = matrix @ np.asarray(query, np.float32)
        k = min(k, len(ids))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(ids[i], float(scores[i])) for i in top if scores[i] >= min_score]
