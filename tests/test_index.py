"""The exact index against plain numpy, through adds, removes and growth."""

from __future__ import annotations

import numpy as np

from faceprint.index import ExactIndex


def test_exact_index_matches_numpy_through_adds_and_removes() -> None:
    rng = np.random.default_rng(7)
    index = ExactIndex(16)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    ids = [f"f{i}" for i in range(3000)]
    for start in range(0, 3000, 700):  # several adds: the buffer grows past its first size
        index.add(ids[start:start + 700], vectors[start:start + 700])
    removed = set(ids[::3])
    index.remove(sorted(removed))
    kept = [i for i, face_id in enumerate(ids) if face_id not in removed]
    assert len(index) == len(kept)
    for query in rng.standard_normal((20, 16)).astype(np.float32):
        scores = vectors[kept] @ query
        expected = [ids[kept[i]] for i in np.argsort(-scores)[:5]]
        found = index.search(query, 5, -1e9)
        assert [f for f, _ in found] == expected
        assert np.allclose([s for _, s in found], np.sort(scores)[::-1][:5], atol=1e-4)
        assert not removed & {f for f, _ in index.search(query, len(ids), -1e9)}


def test_threshold_and_empty() -> None:
    index = ExactIndex(2)
    assert index.search(np.ones(2, np.float32), 3, 0.0) == []
    index.add(["a", "b"], np.array([[1, 0], [0, 1]], np.float32))
    assert [f for f, _ in index.search(np.array([1, 0], np.float32), 5, 0.5)] == ["a"]
