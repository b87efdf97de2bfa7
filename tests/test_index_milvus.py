"""The Milvus index (faceprint.index.milvus) against a real Milvus 2.3 server (tests/milvuskit.py):
the Indexes protocol over a store, repair from the store, deletion, compaction, an unreachable
server, and Faceprint end to end on LFW faces; identity recall against exact search."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import LFW, models_dir
from faceprint.errors import InvalidParameterException, ResourceNotFoundException
from faceprint.index import ExactIndex
from faceprint.index.milvus import IndexUnavailable, MilvusIndexes, milvus_name, parse_url
from faceprint.store import CollectionRow, FaceRow
from faceprint.store.sqlite import SQLiteStore
from milvuskit import free_port, milvus_url  # noqa: F401

DIM = 128
pytestmark = [pytest.mark.filterwarnings("ignore:pkg_resources is deprecated:UserWarning"),  # pymilvus 2.3's imports
              pytest.mark.filterwarnings("ignore:The '__version_info__' attribute:DeprecationWarning")]


def unit(rng: np.random.Generator, count: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def new_collection(store: SQLiteStore, collection_id: str, dim: int = DIM) -> CollectionRow:
    row = CollectionRow(collection_id, f"arn:{collection_id}", "test-model", dim, time.time())
    store.create_collection(row)
    return row


def add(store: SQLiteStore, collection_id: str, vectors: np.ndarray) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in vectors]
    for start in range(0, len(ids), 20_000):
        store.add_faces([FaceRow(ids[i], collection_id, "image", None, (0.1, 0.1, 0.1, 0.1), 99.0, vectors[i])
                         for i in range(start, min(len(ids), start + 20_000))])
    return ids


def milvus_count(indexes: MilvusIndexes, collection_id: str) -> int:
    """Faces in the Milvus collection itself (deleted rows excluded), asked of Milvus."""
    from pymilvus import Collection

    found = Collection(milvus_name(indexes.settings.prefix, collection_id), using=indexes._alias).query(
        "", output_fields=["count(*)"], consistency_level="Strong")
    return int(found[0]["count(*)"])


def exact(store: SQLiteStore, collection_id: str) -> ExactIndex:
    index = ExactIndex(DIM)
    ids, vectors, _ = store.faces_after(collection_id, 0)
    index.add(ids, vectors)
    return index


def test_indexes_follow_the_store_rank_exactly_and_delete_at_once(milvus_url, tmp_path: Path, caplog) -> None:  # noqa: F811
    store, rng = SQLiteStore(tmp_path / "faceprint.db"), np.random.default_rng(1)
    row = new_collection(store, "mugshots.2024-x")  # '.' and '-' are not allowed in Milvus names
    vectors = unit(rng, 3000)
    ids = add(store, row.collection_id, vectors)
    one = MilvusIndexes(milvus_url, store, DIM, compact_share=0.0005)
    index = one.get(row)
    assert len(index) == 3000 == milvus_count(one, row.collection_id)
    reference = exact(store, row.collection_id)
    for query in unit(rng, 10):  # exact similarities, in exact order
        got, want = index.search(query, 10, -1.0), reference.search(query, 10, -1.0)
        assert [g[0] for g in got] == [w[0] for w in want]
        assert np.allclose([g[1] for g in got], [w[1] for w in want], atol=1e-6)
        floor = want[4][1]
        assert [g[0] for g in index.search(query, 10, floor)] == [w[0] for w in want[:5]]
    assert index.search(vectors[7], 1, 0.99)[0][0] == ids[7]

    later = add(store, row.collection_id, unit(rng, 10))  # stored since: pulled in by the next get
    index = one.get(row)
    newest = store.get_faces(row.collection_id, [later[3]])[0].vector
    assert len(index) == 3010 and index.search(newest, 1, 0.99)[0][0] == later[3]

    caplog.set_level(logging.INFO, logger="faceprint.index.milvus")
    other = MilvusIndexes(milvus_url, store, DIM)  # another process: continues from the sync mark
    seen = other.get(row)
    assert len(seen) == 3010 and seen.state.max_seq == index.state.max_seq
    assert "repairing" not in caplog.text and "rebuilding" not in caplog.text

    gone = store.delete_faces(row.collection_id, [ids[7], ids[8]])
    one.removed(row.collection_id, gone)  # deleted in Milvus now, compaction triggered (share 0.0005)
    assert ids[7] not in [h[0] for h in index.search(vectors[7], 5, -1.0)]
    assert ids[8] not in [h[0] for h in other.get(row).search(vectors[8], 5, -1.0)]
    assert milvus_count(one, row.collection_id) == 3008
    assert index.state.pending == 0
    from pymilvus.client.types import State

    held = index.state.collection
    assert held.wait_for_compaction_completed(timeout=120) and held.get_compaction_state().state == State.Completed

    store.delete_faces(row.collection_id, [ids[9]])  # by a process that tells no index
    assert ids[9] not in [h[0] for h in other.get(row).search(vectors[9], 5, -1.0)]
    assert milvus_count(other, row.collection_id) == 3007  # the vector left Milvus, not only the results

    one.drop(row.collection_id)
    from pymilvus import utility

    assert not utility.has_collection(milvus_name("faceprint_", row.collection_id), using=one._alias)


def test_missing_or_stale_milvus_collections_are_rebuilt_from_the_store(milvus_url, tmp_path: Path) -> None:  # noqa: F811
    from pymilvus import Collection, utility

    store, rng = SQLiteStore(tmp_path / "faceprint.db"), np.random.default_rng(2)
    row = new_collection(store, "stale")
    vectors = unit(rng, 1500)
    ids = add(store, row.collection_id, vectors)
    first = MilvusIndexes(milvus_url, store, DIM)
    first.get(row)
    name = milvus_name("faceprint_", row.collection_id)

    utility.drop_collection(name, using=first._alias)  # lost (e.g. a new Milvus)
    rebuilt = MilvusIndexes(milvus_url, store, DIM)
    assert rebuilt.get(row).search(vectors[3], 1, 0.99)[0][0] == ids[3]
    assert milvus_count(rebuilt, row.collection_id) == 1500

    held = Collection(name, using=rebuilt._alias)  # rows lost and a row the store never had (a crash)
    held.delete(f'face_id in ["{ids[0]}", "{ids[1]}"]')
    ghost = str(uuid.uuid4())
    held.insert([[ghost], [1], [unit(rng, 1)[0].tolist()]])
    repaired = MilvusIndexes(milvus_url, store, DIM)
    index = repaired.get(row)
    assert milvus_count(repaired, row.collection_id) == 1500
    assert not held.query(f'face_id == "{ghost}"', consistency_level="Strong")
    assert index.search(vectors[0], 1, 0.99)[0][0] == ids[0]

    store.delete_collection(row.collection_id)  # created again with the same id: none of the old vectors
    again = new_collection(store, "stale")
    newer = add(store, again.collection_id, unit(rng, 5))
    index = repaired.get(again)
    assert len(index) == 5 == milvus_count(repaired, again.collection_id)
    assert {h[0] for h in index.search(vectors[0], 10, -1.0)} <= set(newer)
    repaired.drop(again.collection_id)


def test_unreachable_milvus_is_a_clear_error(tmp_path: Path, caplog) -> None:
    store = SQLiteStore(tmp_path / "faceprint.db")
    row = new_collection(store, "nowhere")
    port = free_port()
    indexes = MilvusIndexes(f"milvus://127.0.0.1:{port}", store, DIM, timeout=1.0)
    with pytest.raises(IndexUnavailable) as raised:
        indexes.get(row)
    error = raised.value
    assert error.code == "InternalServerError" and error.safe_message and "Milvus" in error.message
    assert str(port) not in error.message and "Traceback" not in error.message
    assert f"127.0.0.1:{port}" in caplog.text  # the operator finds the address in the log
    assert store.count_faces("nowhere") == 0 and store.get_collection("nowhere") is not None


def test_deletes_while_milvus_is_down_reach_it_later(milvus_url, tmp_path: Path) -> None:  # noqa: F811
    """The store is the truth: DeleteFaces and DeleteCollection succeed while Milvus is unreachable;
    the vectors leave Milvus once a process reaches it again."""
    from pymilvus import utility

    store, rng = SQLiteStore(tmp_path / "faceprint.db"), np.random.default_rng(4)
    kept, gone = new_collection(store, "kept"), new_collection(store, "gone")
    kept_ids = add(store, kept.collection_id, unit(rng, 50))
    add(store, gone.collection_id, unit(rng, 50))
    up = MilvusIndexes(milvus_url, store, DIM)
    up.get(kept), up.get(gone)
    down = MilvusIndexes(f"milvus://127.0.0.1:{free_port()}", store, DIM, timeout=1.0)
    down.removed(kept.collection_id, store.delete_faces(kept.collection_id, kept_ids[:5]))  # no error
    store.delete_collection(gone.collection_id)
    down.drop(gone.collection_id)  # no error
    later = MilvusIndexes(milvus_url, store, DIM)  # a process that reaches Milvus
    assert later.get(kept).search(unit(rng, 1)[0], 50, -1.0) and milvus_count(later, kept.collection_id) == 45
    assert not utility.has_collection(milvus_name("faceprint_", gone.collection_id), using=later._alias)
    later.drop(kept.collection_id)


def test_index_urls(tmp_path: Path) -> None:
    assert parse_url("milvus://db.example:19531") == {"host": "db.example", "port": 19531, "user": "",
                                                      "password": ""}
    assert parse_url("milvus://u:p%40ss@h?prefix=fp_a")["password"] == "p@ss"
    assert parse_url("milvus://h")["port"] == 19530
    for bad in ("milvus://", "milvus://h:99999", "milvus://h/x", "milvus://h?prefix=1x", "milvus://h?user=x"):
        with pytest.raises(InvalidParameterException):
            parse_url(bad)
    from faceprint.backends import open_indexes

    opened = open_indexes("milvus://db.example:19531?prefix=fp_a", SQLiteStore(tmp_path / "faceprint.db"), tmp_path,
                          DIM, rerank=500)  # the embedded index's settings are left out; nothing connects yet
    assert isinstance(opened, MilvusIndexes) and opened.address == "db.example:19531"
    assert opened.settings.prefix == "fp_a"
    assert milvus_name("faceprint_", "a.b") != milvus_name("faceprint_", "a-b")
    assert len(milvus_name("faceprint_", "x" * 255)) < 100


def test_faceprint_end_to_end_on_lfw_faces(milvus_url, tmp_path: Path) -> None:  # noqa: F811
    from pymilvus import utility

    from faceprint.service import Faceprint

    store = SQLiteStore(tmp_path / "faceprint.db")
    dim = Faceprint(tmp_path, profile="fast", models_dir=models_dir(), store=store).profile.dim
    indexes = MilvusIndexes(milvus_url, store, dim)
    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir(), store=store, indexes=indexes)
    people = [p for p in sorted((LFW / "images").iterdir()) if len(list(p.glob("*.jpg"))) >= 2][:8]
    fp.create_collection("lfw")
    enrolled = {}
    for person in people:
        first = sorted(person.glob("*.jpg"))[0]
        enrolled[person.name] = fp.index_faces("lfw", str(first), external_image_id=person.name).face_records[0].face
    for person in people:
        probe = sorted(person.glob("*.jpg"))[1]
        matches = fp.search_faces_by_image("lfw", str(probe), face_match_threshold=0).face_matches
        assert matches[0].face.external_image_id == person.name
        ids, vectors, _ = store.faces_after("lfw", 0)
        query = fp.analyze(str(probe), max_faces=1).vectors[0]
        exact_scores = dict(zip(ids, vectors @ query, strict=True))
        for match in matches:  # exact similarities: the profile's mapping of the exact score
            assert match.similarity == round(float(fp.profile.similarity(exact_scores[match.face.face_id])), 4)
    victim, stored = enrolled[people[0].name], store.count_faces("lfw")
    assert fp.search_faces("lfw", enrolled[people[1].name].face_id, face_match_threshold=0).face_matches
    assert fp.delete_faces("lfw", [victim.face_id]).deleted_faces == [victim.face_id]
    probe = sorted(people[0].glob("*.jpg"))[1]
    after = fp.search_faces_by_image("lfw", str(probe), face_match_threshold=0).face_matches
    assert victim.face_id not in [m.face.face_id for m in after]
    assert milvus_count(indexes, "lfw") == store.count_faces("lfw") == stored - 1
    name = milvus_name("faceprint_", "lfw")
    assert utility.has_collection(name, using=indexes._alias)
    fp.delete_collection("lfw")
    assert not utility.has_collection(name, using=indexes._alias)
    with pytest.raises(ResourceNotFoundException):
        fp.search_faces_by_image("lfw", str(probe))


def clustered(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """Unit vectors around a common mean with a decaying spectrum: strangers' similarities near
    0.5, as real faces' are (random vectors would be trivially far apart)."""
    spectrum = np.exp(-np.arange(dim) / 40.0)
    spectrum /= np.sqrt((spectrum ** 2).sum())
    mean = rng.standard_normal(dim)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    vectors = mean / np.linalg.norm(mean) + (rng.standard_normal((count, dim)) * spectrum) @ rotation
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_identity_recall_against_exact_search(milvus_url, tmp_path: Path) -> None:  # noqa: F811
    """20,000 256-d faces in a sealed, IVF_SQ8-indexed segment; 1,000 probes, each at a similarity
    of 0.5 to 0.9 to its mate: of the probes exact search ranks their mate first, the Milvus
    index (candidates re-ranked exactly) must too, for >= 99.9% of them."""
    dim, size, probes = 256, 20_000, 1_000
    rng = np.random.default_rng(3)
    store = SQLiteStore(tmp_path / "faceprint.db")
    row = new_collection(store, "recall", dim)
    gallery = clustered(rng, size, dim)
    ids = add(store, row.collection_id, gallery)
    similarity = rng.uniform(0.5, 0.9, (probes, 1))
    away = rng.standard_normal((probes, dim))
    away -= (away * gallery[:probes]).sum(1, keepdims=True) * gallery[:probes]
    away /= np.linalg.norm(away, axis=1, keepdims=True)
    queries = (similarity * gallery[:probes] + np.sqrt(1 - similarity ** 2) * away).astype(np.float32)
    indexes = MilvusIndexes(milvus_url, store, dim)
    index = indexes.get(row)
    indexes.settle(row.collection_id, timeout=300)  # searched through its IVF_SQ8 index, not the interim one
    truth = np.argmax(queries @ gallery.T, axis=1)
    mated = np.flatnonzero(truth == np.arange(probes))
    assert len(mated) > 0.99 * probes
    found = [index.search(queries[i], 10, -1.0)[0][0] for i in mated]
    recall = np.mean([f == ids[i] for f, i in zip(found, mated, strict=True)])
    assert recall >= 0.999, recall
    indexes.drop(row.collection_id)


def test_nodes_opening_one_collection_at_once_share_it_and_never_drop_it(milvus_url, tmp_path: Path,  # noqa: F811
                                                                        caplog) -> None:
    """Two processes (nodes) that find the Milvus collection missing at the same moment both make and fill
    it: the collection is made once, never dropped by the other (which once rebuilt it while its maker had
    not written its fill mark yet, failing every search with "collection not loaded"), one row a face."""
    import threading

    store, rng = SQLiteStore(tmp_path / "faceprint.db"), np.random.default_rng(5)
    row = new_collection(store, "shared")
    vectors = unit(rng, 500)
    ids = add(store, row.collection_id, vectors)
    nodes = [MilvusIndexes(milvus_url, store, DIM) for _ in range(3)]
    found: list[list[str]] = []
    errors: list[Exception] = []

    def search(node: MilvusIndexes, i: int) -> None:
        try:
            found.append([hit[0] for hit in node.get(row).search(vectors[i], 1, 0.99)])
        except Exception as e:  # noqa: BLE001 (collected for the assertion)
            errors.append(e)

    with caplog.at_level(logging.INFO, logger="faceprint.index.milvus"):
        threads = [threading.Thread(target=search, args=(node, i)) for i, node in enumerate(nodes * 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and sorted(found) == sorted([[ids[i]] for i in range(6)])
    assert not [r for r in caplog.records if "rebuilding" in r.getMessage()]
    assert milvus_count(nodes[0], row.collection_id) == 500  # no face twice
    more = add(store, row.collection_id, unit(rng, 5))  # written through one node, searched on another
    assert nodes[2].get(row).search(store.get_faces(row.collection_id, more[:1])[0].vector, 1, 0.99)[0][0] == more[0]
    for node in nodes:
        node.close()
