"""The inverted file over the quantized codes: cells, probes, its files, and files of the flat layout."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from faceprint.index import files
from faceprint.index import quantized as pq
from faceprint.index.hybrid import CollectionIndex

SETTINGS = {"exact_below": 2000, "tail_limit": 500, "rerank": 100, "shards": 2}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def faces() -> tuple[list[str], np.ndarray, np.ndarray]:
    """8,000 vectors in 40 clusters (as faces of many people are), and queries near the first 200."""
    rng = np.random.default_rng(11)
    centres = unit(rng.standard_normal((40, 64)))
    vectors = unit(centres[rng.integers(0, 40, 8000)] + 0.5 * unit(rng.standard_normal((8000, 64))))
    queries = unit(vectors[:200] + 0.01 * rng.standard_normal((200, 64)))
    return [str(uuid.UUID(int=i)) for i in range(8000)], vectors, queries


@pytest.fixture(scope="module")
def index(faces) -> CollectionIndex:
    ids, vectors, _ = faces
    built = CollectionIndex(64, **SETTINGS)
    built.add(ids, vectors)
    return built


def test_cells_follow_the_collection_size() -> None:
    assert pq.lists_for(10) == 1 and pq.lists_for(1_000_000) == 250 and pq.lists_for(5_000_000) == pq.MAX_LISTS
    assert pq.probes_for(250, 300) == 250 and pq.probes_for(250, 10) == 10 and pq.probes_for(1) == 1
    assert pq.probes_for(7) == 7 and pq.probes_for(pq.ALL_CELLS_UP_TO) == pq.ALL_CELLS_UP_TO  # few cells: all
    assert pq.probes_for(pq.MAX_LISTS) == pq.MAX_LISTS // 2  # the most cells: half of them
    shares = [pq.probes_for(n) / n for n in range(pq.ALL_CELLS_UP_TO, pq.MAX_LISTS + 1, 16)]
    assert shares == sorted(shares, reverse=True) and 0.7 < pq.probes_for(250) / 250 < 0.9


def test_a_query_scans_only_the_cells_nearest_it(faces) -> None:
    import faiss

    ids, vectors, queries = faces
    pq.LIST_SIZE, saved = 200, pq.LIST_SIZE  # 40 cells for 8,000 faces
    try:
        cells = CollectionIndex(64, **{**SETTINGS, "shards": 1})
        cells.add(ids, vectors)
    finally:
        pq.LIST_SIZE = saved
    shard = cells._state.quantized.shards[0].index
    assert shard.nlist == 40 and shard.ntotal == 8000
    lists = shard.invlists
    for query in queries[:20]:
        _, nearest = shard.quantizer.search(query[None], 2)
        members = {int(i) for cell in nearest[0].tolist()
                   for i in faiss.rev_swig_ptr(lists.get_ids(cell), lists.list_size(cell))}
        found = pq.scan(cells._state.quantized, query, 50, None, probes=2)
        assert len(found) and set(found.tolist()) <= members  # nothing from the other 38 cells
    every = [cells.search(q, 1, -1.0)[0][0] for q in queries]
    cells.probes = 1
    few = [cells.search(q, 1, -1.0)[0][0] for q in queries]
    assert every == ids[:200] and sum(a == b for a, b in zip(few, ids[:200], strict=True)) >= 190


def test_with_few_cells_the_default_scan_finds_what_the_flat_scan_finds() -> None:
    """Unclustered vectors (as faces are, in the large) and probes only loosely like their mates: with
    7 cells, half of them miss mates that another cell holds; the default scans all 7."""
    rng = np.random.default_rng(5)
    vectors = unit(rng.standard_normal((8000, 64)))
    queries = unit(0.6 * vectors[:300] + 0.8 * unit(rng.standard_normal((300, 64))))
    pq.LIST_SIZE, saved = 1100, pq.LIST_SIZE  # 7 cells for 8,000 faces
    try:
        cells = CollectionIndex(64, **SETTINGS)
        cells.add([str(uuid.UUID(int=i)) for i in range(8000)], vectors)
    finally:
        pq.LIST_SIZE = saved
    assert cells._state.quantized.shards[0].index.nlist == 7
    default = [cells.search(q, 1, -1.0)[0][0] for q in queries]
    cells.probes = 7
    every = [cells.search(q, 1, -1.0)[0][0] for q in queries]
    cells.probes = 4
    half = [cells.search(q, 1, -1.0)[0][0] for q in queries]
    assert default == every and half != every  # the old default (half the cells) lost some


def test_the_quantized_copy_is_an_inverted_file_with_exact_scores(faces, index) -> None:
    ids, vectors, queries = faces
    shards = index._state.quantized.shards
    assert len(shards) == 2 and all(s.index.nlist == pq.lists_for(8000) for s in shards)
    default = [index.search(query, 5, -1.0) for query in queries]  # the default share of the cells
    assert sum(found[0][0] == ids[i] for i, found in enumerate(default)) >= 190
    index.probes = shards[0].index.nlist  # every cell: the flat scan
    try:
        for i, query in enumerate(queries):
            found = index.search(query, 5, -1.0)
            assert found[0][0] == ids[i]
            rows = [int(uuid.UUID(f)) for f, _ in found + default[i]]
            assert np.allclose([s for _, s in found + default[i]], vectors[rows] @ query, atol=1e-5)  # exact
    finally:
        index.probes = 0


def test_an_index_file_reopens_with_the_same_results(tmp_path, faces, index) -> None:
    _, _, queries = faces
    path = tmp_path / "c.fpindex"
    files.save(path, CollectionIndex.arrays(index.frozen()), {"dim": 64, "created": 1.0, "writes": 1, "deletes": 0,
                                                               "max_seq": 8000})
    loaded = files.load(path, 64, **SETTINGS)
    assert loaded is not None and loaded[1]["format"] == files.FORMAT
    again = loaded[0]
    assert again.quantized and [s.index.nlist for s in again._state.quantized.shards] == [
        s.index.nlist for s in index._state.quantized.shards]
    for query in queries[:50]:
        assert again.search(query, 10, -1.0) == index.search(query, 10, -1.0)


def flat_layout_file(path, index: CollectionIndex, meta: dict) -> None:
    """The file faceprint wrote before the inverted file (format 3: flat ``IndexPQFastScan`` shards)."""
    import faiss

    state = index.frozen()
    vectors = state.vectors[: state.count]
    flat = faiss.IndexPQFastScan(index.dim, index.dim // 4, 4, faiss.METRIC_INNER_PRODUCT)
    flat.train(vectors)
    flat.add(vectors)
    arrays = {"vectors": vectors, "alive": state.alive[: state.count],
              "ids": np.array(state.ids[: state.count], dtype="S"), "quantized_count": np.array(state.count),
              "shards": np.array(1), "trained_on": np.array(state.count), "shard_0": faiss.serialize_index(flat),
              "shard_rows_0": np.arange(state.count), "meta": np.frombuffer(
                  json.dumps({**meta, "format": 3}).encode(), np.uint8)}
    with open(path, "wb") as out:
        np.savez(out, **arrays)


def test_a_file_of_the_flat_layout_is_read_and_quantized_again(tmp_path, faces, index) -> None:
    ids, _, queries = faces
    path = tmp_path / "old.fpindex"
    flat_layout_file(path, index, {"dim": 64, "created": 1.0, "writes": 1, "deletes": 0, "max_seq": 8000})
    loaded = files.load(path, 64, **SETTINGS)
    assert loaded is not None and loaded[1]["format"] == 3
    old = loaded[0]
    assert old.quantized and all(s.index.nlist == pq.lists_for(8000) for s in old._state.quantized.shards)
    old.probes = old._state.quantized.shards[0].index.nlist  # every cell: the flat scan
    assert [old.search(q, 1, -1.0)[0][0] for q in queries] == ids[:200]


def test_a_home_with_a_flat_layout_file_saves_it_anew(tmp_path, faces) -> None:
    from faceprint.service import Faceprint
    from faceprint.store import FaceRow

    ids, vectors, queries = faces
    fp = Faceprint(tmp_path, profile="fast", index_settings=SETTINGS)
    fp.create_collection("c")
    rows = [FaceRow(str(uuid.uuid4()), "c", "img", None, (0.5, 0.5, 0.2, 0.2), 99.0, np.resize(v, 128) / np.sqrt(2))
            for v in vectors[:3000]]
    fp.store.add_faces(rows)
    index = fp.collections.index("c")
    fp.save_indexes()
    path = files.index_path(tmp_path / "indexes", "c")
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
    flat_layout_file(path, index, meta)

    again = Faceprint(tmp_path, profile="fast", index_settings=SETTINGS)
    opened = again.collections.index("c")
    assert opened.quantized and len(opened) == 3000
    assert again.index_cache._cached["c"].saved_at is None  # to be written in the new layout
    again.save_indexes()
    loaded = files.load(path, 128, **SETTINGS)
    assert loaded is not None and loaded[1]["format"] == files.FORMAT
    assert [opened.search(r.vector, 1, -1.0)[0][0] for r in rows[:100]] == [r.face_id for r in rows[:100]]
