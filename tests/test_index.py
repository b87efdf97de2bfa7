"""The exact index against plain numpy, through adds, removes and growth."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np

from faceprint.index import ExactIndex, files
from faceprint.index.hybrid import CollectionIndex


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


# -- the collection index: quantized candidates re-ranked exactly ---------------------------------
SMALL = {"exact_below": 2000, "tail_limit": 500, "rerank": 200, "shards": 2}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def planted(n: int = 6000, dim: int = 64, seed: int = 3) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Stored vectors and, for the first 300, queries near them (similarity about 0.85)."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((n, dim)))
    queries = unit(vectors[:300] + 0.6 / np.sqrt(dim) * rng.standard_normal((min(n, 300), dim)))
    return [str(uuid.UUID(int=i)) for i in range(n)], vectors, queries


def test_collection_index_switches_to_quantized_search_and_keeps_exact_scores() -> None:
    ids, vectors, queries = planted()
    index = CollectionIndex(64, **SMALL)
    for start in range(0, 1500, 500):
        index.add(ids[start:start + 500], vectors[start:start + 500])
    assert not index.quantized  # small: exact
    for start in range(1500, 6000, 700):
        index.add(ids[start:start + 700], vectors[start:start + 700])
    assert index.quantized and index._state.quantized.count < 6000  # the newest rows wait in the exact tail
    for i, query in enumerate(queries):
        found = index.search(query, 10, -1.0)
        assert found[0][0] == ids[i]
        rows = [int(uuid.UUID(f)) for f, _ in found]
        assert np.allclose([s for _, s in found], vectors[rows] @ query, atol=1e-5)  # exact scores
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    tail = 5999
    assert index.search(unit(vectors[tail:] + 0.01), 1, -1.0)[0][0] == ids[tail]


def test_shards_give_the_results_of_one_index() -> None:
    ids, vectors, queries = planted()
    one, three = CollectionIndex(64, **{**SMALL, "shards": 1}), CollectionIndex(64, **{**SMALL, "shards": 3})
    for index in (one, three):
        for start in range(0, 6000, 1000):  # the tail goes to the smallest shard each time
            index.add(ids[start:start + 1000], vectors[start:start + 1000])
    sizes = [s.index.ntotal for s in three._state.quantized.shards]
    assert len(sizes) == 3 and max(sizes) - min(sizes) <= 1000 and sum(sizes) == three._state.quantized.count
    for query in queries:
        assert one.search(query, 10, -1.0) == three.search(query, 10, -1.0)


def test_removed_faces_are_never_returned_and_compaction_keeps_the_rest() -> None:
    ids, vectors, queries = planted()
    index = CollectionIndex(64, **SMALL)
    index.add(ids, vectors)
    index.remove(ids[:100])  # 100 of 6000: flagged, not yet compacted
    assert len(index) == 5900 and index._state.dead == 100
    assert all(index.search(q, 5, -1.0)[0][0] not in ids[:100] for q in queries[:100])
    assert all(index.search(q, 1, -1.0)[0][0] == ids[i] for i, q in enumerate(queries[100:], 100))
    index.remove(ids[100:700])  # past a tenth: compacted, still quantized
    assert len(index) == 5300 and index._state.dead == 0 and index.quantized
    assert not {f for q in queries for f, _ in index.search(q, 20, -1.0)} & set(ids[:700])
    assert all(index.search(q, 1, -1.0)[0][0] == ids[i] for i, q in enumerate(queries[700:], 700))


def test_searches_run_while_faces_are_added_and_removed() -> None:
    ids, vectors, queries = planted(6000)
    index = CollectionIndex(64, **SMALL)
    index.add(ids[:1000], vectors[:1000])
    removed: set[str] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        try:
            while not done.is_set():
                before = set(removed)
                for f, _ in index.search(queries[len(before) % 300], 30, -1.0):
                    assert f not in before
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(1000, 6000, 250):
        index.add(ids[start:start + 250], vectors[start:start + 250])
        gone = ids[start - 1000:start - 990]
        index.remove(gone)
        removed.update(gone)
    done.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 6000 - len(removed)


# -- index files: saved, reopened, brought up to date, never trusted when torn ---------------------
def fill(fp, collection: str, vectors: np.ndarray) -> list[str]:
    from faceprint.store import FaceRow

    rows = [FaceRow(str(uuid.uuid4()), collection, "img", None, (0.5, 0.5, 0.2, 0.2), 99.0, v) for v in vectors]
    fp.store.add_faces(rows)
    return [r.face_id for r in rows]


def open_home(home):
    from faceprint.service import Faceprint

    return Faceprint(home, profile="fast", index_settings=SMALL)


def best(fp, collection: str, face_id: str) -> list[str]:
    return [m.face.face_id for m in fp.search_faces(collection, face_id, max_faces=5, face_match_threshold=0)
            .face_matches]


def test_index_file_is_reopened_and_brought_up_to_date(tmp_path) -> None:
    rng = np.random.default_rng(5)
    fp = open_home(tmp_path)
    fp.create_collection("c")
    vectors = unit(rng.standard_normal((3300, 128)))
    first = fill(fp, "c", vectors[:3000])
    assert best(fp, "c", first[0])  # builds the index
    fp.save_indexes()
    path = files.index_path(tmp_path / "indexes", "c")
    assert path.is_file()

    other = open_home(tmp_path)  # another process: adds while the file is not loaded
    later = fill(other, "c", vectors[3000:])

    fresh = open_home(tmp_path)
    index = fresh.collections.index("c")
    assert fresh.index_cache._cached["c"].saved_size == 3000  # opened from the file
    assert index.quantized and len(index) == 3000 + 300
    other.delete_faces("c", first[:50])  # removes the file, which holds their vectors...
    assert not path.exists()
    index = fresh.collections.index("c")  # ...and reaches the loaded index through the log
    assert len(index) == 3000 + 300 - 50
    top = [index.search(v, 1, -1.0)[0][0] for v in vectors[:60]] + [index.search(v, 1, -1.0)[0][0]
                                                                     for v in vectors[3000:3010]]
    assert not set(top) & set(first[:50]) and top[50:] == first[50:60] + later[:10]


def test_torn_or_stale_index_files_are_ignored(tmp_path) -> None:
    rng = np.random.default_rng(6)
    fp = open_home(tmp_path)
    fp.create_collection("c")
    faces = fill(fp, "c", unit(rng.standard_normal((2500, 128))))
    fp.collections.index("c")
    fp.save_indexes()
    path = files.index_path(tmp_path / "indexes", "c")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # torn
    orphan = path.with_name(f"{path.name}.tmp-999999999-1")
    orphan.write_bytes(b"half written")
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))  # left by a writer that died long ago
    fresh = open_home(tmp_path)
    assert len(fresh.collections.index("c")) == 2500 and fresh.index_cache._cached["c"].saved_size == 0  # rebuilt
    fresh.save_indexes()
    assert not orphan.exists() and files.load(path, 128) is not None

    saved = path.read_bytes()
    fresh.delete_collection("c")
    assert not path.exists()
    fresh.create_collection("c")  # same id, new collection: the old file must not come back
    path.write_bytes(saved)
    new = fill(fresh, "c", unit(rng.standard_normal((10, 128))))
    again = open_home(tmp_path)
    assert len(again.collections.index("c")) == 10 and set(best(again, "c", new[0])) <= set(new)
    assert not set(best(again, "c", new[0])) & set(faces)


def test_kill_during_index_save_leaves_a_readable_file(tmp_path) -> None:
    rng = np.random.default_rng(7)
    ids = [str(uuid.uuid4()) for _ in range(40_000)]
    index = CollectionIndex(128, **SMALL)
    index.add(ids, unit(rng.standard_normal((40_000, 128))))
    path = tmp_path / "c.fpindex"
    meta = {"dim": 128, "created": 1.0, "writes": 1, "deletes": 0, "max_seq": 40_000}
    files.save(path, CollectionIndex.arrays(index.frozen()), meta)
    script = (f"import numpy as np, uuid\nfrom faceprint.index import files\nfrom faceprint.index.hybrid import "
              f"CollectionIndex\nindex = CollectionIndex(128)\nindex.add([str(uuid.uuid4()) for _ in range(50000)], "
              f"np.ones((50000, 128), np.float32))\nprint('ready', flush=True)\nwhile True:\n"
              f"    files.save({str(path)!r}, CollectionIndex.arrays(index.frozen()), {meta!r})\n")
    saver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert saver.stdout is not None and saver.stdout.readline().strip() == "ready"
    time.sleep(0.7)
    saver.kill()  # SIGKILL, most likely in the middle of a write
    saver.wait()
    loaded = files.load(path, 128)
    assert loaded is not None and len(loaded[0]) in (40_000, 50_000)


def test_a_failed_quantization_leaves_the_faces_searchable_exactly(caplog) -> None:
    """faiss refuses to train on fewer points than centroids: the index stays exact, whole."""
    ids, vectors, _ = planted(12)
    index = CollectionIndex(64, exact_below=1, tail_limit=1, rerank=10, shards=2)
    index.add(ids[:5], vectors[:5])
    index.add(ids[5:], vectors[5:])
    assert "could not quantize" in caplog.text  # faiss did refuse
    assert not index.quantized and len(index) == 12
    assert [index.search(v, 1, -1.0)[0][0] for v in vectors] == ids


def test_damaged_index_files_are_ignored_never_raised(tmp_path) -> None:
    ids, vectors, _ = planted(3000)
    index = CollectionIndex(64, **SMALL)
    index.add(ids, vectors)
    good = tmp_path / "good.fpindex"
    meta = {"dim": 64, "created": 1.0, "writes": 1, "deletes": 0, "max_seq": 3000}
    files.save(good, CollectionIndex.arrays(index.frozen()), meta)
    data = good.read_bytes()
    bad = tmp_path / "bad.fpindex"
    outcomes = set()
    for position in list(range(0, 2048, 7)) + list(range(len(data) - 2048, len(data), 13)):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        loaded = files.load(bad, 64, **SMALL)  # must not raise, whatever the byte
        outcomes.add(loaded is None)
        if loaded is not None:
            assert len(loaded[0]) == 3000
    assert True in outcomes  # most flips are caught (zip CRCs, headers)


def test_deletes_by_another_process_reach_a_loaded_index_through_the_log(tmp_path) -> None:
    rng = np.random.default_rng(8)
    searcher, deleter = open_home(tmp_path), open_home(tmp_path)
    searcher.create_collection("c")
    vectors = unit(rng.standard_normal((2500, 128)))
    faces = fill(searcher, "c", vectors)
    index = searcher.collections.index("c")
    deleter.delete_faces("c", faces[:10])
    deleter.delete_faces("c", faces[10:20])
    assert searcher.store.deleted_since("c", 0) is not None and len(searcher.store.deleted_since("c", 0)) == 20
    top = {searcher.collections.index("c").search(v, 1, -1.0)[0][0] for v in vectors[:30]}
    assert not top & set(faces[:20]) and set(faces[20:30]) <= top
    deleter.delete_faces("c", faces[20:25])
    searcher.store._db().execute("DELETE FROM deleted_faces")  # the log no longer reaches back
    assert searcher.store.deleted_since("c", 2) is None
    top = {searcher.collections.index("c").search(v, 1, -1.0)[0][0] for v in vectors[:30]}  # full comparison instead
    assert not top & set(faces[:25]) and set(faces[25:30]) <= top and index is searcher.collections.index("c")


def test_an_own_delete_leaves_nothing_to_reconcile(tmp_path) -> None:
    rng = np.random.default_rng(9)
    fp, other = open_home(tmp_path), open_home(tmp_path)
    fp.create_collection("c")
    faces = fill(fp, "c", unit(rng.standard_normal((2500, 128))))
    fp.collections.index("c")
    cached = fp.index_cache._cached["c"]
    fp.delete_faces("c", faces[:3])
    assert cached.deletes == fp.store.generation("c")[1]  # the next search skips the deletion log
    other.delete_faces("c", faces[3:5])
    fp.delete_faces("c", faces[5:6])  # another process deleted in between: the next search reconciles
    assert cached.deletes < fp.store.generation("c")[1]
    assert len(fp.collections.index("c")) == 2494 and cached.deletes == fp.store.generation("c")[1]
